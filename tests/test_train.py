"""Training machinery on 8 virtual CPU devices with the `Micro` stand-in model (see
tests/multihost_worker.py): device-count and FSDP invariance, BatchNorm modes, gradient accumulation,
multi-process, kill -9 + restart, SIGTERM, re-running a finished run, non-finite loss, the
user-facing errors, and a second kind of model trained through the same loop (the `Task` interface).

Session fixtures (tests/conftest.py) train `micro` once: `micro_reference` (4 steps, one device)
and `micro_run` (the uninterrupted 12-step run with its evaluation)."""

import json
import math
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from multihost_worker import (
    ROOT,
    fixed_batches,
    micro_config,
    micro_data,
    micro_source,
    restart_config,
    run_steps,
)

from i3d_jax import preprocess, sharding
from i3d_jax.training import config as config_lib
from i3d_jax.training import loop, state
from i3d_jax.training.config import TrainingError
from i3d_jax.training.tasks import video_model
from i3d_jax.weights import common

WORKER = str(pathlib.Path(__file__).with_name("multihost_worker.py"))


def _close(a, b, tol=1e-5):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=tol, atol=tol), a, b)


def _flat(params):
    return {"/".join(str(p.key) for p in k): np.asarray(v) for k, v in
            jax.tree_util.tree_flatten_with_path(params)[0]}  # fmt: skip


def test_8_devices_match_1_device(micro_reference):
    losses1, params1 = micro_reference
    losses8, params8 = run_steps(micro_config(), fixed_batches(4, 8))
    assert losses1[0] > losses1[-1]  # it learns
    np.testing.assert_allclose(losses8, losses1, rtol=1e-5)
    _close(params8, params1)


def test_fsdp_matches_data_parallel(micro_reference):
    config = micro_config(**{"mesh.fsdp": 2, "mesh.fsdp_min_size": 1})
    s = loop.setup(config, data=micro_data())
    kernel = s.state["params"]["Conv3d_1a"]["kernel"]
    assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, None, None, None, "fsdp")
    assert s.mesh.shape == {"data": 4, "fsdp": 2}
    losses, params = run_steps(config, fixed_batches(4, 8))
    np.testing.assert_allclose(losses, micro_reference[0], rtol=1e-5)
    _close(params, micro_reference[1])


def _reference_grouped(config, train_state, batch, k):
    """Loss and BN running stats when each group of k examples is its own BatchNorm batch."""
    model = video_model.build_model(config)
    variables = {"params": train_state["params"], "batch_stats": train_state["batch_stats"]}
    ces, stats = [], []
    apply = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
    for g in range(0, len(batch["label"]), k):
        x = preprocess.to_float(jnp.asarray(batch["video"][g : g + k]))
        (_, ep), upd = apply(variables, x)
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
    s = loop.setup(config, data=micro_data())
    batch = fixed_batches(1, 16, seed=3)[0]
    expected_loss, expected_stats = _reference_grouped(config, s.state, batch, k or 16)
    global_loss, _ = _reference_grouped(config, s.state, batch, 16)
    new_state, metrics = s.step_fn(s.state, sharding.global_batch(batch, s.mesh))
    np.testing.assert_allclose(float(metrics["loss"]), expected_loss, rtol=1e-5)
    _close(jax.device_get(new_state["batch_stats"]), expected_stats)
    if k:  # and it differs from global statistics
        assert abs(global_loss - expected_loss) > 1e-4


def test_grad_accumulation_averages_micro_batch_gradients():
    config = micro_config(batch_size=16, grad_accum_steps=2)
    batch = fixed_batches(1, 16, seed=4)[0]
    losses, params = run_steps(config, [batch])
    # Reference: gradients of examples 0, 2, ..., 14 and 1, 3, ..., 15 (BatchNorm statistics per
    # micro-batch), averaged, one SGD update. The initial variables are the model's init (seed 0).
    model = video_model.build_model(micro_config())
    init = jax.jit(lambda r: video_model.init_variables(micro_config(), model, r))(
        jax.random.key(0, impl="rbg")
    )
    p0, bs = jax.device_get(init["params"]), jax.device_get(init["batch_stats"])

    def loss(p, idx):
        x = preprocess.to_float(jnp.asarray(batch["video"])[idx])
        (_, ep), upd = model.apply({"params": p, "batch_stats": bs}, x, train=True,
                                   mutable=["batch_stats"])  # fmt: skip
        return optax.softmax_cross_entropy_with_integer_labels(
            ep["Logits"], jnp.asarray(batch["label"])[idx]
        ).mean()

    value_and_grad = jax.jit(jax.value_and_grad(loss))  # one compile for both micro-batches
    parts = [value_and_grad(p0, np.arange(j, 16, 2)) for j in range(2)]
    grads = jax.tree.map(lambda a, b: (a + b) / 2, parts[0][1], parts[1][1])
    expected = jax.tree.map(lambda p, g: p - 0.1 * g, p0, grads)
    np.testing.assert_allclose(losses[0], (parts[0][0] + parts[1][0]) / 2, rtol=1e-5)
    _close(params, expected)


def test_weight_decay_mask_skips_bn_offsets_and_biases(micro_reference):
    mask = state.decay_mask(micro_reference[1])
    assert mask["Conv3d_1a"]["kernel"] and mask["Logits"]["kernel"]
    assert not mask["Logits"]["bias"] and not mask["BatchNorm_0"]["bias"]


def test_lr_schedules():
    c = micro_config(num_train_steps=100, **{"lr.schedule": "step", "lr.boundaries": (50, 80)})
    fn = state.learning_rate_fn(c)
    np.testing.assert_allclose([fn(0), fn(49), fn(50), fn(80), fn(99)],
                               [0.1, 0.1, 0.01, 0.001, 0.001], rtol=1e-6)  # fmt: skip
    c = micro_config(num_train_steps=100, **{"lr.schedule": "cosine", "lr.warmup_steps": 10})
    fn = state.learning_rate_fn(c)
    np.testing.assert_allclose([fn(0), fn(10), fn(55), fn(100)], [0.01, 0.1, 0.05, 0.0], atol=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_backend_optimization_level=0"  # conftest's, without 8 devices
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return env


def test_two_processes_train_together_and_match_single_process(micro_reference, tmp_path):
    port, out = _free_port(), tmp_path / "dist.json"
    procs = [
        subprocess.Popen([sys.executable, WORKER, "dist", str(port), str(i), str(out)],
                         env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for i in range(2)
    ]  # fmt: skip
    logs = [p.communicate(timeout=300)[0].decode() for p in procs]
    codes = [p.returncode for p in procs]
    assert codes == [0, 0], f"exit codes {codes}\n" + "\n----\n".join(logs)
    got = json.loads(out.read_text())
    np.testing.assert_allclose(got["losses"], micro_reference[0], rtol=1e-5)
    for name, value in _flat(micro_reference[1]).items():
        np.testing.assert_allclose(np.asarray(got["params"][name]), value, rtol=1e-5, atol=1e-6)


def _load_npz(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def test_kill_9_then_restart_equals_uninterrupted_run(micro_run, tmp_path):
    expected = _flat(micro_run[1]["state"]["params"])
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


def test_sigterm_saves_then_exits_and_resume_equals_uninterrupted_run(micro_run, tmp_path):
    src, _ = micro_source()
    config = restart_config()
    config.checkpoint.every_steps = 100  # the SIGTERM checkpoint is the only one
    config.input.prefetch = 1
    res = loop.train_and_evaluate(config, tmp_path, data=micro_data(train=_SigtermAt(src, 5)))
    assert res["interrupted"] and 1 <= res["steps"] < 12
    assert (tmp_path / "checkpoints" / str(res["steps"])).is_dir()
    assert res["eval"] is None and not (tmp_path / "eval").exists()
    res2 = loop.train_and_evaluate(config, tmp_path, data=micro_data())
    assert res2["steps"] == 12 and not res2["interrupted"]
    expected = _flat(micro_run[1]["state"]["params"])
    for name, value in _flat(res2["state"]["params"]).items():
        np.testing.assert_array_equal(value, expected[name])
    assert res2["eval"]["video_top1"] == micro_run[1]["eval"]["video_top1"]


def test_sigterm_during_the_first_step_says_interrupted_with_its_loss(tmp_path):
    """Issue 10, finding 11: a SIGTERM before the first log step printed 'final loss nan'."""
    src, _ = micro_source()
    config = micro_config(num_train_steps=12, log_every_steps=50, **{"checkpoint.every_steps": 50})
    config.input.prefetch = 1
    res = loop.train_and_evaluate(config, tmp_path, data=micro_data(train=_SigtermAt(src, 0)))
    assert res["interrupted"] and res["steps"] == 1
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1]
    assert math.isfinite(res["final_loss"]) and res["final_loss"] == rows[0]["loss"]
    (line,) = loop.summary_lines(res)
    assert line.startswith("trained 1 steps") and f"final loss {res['final_loss']:.4f}" in line
    assert "interrupted by SIGTERM" in line and "resume" in line


def _tree_listing(root: pathlib.Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))
            if p.is_file()}  # fmt: skip


def test_rerunning_a_finished_run_does_nothing_and_succeeds(micro_run, tmp_path):
    """Issue 10, finding 2: the second identical command failed with 'Checkpoint for step 400
    already exists' (the final evaluation re-saved the best checkpoint)."""
    workdir = tmp_path / "run"
    shutil.copytree(micro_run[0], workdir)
    before = _tree_listing(workdir)
    res = loop.train_and_evaluate(restart_config(), workdir, data=micro_data())
    assert res["finished_before"] and res["steps"] == 12 and not res["interrupted"]
    assert res["eval"]["video_top1"] == micro_run[1]["eval"]["video_top1"]
    after = _tree_listing(workdir)
    changed = sorted(k for k in after if before.get(k) != after[k])
    assert changed == [], changed  # no step, checkpoint, metric, result or record redone
    assert loop.summary_lines(res) == [
        "already finished: 12 steps (nothing to train; results unchanged)"
    ]
    # Finished training whose final evaluation never completed: evaluated once, best not re-saved.
    (workdir / "eval" / "results.json").unlink()
    res = loop.train_and_evaluate(restart_config(), workdir, data=micro_data())
    assert res["finished_before"] and res["evaluated_now"] and res["steps"] == 12
    assert "final evaluation run now" in loop.summary_lines(res)[0]
    assert res["eval"]["video_top1"] == micro_run[1]["eval"]["video_top1"]
    assert json.loads((workdir / "eval" / "results.json").read_text())["step"] == 12
    assert sorted(p.name for p in (workdir / "best").iterdir()) == ["12"]


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    config = micro_config(num_train_steps=20, **{"lr.base": 1e30, "checkpoint.every_steps": 1})
    with pytest.raises(TrainingError, match=r"non-finite loss .* at step (\d+)") as e:
        loop.train_and_evaluate(config, tmp_path, data=micro_data(evaluate=False))
    bad = int(str(e.value).split("at step ")[1].split(";")[0])
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert steps[-1] == bad - 1
    assert f"last good checkpoint is step {bad - 1}" in str(e.value)


def test_batch_not_divisible_by_devices():
    with pytest.raises(ValueError, match=r"batch_size=12 .* not divisible by the 8 devices"):
        loop.setup(micro_config(batch_size=12), data=micro_data())
    with pytest.raises(ValueError, match=r"group_size=3"):
        loop.setup(micro_config(batch_size=16, **{"bn.group_size": 3}), data=micro_data())


def test_clip_longer_than_videos_without_looping(tmp_path):
    config = micro_config(**{"input.loop_short": False})
    with pytest.raises(ValueError, match=r"has 6 frames, shorter than clip_length=9"):
        loop.train_and_evaluate(config, tmp_path, data=micro_data(evaluate=False, frames=6))
    assert not (tmp_path / "checkpoints" / "1").exists()


def test_corrupted_checkpoint_dir(micro_run, tmp_path):
    shutil.copytree(micro_run[0], tmp_path, dirs_exist_ok=True)
    for f in (tmp_path / "checkpoints" / "12" / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    config = restart_config()
    config.num_train_steps = 14
    with pytest.raises(TrainingError, match=r"cannot restore checkpoint step 12 from"):
        loop.train_and_evaluate(config, tmp_path, data=micro_data())


def test_unwritable_workdir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match=r"workdir .*file/run' is not writable"):
        loop.train_and_evaluate(micro_config(), blocker / "run")


def test_bad_config_values_name_the_field():
    for overrides, field in (
        ({"model.schedule": "nope"}, "model.schedule"),
        ({"model.preset": "nope"}, "model.preset"),
        ({"optimizer.name": "lamb"}, "optimizer.name"),
        ({"input.clip_length": 4}, "input.clip_length"),
        ({"eval.num_crops": 2}, "eval.num_crops"),
    ):
        with pytest.raises(ValueError, match=f"config.{field}="):
            config_lib.validate_config(micro_config(**overrides))


def test_train_py_rejects_bad_field_name_and_value(tmp_path):
    base = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs/default.py"),
            "--workdir", str(tmp_path)]  # fmt: skip
    r = subprocess.run(base + ["--config.model.presett=tiny"], capture_output=True, text=True,
                       cwd=ROOT, env=_env(), timeout=120)  # fmt: skip
    assert r.returncode == 2 and r.stderr.startswith("error: 'presett' Did you mean \"preset\"")
    assert "Traceback" not in r.stderr
    r = subprocess.run(base + ["--config.lr.schedule=linear"], capture_output=True, text=True,
                       cwd=ROOT, env=_env(), timeout=120)  # fmt: skip
    assert r.returncode == 2 and "error: config.lr.schedule='linear'" in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run(base[:2] + ["--config", "configs/nope.py", "--workdir", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=120)  # fmt: skip
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "configs/nope.py" in r.stderr
    assert "Traceback" not in r.stderr
    assert not any(tmp_path.iterdir())  # failed before any work


def test_pretrained_merge_keeps_a_new_head_and_names_mismatches():
    """One checked merge (`weights.common.merge`) for pretrained init and every weight format."""
    init = {"params": {"Conv": {"kernel": np.zeros((3, 2))}, "Logits": {"kernel": np.ones((2, 4))}}}
    loaded = {
        "params": {"Conv": {"kernel": np.full((3, 2), 7.0)}, "Logits": {"kernel": np.zeros((2, 9))}}
    }
    out = common.merge_onto(init, loaded, "src", keep=("params/Logits",))
    np.testing.assert_array_equal(out["params"]["Conv"]["kernel"], 7.0)
    np.testing.assert_array_equal(out["params"]["Logits"]["kernel"], 1.0)  # the new head
    with pytest.raises(ValueError, match=r"shape mismatches \(1\):\n    params/Logits/kernel: got "
                       r"\(2, 9\), expected \(2, 4\)"):  # fmt: skip
        common.merge_onto(init, loaded, "src")
    with pytest.raises(ValueError) as e:
        common.merge_onto(init, {"params": {"X": np.zeros(1), "Logits": {}}}, "src",
                          keep=("params/Logits",))  # fmt: skip
    assert "missing (1; model variables not in the file):\n    params/Conv/kernel" in str(e.value)
    assert "unexpected (1; file tensors with no model variable):\n    params/X" in str(e.value)


@pytest.mark.parametrize(
    "name",
    ["default", "synthetic_motion", "kinetics400_rgb", "kinetics400_flow", "ucf101_rgb_finetune",
     "ablations.schedule_temporal_early", "ablations.inflate_center"],
)  # fmt: skip
def test_configs_are_valid(name):
    import importlib

    c = importlib.import_module(f"configs.{name}").get_config()
    config_lib.validate_config(c)
    if c.dataset.name == "video_folder":  # the builder config must exist (a typo fails the build)
        from i3d_jax.data.video_folder import VideoFolder

        assert c.dataset.builder_config in {b.name for b in VideoFolder.BUILDER_CONFIGS}
    if name == "kinetics400_rgb":
        assert (c.batch_size, c.bn.group_size, c.optimizer.momentum) == (384, 6, 0.9)
        assert (c.optimizer.weight_decay, c.model.dropout_rate, c.input.clip_length) == (
            1e-7,
            0.5,
            64,
        )
        fn = state.learning_rate_fn(c)
        np.testing.assert_allclose(
            [fn(96_999), fn(97_000), fn(108_000)], [0.1, 0.01, 0.001], rtol=1e-6
        )
    if name == "kinetics400_flow":
        assert c.num_train_steps == 155_000 and c.modality == "flow"
    if name.startswith("ablations.schedule"):
        assert c.model.schedule == "temporal_early"


# ----------------------------------------------------------------------------- a second task


class _MaskedMeanHead(nn.Module):
    """[B, N, D] features + [B, N] mask -> logits [B, C]: masked mean over N, then Dense."""

    num_classes: int = 2

    @nn.compact
    def __call__(self, features, mask):
        pooled = (features * mask[..., None]).sum(1) / jnp.maximum(mask.sum(1, keepdims=True), 1)
        return nn.Dense(self.num_classes, name="Logits")(pooled)


class _FeatureTask:
    """A temporal head over feature sequences, plugged into the unchanged loop."""

    best_metric = "top1"
    inputs = ("features", "mask")

    def __init__(self, config):
        self.config = config

    @staticmethod
    def examples(n=32, seed=0):
        rng = np.random.default_rng(seed)
        out = []
        for i in range(n):
            label, length = i % 2, 3 + i % 4
            x = rng.normal(0, 1, (6, 5)).astype(np.float32) + (2.0 * label - 1.0)
            x[length:] = 50.0  # padding the mask must hide
            mask = (np.arange(6) < length).astype(np.float32)
            out.append({"features": x, "mask": mask, "label": np.int32(label)})
        return out

    def build_model(self, bn_axis_name=None):
        return _MaskedMeanHead(self.config.model.num_classes)

    def init_variables(self, model, data, rng):
        return {**model.init(rng, jnp.zeros((1, 6, 5)), jnp.ones((1, 6))), "batch_stats": {}}

    def initial_variables(self, model, data, rng):
        return None

    def forward(self, model):
        def fwd(variables, batch, train, rng):
            logits = model.apply({"params": variables["params"]}, batch["features"], batch["mask"])
            return logits, variables["batch_stats"]

        return fwd

    def per_example(self, logits, batch):
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
        return loss, (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)

    def data(self):
        return self.examples()

    def data_card(self, data):
        return {"examples": len(data)}

    def train_iterator(self, data):
        ds = grain.MapDataset.source(data).shuffle(seed=self.config.seed).repeat()
        return iter(ds.batch(self.config.batch_size, drop_remainder=True))

    def evaluate(self, model, variables, mesh, data, checkpoint=""):
        batch = {k: np.stack([e[k] for e in data]) for k in ("features", "mask", "label")}
        logits = self.forward(model)(variables, batch, False, None)[0]
        return {"top1": float(np.mean(np.argmax(logits, -1) == batch["label"])), "n": len(data)}

    def write_reports(self, outdir, results):
        (pathlib.Path(outdir) / "n.txt").write_text(str(results["n"]))


def test_a_second_task_trains_through_the_same_loop(tmp_path):
    config = micro_config(num_train_steps=6, **{"model.num_classes": 2, "lr.base": 0.5})
    res = loop.train_and_evaluate(config, tmp_path, task=_FeatureTask(config))
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert res["eval"]["top1"] == 1.0 and rows[-1]["val_top1"] == 1.0
    assert (tmp_path / "best" / "6").is_dir() and (tmp_path / "eval" / "n.txt").read_text() == "32"
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["top1"] == 1.0
    assert json.loads((tmp_path / "data.json").read_text()) == {"examples": 32}
    res = loop.train_and_evaluate(config, tmp_path, task=_FeatureTask(config))  # and it is finished
    assert res["finished_before"] and res["eval"]["top1"] == 1.0
