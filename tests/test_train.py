"""Training machinery on 8 virtual CPU devices with the `Micro` stand-in model (see
tests/multihost_worker.py): device-count and FSDP invariance, BatchNorm modes, gradient accumulation,
multi-process, kill -9 + restart, SIGTERM, non-finite loss, and the user-facing errors."""

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from multihost_worker import (
    ROOT,
    fixed_batches,
    install_micro,
    micro_config,
    micro_source,
    restart_config,
    run_steps,
)

from i3d_jax import sharding, train_lib

install_micro()
WORKER = str(pathlib.Path(__file__).with_name("multihost_worker.py"))


def _close(a, b, tol=1e-5):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=tol, atol=tol), a, b)


@pytest.fixture(scope="module")
def reference():
    """Loss curve and params of 4 steps on one device, global batch 8."""
    mesh1 = sharding.make_mesh(devices=jax.devices()[:1])
    return run_steps(micro_config(), fixed_batches(4, 8), mesh1)


def test_8_devices_match_1_device(reference):
    losses1, params1 = reference
    losses8, params8 = run_steps(micro_config(), fixed_batches(4, 8))
    assert losses1[0] > losses1[-1]  # it learns
    np.testing.assert_allclose(losses8, losses1, rtol=1e-5)
    _close(params8, params1)


def test_fsdp_matches_data_parallel(reference):
    config = micro_config(**{"mesh.fsdp": 2, "mesh.fsdp_min_size": 1})
    s = train_lib.setup(config)
    kernel = s.state["params"]["Conv3d_1a"]["kernel"]
    assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, None, None, None, "fsdp")
    assert s.mesh.shape == {"data": 4, "fsdp": 2}
    losses, params = run_steps(config, fixed_batches(4, 8))
    np.testing.assert_allclose(losses, reference[0], rtol=1e-5)
    _close(params, reference[1])


def _reference_grouped(config, state, batch, k):
    """Loss and BN running stats when each group of k examples is its own BatchNorm batch."""
    model = train_lib.build_model(config)
    variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
    ces, stats = [], []
    for g in range(0, len(batch["label"]), k):
        x = train_lib.pipeline.to_float(jnp.asarray(batch["video"][g : g + k]))
        (_, ep), upd = model.apply(variables, x, train=True, mutable=["batch_stats"])
        ces.append(optax.softmax_cross_entropy_with_integer_labels(ep["Logits"],
                                                                   batch["label"][g : g + k]))  # fmt: skip
        stats.append(upd["batch_stats"])
    mean_stats = jax.tree.map(lambda *s: np.mean(np.stack(s), 0), *stats)
    return float(np.concatenate(ces).mean()), mean_stats


@pytest.mark.parametrize("k", [0, 1, 2, 4])
def test_batchnorm_modes_compute_what_they_say(k):
    """k=0: global statistics; 1 and 2: groups inside a device (16 / 8 devices = 2 per device);
    4: groups spanning 2 devices (statistics averaged over the `bn` axis)."""
    config = micro_config(batch_size=16, **{"bn.group_size": k, "lr.base": 0.0})
    s = train_lib.setup(config)
    batch = fixed_batches(1, 16, seed=3)[0]
    expected_loss, expected_stats = _reference_grouped(config, s.state, batch, k or 16)
    global_loss, _ = _reference_grouped(config, s.state, batch, 16)
    state, metrics = s.step_fn(s.state, sharding.global_batch(batch, s.mesh))
    np.testing.assert_allclose(float(metrics["loss"]), expected_loss, rtol=1e-5)
    _close(jax.device_get(state["batch_stats"]), expected_stats)
    if k:  # and it differs from global statistics
        assert abs(global_loss - expected_loss) > 1e-4


def test_grad_accumulation_averages_micro_batch_gradients():
    config = micro_config(batch_size=16, grad_accum_steps=2)
    batch = fixed_batches(1, 16, seed=4)[0]
    losses, params = run_steps(config, [batch])
    # Reference: gradients of examples 0, 2, ..., 14 and 1, 3, ..., 15 (BatchNorm statistics per
    # micro-batch), averaged, one SGD update.
    ref = train_lib.setup(micro_config())
    model = ref.model
    p0 = jax.device_get(ref.state["params"])
    bs = jax.device_get(ref.state["batch_stats"])

    def loss(p, idx):
        x = train_lib.pipeline.to_float(jnp.asarray(batch["video"][idx]))
        (_, ep), upd = model.apply({"params": p, "batch_stats": bs}, x, train=True,
                                   mutable=["batch_stats"])  # fmt: skip
        return optax.softmax_cross_entropy_with_integer_labels(
            ep["Logits"], batch["label"][idx]
        ).mean()

    parts = [jax.value_and_grad(loss)(p0, np.arange(j, 16, 2)) for j in range(2)]
    grads = jax.tree.map(lambda a, b: (a + b) / 2, parts[0][1], parts[1][1])
    expected = jax.tree.map(lambda p, g: p - 0.1 * g, p0, grads)
    np.testing.assert_allclose(losses[0], (parts[0][0] + parts[1][0]) / 2, rtol=1e-5)
    _close(params, expected)


def test_weight_decay_mask_skips_bn_offsets_and_biases():
    s = train_lib.setup(micro_config())
    mask = train_lib.decay_mask(s.state["params"])
    assert mask["Conv3d_1a"]["kernel"] and mask["Logits"]["kernel"]
    assert not mask["Logits"]["bias"] and not mask["BatchNorm_0"]["bias"]


def test_lr_schedules():
    c = micro_config(num_train_steps=100, **{"lr.schedule": "step", "lr.boundaries": (50, 80)})
    fn = train_lib.learning_rate_fn(c)
    np.testing.assert_allclose([fn(0), fn(49), fn(50), fn(80), fn(99)],
                               [0.1, 0.1, 0.01, 0.001, 0.001], rtol=1e-6)  # fmt: skip
    c = micro_config(num_train_steps=100, **{"lr.schedule": "cosine", "lr.warmup_steps": 10})
    fn = train_lib.learning_rate_fn(c)
    np.testing.assert_allclose([fn(0), fn(10), fn(55), fn(100)], [0.01, 0.1, 0.05, 0.0], atol=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return env


def test_two_processes_train_together_and_match_single_process(reference, tmp_path):
    port, out = _free_port(), tmp_path / "dist.json"
    procs = [
        subprocess.Popen([sys.executable, WORKER, "dist", str(port), str(i), str(out)],
                         env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for i in range(2)
    ]  # fmt: skip
    logs = [p.communicate(timeout=300)[0].decode() for p in procs]
    codes = [p.returncode for p in procs]
    assert codes == [0, 0], f"exit codes {codes}\n" + "\n----\n".join(logs)
    import json

    got = json.loads(out.read_text())
    np.testing.assert_allclose(got["losses"], reference[0], rtol=1e-5)
    flat = {"/".join(str(p.key) for p in k): v for k, v in
            jax.tree_util.tree_flatten_with_path(reference[1])[0]}  # fmt: skip
    for name, value in flat.items():
        np.testing.assert_allclose(np.asarray(got["params"][name]), value, rtol=1e-5, atol=1e-6)


def _load_npz(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def test_kill_9_then_restart_equals_uninterrupted_run(tmp_path):
    src, info = micro_source()
    full = train_lib.train_and_evaluate(
        restart_config(), tmp_path / "full", train_source=src, eval_source=src, source_info=info
    )
    expected = {"/".join(str(p.key) for p in k): np.asarray(v) for k, v in
                jax.tree_util.tree_flatten_with_path(full["state"]["params"])[0]}  # fmt: skip
    workdir, out = tmp_path / "killed", tmp_path / "params.npz"
    env = {**_env(), "I3D_TEST_READ_DELAY": "0.05"}
    proc = subprocess.Popen([sys.executable, WORKER, "train", str(workdir), str(out)], env=env,
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 240
    while not (workdir / "checkpoints" / "4").is_dir():
        assert proc.poll() is None and time.time() < deadline, "run ended before step 4"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert 4 <= steps[-1] < 12
    subprocess.run([sys.executable, WORKER, "train", str(workdir), str(out)], env=_env(), cwd=ROOT,
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    got = _load_npz(out)
    assert set(got) == set(expected)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])  # bit-identical on CPU
    # metrics.jsonl has each step once, in order, after the restart.
    import json

    rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in rows if "loss" in r]
    assert train_steps == list(range(1, 13))


class _SigtermAt:
    """A source that sends this process SIGTERM when example `at` is first read."""

    def __init__(self, source, at):
        self.source, self.at, self.sent = source, at, False

    def __len__(self):
        return len(self.source)

    def __getitem__(self, i):
        if i == self.at and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)
        return self.source[i]


def test_sigterm_saves_then_exits_and_resume_finishes(tmp_path):
    src, info = micro_source()
    config = micro_config(num_train_steps=12, **{"checkpoint.every_steps": 100})
    config.input.prefetch = 1
    res = train_lib.train_and_evaluate(
        config, tmp_path, train_source=_SigtermAt(src, 5), eval_source=src, source_info=info
    )
    assert res["interrupted"] and 1 <= res["steps"] < 12
    assert (tmp_path / "checkpoints" / str(res["steps"])).is_dir()
    res2 = train_lib.train_and_evaluate(
        config, tmp_path, train_source=src, eval_source=src, source_info=info
    )
    assert res2["steps"] == 12 and not res2["interrupted"]


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    src, info = micro_source()
    config = micro_config(num_train_steps=20, **{"lr.base": 1e30, "checkpoint.every_steps": 1})
    with pytest.raises(train_lib.TrainingError, match=r"non-finite loss .* at step (\d+)") as e:
        train_lib.train_and_evaluate(config, tmp_path, train_source=src, source_info=info)
    bad = int(str(e.value).split("at step ")[1].split(";")[0])
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert steps[-1] == bad - 1
    assert f"last good checkpoint is step {bad - 1}" in str(e.value)


def test_batch_not_divisible_by_devices():
    with pytest.raises(ValueError, match=r"batch_size=12 .* not divisible by the 8 devices"):
        train_lib.setup(micro_config(batch_size=12))
    with pytest.raises(ValueError, match=r"group_size=3"):
        train_lib.setup(micro_config(batch_size=16, **{"bn.group_size": 3}))


def test_clip_longer_than_videos_without_looping(tmp_path):
    src, info = micro_source(frames=6)
    config = micro_config(**{"input.loop_short": False})
    with pytest.raises(ValueError, match=r"has 6 frames, shorter than clip_length=9"):
        train_lib.train_and_evaluate(config, tmp_path, train_source=src, source_info=info)
    assert not (tmp_path / "checkpoints" / "1").exists()


def test_corrupted_checkpoint_dir(tmp_path):
    src, info = micro_source()
    config = micro_config(num_train_steps=2)
    train_lib.train_and_evaluate(config, tmp_path, train_source=src, source_info=info)
    for f in (tmp_path / "checkpoints" / "2" / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    config.num_train_steps = 4
    with pytest.raises(train_lib.TrainingError, match=r"cannot restore checkpoint step 2 from"):
        train_lib.train_and_evaluate(config, tmp_path, train_source=src, source_info=info)


def test_unwritable_workdir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match=r"workdir .*file/run' is not writable"):
        train_lib.train_and_evaluate(micro_config(), blocker / "run")


def test_bad_config_values_name_the_field():
    for overrides, field in (
        ({"model.schedule": "nope"}, "model.schedule"),
        ({"optimizer.name": "lamb"}, "optimizer.name"),
        ({"input.clip_length": 4}, "input.clip_length"),
        ({"eval.num_crops": 2}, "eval.num_crops"),
    ):
        with pytest.raises(ValueError, match=f"config.{field}="):
            train_lib.validate_config(micro_config(**overrides))


def test_train_py_rejects_bad_field_name_and_value(tmp_path):
    base = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs/default.py"),
            "--workdir", str(tmp_path)]  # fmt: skip
    r = subprocess.run(base + ["--config.model.presett=tiny"], capture_output=True, text=True,
                       cwd=ROOT, env=_env(), timeout=120)  # fmt: skip
    assert r.returncode != 0 and "presett" in r.stderr
    r = subprocess.run(base + ["--config.lr.schedule=linear"], capture_output=True, text=True,
                       cwd=ROOT, env=_env(), timeout=120)  # fmt: skip
    assert r.returncode != 0 and "config.lr.schedule='linear'" in r.stderr
    assert not any(tmp_path.iterdir())  # failed before any work


def test_merge_variables_new_head_and_named_mismatches():
    init = {"params": {"Conv": {"kernel": np.zeros((3, 2))}, "Logits": {"kernel": np.ones((2, 4))}}}
    loaded = {
        "params": {"Conv": {"kernel": np.full((3, 2), 7.0)}, "Logits": {"kernel": np.zeros((2, 9))}}
    }
    out = train_lib.merge_variables(init, loaded, reinit_prefixes=("params/Logits",))
    np.testing.assert_array_equal(out["params"]["Conv"]["kernel"], 7.0)
    np.testing.assert_array_equal(out["params"]["Logits"]["kernel"], 1.0)  # the new head
    with pytest.raises(ValueError, match=r"shape mismatches \['params/Logits/kernel: \(2, 9\)"):
        train_lib.merge_variables(init, loaded)
    with pytest.raises(
        ValueError, match=r"missing \['params/Conv/kernel'\], unexpected \['params/X'\]"
    ):
        train_lib.merge_variables(
            init, {"params": {"X": np.zeros(1), "Logits": {}}}, ("params/Logits",)
        )


@pytest.mark.parametrize(
    "name",
    ["default", "synthetic_motion", "kinetics400_rgb", "kinetics400_flow", "ucf101_rgb_finetune",
     "ablations.schedule_temporal_early", "ablations.inflate_center"],
)  # fmt: skip
def test_configs_are_valid(name):
    import importlib

    c = importlib.import_module(f"configs.{name}").get_config()
    train_lib.validate_config(c)
    if name == "kinetics400_rgb":
        assert (c.batch_size, c.bn.group_size, c.optimizer.momentum) == (384, 6, 0.9)
        assert (c.optimizer.weight_decay, c.model.dropout_rate, c.input.clip_length) == (
            1e-7,
            0.5,
            64,
        )
        fn = train_lib.learning_rate_fn(c)
        np.testing.assert_allclose(
            [fn(96_999), fn(97_000), fn(108_000)], [0.1, 0.01, 0.001], rtol=1e-6
        )
    if name == "kinetics400_flow":
        assert c.num_train_steps == 155_000 and c.modality == "flow"
    if name.startswith("ablations.schedule"):
        assert c.model.schedule == "temporal_early"
