"""Config validation: every check that can fail before any data, model or device work."""

from __future__ import annotations

import importlib.util
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh

from i3d_jax import graph, schedules
from i3d_jax.model import PRESETS

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}

CHOICES = {
    "modality": ("rgb", "flow"),
    "model.schedule": schedules.SCHEDULES,
    "model.dtype": DTYPES,
    "model.temporal_padding": ("zeros", "replicate"),
    "model.graph": ("auto", *graph.NAMED),
    "optimizer.name": ("sgd", "adam"),
    "lr.schedule": ("step", "cosine", "constant"),
    "init.method": ("scratch", "inflate", "pretrained", "cross_modality"),
    "init.inflate_method": ("mean", "center"),
    "eval.protocol": ("whole", "multiview"),
    "eval.num_crops": (1, 3),
}
POSITIVE = (
    "batch_size", "num_train_steps", "grad_accum_steps", "input.clip_length", "input.crop_size",
    "eval.batch_size", "checkpoint.keep", "log_every_steps", "checkpoint.every_steps",
    "eval.max_frames", "eval.clip_length", "eval.num_clips", "model.num_classes",
)  # fmt: skip


class TrainingError(RuntimeError):
    """A run stopped for a reason the user should read (non-finite loss, bad checkpoint, ...)."""


def _get(config: ml_collections.ConfigDict, field: str) -> Any:
    value = config
    for part in field.split("."):
        value = value[part]
    return value


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming the first bad field (before any data, model or device work)."""
    choices = {"modality": CHOICES["modality"], "model.preset": PRESETS, **CHOICES}
    for field, allowed in choices.items():
        if _get(config, field) not in allowed:
            raise ValueError(
                f"config.{field}={_get(config, field)!r} is not one of {sorted(allowed)}"
            )
    for field in POSITIVE:
        value = _get(config, field)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"config.{field}={value!r} must be a positive integer")
    if not 0.0 <= config.model.dropout_rate < 1.0:
        raise ValueError(f"config.model.dropout_rate={config.model.dropout_rate} not in [0, 1)")
    if config.batch_size % config.grad_accum_steps:
        raise ValueError(
            f"config.batch_size={config.batch_size} is not divisible by "
            f"config.grad_accum_steps={config.grad_accum_steps}"
        )
    if config.init.method != "scratch" and not config.init.source:
        raise ValueError(f"config.init.source is required with init.method={config.init.method!r}")
    if config.bn.group_size < 0:
        raise ValueError(f"config.bn.group_size={config.bn.group_size} must be >= 0")
    if config.lr.base < 0:
        raise ValueError(f"config.lr.base={config.lr.base} must be >= 0")
    need = schedules.min_frames(config.model.schedule)
    for field in ("input.clip_length", "eval.clip_length", "eval.max_frames"):
        if _get(config, field) < need:
            raise ValueError(
                f"config.{field}={_get(config, field)} is shorter than the {need} frames pooling "
                f"schedule {config.model.schedule!r} needs"
            )
    if len(config.eval.fusion_weights) != 2:
        raise ValueError("config.eval.fusion_weights must have 2 entries (this, other)")


def check_devices(config: ml_collections.ConfigDict, mesh: Mesh) -> None:
    """Batch sizes must divide over devices and processes; clear messages otherwise."""
    n_dev, n_proc = mesh.devices.size, jax.process_count()
    micro = config.batch_size // config.grad_accum_steps
    for name in ("batch_size", "eval.batch_size"):
        if _get(config, name) % n_proc:
            raise ValueError(
                f"config.{name}={_get(config, name)} is not divisible by {n_proc} processes"
            )
    if micro % n_dev:
        raise ValueError(
            f"config.batch_size={config.batch_size} / grad_accum_steps={config.grad_accum_steps} "
            f"= {micro} is not divisible by the {n_dev} devices"
        )
    if config.eval.batch_size % n_dev:
        raise ValueError(
            f"config.eval.batch_size={config.eval.batch_size} is not divisible by the {n_dev} devices"
        )
    k = config.bn.group_size
    if k:
        local = micro // n_dev
        if micro % k or not (local % k == 0 or k % local == 0):
            raise ValueError(
                f"config.bn.group_size={k} must divide the per-device batch {local} or be a "
                f"multiple of it (and divide the micro-batch {micro})"
            )


def load_config_file(path: str) -> ml_collections.ConfigDict:
    """`get_config()` of a config file (e.g. the other stream's, for two-stream fusion)."""
    spec = importlib.util.spec_from_file_location("_i3d_config", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"config file {path!r} not found")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"config file {path!r} not found") from e
    return module.get_config()
