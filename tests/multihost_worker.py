"""Helpers for the training tests, also run as a subprocess.

`Micro` is a stand-in for InceptionI3d with the same interface (one Conv3D + BatchNorm + dropout +
dense logits): the tests check the training machinery, and the real network's ~60 convolutions
would take minutes to compile on a shared 2-core CPU.

    python tests/multihost_worker.py dist PORT PROCESS_ID OUT.json   # 2-process training (gloo)
    python tests/multihost_worker.py train WORKDIR OUT.npz          # a run that can be killed
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


class Micro(nn.Module):
    """[B, T, H, W, C] -> (logits, {"Logits": logits, "Logits_per_time" [B, T', K]}); BatchNorm
    honours `bn_axis_name`."""

    num_classes: int = 4
    schedule: Any = "paper"
    input_channels: int = 3
    dropout_rate: float = 0.0
    temporal_padding: str = "zeros"
    bn_momentum: float = 0.9
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.astype(self.dtype)
        x = nn.Conv(4, (3, 3, 3), (2, 2, 2), use_bias=False, dtype=self.dtype,
                    param_dtype=self.param_dtype, name="Conv3d_1a")(x)  # fmt: skip
        x = nn.BatchNorm(
            use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-3, use_scale=False,
            axis_name=self.bn_axis_name, dtype=self.dtype, param_dtype=self.param_dtype,
        )(x)  # fmt: skip
        h = nn.relu(x)
        x = h.mean(axis=(1, 2, 3))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        dense = nn.Dense(self.num_classes, dtype=jnp.float32, name="Logits")
        logits = dense(x.astype(jnp.float32))
        # Per time step (the multilabel task's output): the same dense layer on each step.
        per_time = nn.Dropout(self.dropout_rate, deterministic=not train)(h.mean(axis=(2, 3)))
        return logits, {"Logits": logits, "Logits_per_time": dense(per_time.astype(jnp.float32))}


def install_micro() -> None:
    """Registers `Micro` as the model preset "micro" (configs name it: `model.preset="micro"`)."""
    from i3d_jax.model import register_preset

    register_preset("micro", Micro)


def micro_config(**overrides):
    """The default config shrunk to the Micro model, 9-frame 8x8 clips, 4 classes, float32."""
    from configs import default

    c = default.get_config()
    c.model.preset = "micro"
    c.model.num_classes = 4
    c.model.dtype = "float32"
    c.model.dropout_rate = 0.0
    c.model.bn_momentum = 0.9
    c.input.clip_length = 9
    c.input.crop_size = 8
    c.input.flip = False
    c.input.num_threads = 1
    c.batch_size = 8
    c.num_train_steps = 6
    c.optimizer.name = "sgd"
    c.lr.schedule = "constant"
    c.lr.base = 0.1
    c.checkpoint.every_steps = 2
    c.checkpoint.async_save = False
    c.log_every_steps = 1
    c.eval_every_steps = 0
    c.eval.batch_size = 8
    c.eval.max_frames = 9
    c.eval.clip_length = 9
    c.progress = False
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        (c[section] if section else c)[name] = value
    return c


def demo_config(**overrides):
    """The CPU demo's config (`configs/synthetic_motion.py`: `tiny` I3D, 4 classes, Adam) shrunk
    to 2 steps of 2 9-frame 8x8 clips, a checkpoint every step: a real I3D run that compiles in
    about a minute on the 2-core CPU (on one device: `conftest.tiny_run`)."""
    from configs import synthetic_motion

    c = synthetic_motion.get_config()
    c.input.clip_length = 9
    c.input.crop_size = 8
    c.input.num_threads = 1
    c.batch_size = 2
    c.num_train_steps = 2
    c.lr.warmup_steps = 0
    c.checkpoint.every_steps = 1
    c.checkpoint.async_save = False
    c.log_every_steps = 1
    c.eval.batch_size = 2
    c.eval.max_frames = 9
    c.progress = False
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        (c[section] if section else c)[name] = value
    return c


def micro_source(n: int = 16, frames: int = 12, size: int = 10, seed: int = 0):
    """An in-memory dataset: class k videos have brightness rising with k (learnable).
    Returns (source, SourceInfo)."""
    from i3d_jax.data.pipeline import InMemorySource, SourceInfo

    rng = np.random.default_rng(seed)
    examples = []
    for i in range(n):
        label = i % 4
        base = rng.integers(0, 60, (frames, size, size, 3)) + 60 * label
        examples.append({"video": base.astype(np.uint8), "label": label, "video_id": f"m{i}"})
    return InMemorySource(examples), SourceInfo(("a", "b", "c", "d"), name="micro")


class SlowSource:
    """Wraps a source, sleeping on every read (gives a test time to kill the process)."""

    def __init__(self, source, delay: float):
        self.source, self.delay = source, delay

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i):
        import time

        time.sleep(self.delay)
        return self.source[i]


def fixed_batches(steps: int, batch: int, seed: int = 0) -> list[dict]:
    """Deterministic global batches (uint8 video [batch, 9, 8, 8, 3], int32 labels)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        label = rng.integers(0, 4, batch).astype(np.int32)
        video = rng.integers(0, 80, (batch, 9, 8, 8, 3)) + 50 * label[:, None, None, None, None]
        out.append({"video": video.astype(np.uint8), "label": label})
    return out


def run_steps(config, batches: list[dict], mesh=None, process_slice: slice | None = None):
    """Runs the jitted train step over `batches` (each host feeding `process_slice` of every
    global batch). Returns (losses, final params as numpy)."""
    from i3d_jax import sharding
    from i3d_jax.training import loop

    s = loop.setup(config, mesh, data=micro_data())
    state, losses = s.state, []
    for b in batches:
        host = {k: v[process_slice] if process_slice is not None else v for k, v in b.items()}
        state, metrics = s.step_fn(state, sharding.global_batch(host, s.mesh))
        losses.append(float(metrics["loss"]))
    params = jax.tree.map(lambda x: np.asarray(jax.device_get(x)), state["params"])
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        params = jax.tree.map(
            lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)), state["params"]
        )
    return losses, params


def micro_data(train=None, evaluate: bool = True, **kwargs):
    """`video.Data` over `micro_source(**kwargs)`: train (unless `train` replaces it) and evaluate
    (unless `evaluate=False`) on the same videos."""
    from i3d_jax.training.tasks import video

    src, info = micro_source(**kwargs)
    return video.Data(src if train is None else train, src if evaluate else None, info)


def restart_config():
    """The run of the kill -9 / restart test: 12 steps, a checkpoint every 2."""
    return micro_config(num_train_steps=12, **{"checkpoint.every_steps": 2, "input.flip": True})


def _dist(port: str, pid: str, out: str) -> None:
    jax.config.update("jax_num_cpu_devices", 4)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=int(pid)
    )
    install_micro()
    assert jax.device_count() == 8 and jax.local_device_count() == 4
    half = 4
    i = jax.process_index()
    losses, params = run_steps(
        micro_config(), fixed_batches(4, 8), process_slice=slice(i * half, (i + 1) * half)
    )
    flat = {"/".join(str(p.key) for p in k): v.tolist() for k, v in
            jax.tree_util.tree_flatten_with_path(params)[0]}  # fmt: skip
    if i == 0:
        pathlib.Path(out).write_text(json.dumps({"losses": losses, "params": flat}))
    # Both processes finish together: one leaving the coordination service early fails the other.
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices("i3d_jax_test_done")
    jax.distributed.shutdown()


def _train(workdir: str, out: str) -> None:
    jax.config.update("jax_num_cpu_devices", 8)
    install_micro()

    from i3d_jax.training import loop
    from i3d_jax.training.tasks import video

    src, info = micro_source()
    delay = float(os.environ.get("I3D_TEST_READ_DELAY", "0"))
    train_src = SlowSource(src, delay) if delay else src
    res = loop.train_and_evaluate(restart_config(), workdir, data=video.Data(train_src, src, info))
    params = jax.tree_util.tree_flatten_with_path(res["state"]["params"])[0]
    np.savez(out, **{"/".join(str(p.key) for p in k): np.asarray(v) for k, v in params})


if __name__ == "__main__":
    if os.environ.get("I3D_TEST_CACHE_ALL"):  # the test session's compilation cache, every entry
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    mode, *args = sys.argv[1:]
    {"dist": _dist, "train": _train}[mode](*args)
