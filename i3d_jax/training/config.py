"""Configs: loading a config file, dotted fields and `field=value` overrides, and validation (every
check that can fail before any data, model or device work)."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh

from i3d_jax import graph, schedules
from i3d_jax.model import PRESETS, preset_global_pool

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


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming the first bad field (before any data, model or device work)."""
    choices = {"modality": CHOICES["modality"], "model.preset": PRESETS, **CHOICES}
    for field, allowed in choices.items():
        if get_field(config, field) not in allowed:
            raise ValueError(
                f"config.{field}={get_field(config, field)!r} is not one of {sorted(allowed)}"
            )
    for field in POSITIVE:
        value = get_field(config, field)
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
        if get_field(config, field) < need:
            raise ValueError(
                f"config.{field}={get_field(config, field)} is shorter than the {need} frames pooling "
                f"schedule {config.model.schedule!r} needs"
            )
    _check_crop(config)
    _check_multilabel(config)
    if len(config.eval.fusion_weights) != 2:
        raise ValueError("config.eval.fusion_weights must have 2 entries (this, other)")


def _check_multilabel(config: ml_collections.ConfigDict) -> None:
    """The multi-label task: non-negative loss weights (not both 0), whole-video evaluation."""
    if config.get("task", "video") != "multilabel":
        return
    m = config.multilabel
    if m.frame_weight < 0 or m.max_weight < 0 or m.frame_weight + m.max_weight <= 0:
        raise ValueError(
            f"config.multilabel.frame_weight={m.frame_weight} and max_weight={m.max_weight} "
            "must be >= 0 and not both 0"
        )
    if config.eval.protocol != "whole":
        raise ValueError(
            f"config.eval.protocol={config.eval.protocol!r}: the multilabel task scores every "
            "frame of the whole video; use --config.eval.protocol=whole"
        )


def _check_crop(config: ml_collections.ConfigDict) -> None:
    """The crop must reach the logits of a preset without global pooling (the release's)."""
    global_pool = preset_global_pool(config.model.preset)
    if global_pool is None or config.get("task", "video") != "video":
        return
    sched = schedules.get_schedule(config.model.schedule)
    need = schedules.min_spatial(sched, global_pool)
    if config.input.crop_size < need:
        pool = "x".join(map(str, sched.logits_pool[1:]))
        raise ValueError(
            f"config.input.crop_size={config.input.crop_size} is too small for "
            f"model.preset={config.model.preset!r}: its {pool} logits pool (schedule "
            f"{sched.name!r}) needs crops of at least {need} px; use --config.input.crop_size="
            f"{need} or more, or a preset that pools globally over space "
            "(--config.model.preset=small or tiny)"
        )


def check_devices(config: ml_collections.ConfigDict, mesh: Mesh) -> None:
    """Batch sizes must divide over devices and processes; clear messages otherwise."""
    n_dev, n_proc = mesh.devices.size, jax.process_count()
    micro = config.batch_size // config.grad_accum_steps
    for name in ("batch_size", "eval.batch_size"):
        if get_field(config, name) % n_proc:
            raise ValueError(
                f"config.{name}={get_field(config, name)} is not divisible by {n_proc} processes"
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


def load_config_file(path: str | os.PathLike) -> ml_collections.ConfigDict:
    """`get_config()` of a config file. The folder that holds its outermost package (the first
    parent without `__init__.py`, e.g. the repository root for `configs/ablations/x.py`) goes on
    `sys.path`, so `from configs import default` works from any working directory."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} not found (expected e.g. configs/X.py)")
    root = path.resolve().parent
    while (root / "__init__.py").is_file() and root.parent != root:
        root = root.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    name = "_i3d_config_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        return module.get_config()
    except Exception as e:  # noqa: BLE001 - any failure of a user's config file is reported
        raise ValueError(f"config file {str(path)!r} did not load: {type(e).__name__}: {e}") from e


def parse_value(field: str, text: str, old: Any) -> Any:
    """A command-line value in the type of the config field it replaces."""
    if isinstance(old, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{field}={text!r}: expected true or false")
        return text.lower() in ("true", "1")
    if isinstance(old, (int, float)):
        try:
            return type(old)(float(text) if isinstance(old, float) else int(text))
        except ValueError:
            kind = "a number" if isinstance(old, float) else "an integer"
            raise ValueError(f"{field}={text!r}: expected {kind}") from None
    if isinstance(old, tuple):
        try:
            return tuple(ast.literal_eval(text))
        except (ValueError, SyntaxError, TypeError):
            raise ValueError(f"{field}={text!r}: expected a tuple such as (1, 2)") from None
    return text


def get_field(config: ml_collections.ConfigDict, field: str) -> Any:
    """`config.a.b` of the dotted name `"a.b"` (ValueError naming an unknown field)."""
    node = config
    for part in field.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            raise ValueError(f"unknown config field {field!r} (see configs/default.py)")
        node = node[part]
    return node


def with_overrides(
    config: ml_collections.ConfigDict, overrides: Sequence[tuple[str, Any]]
) -> ml_collections.ConfigDict:
    """A copy of `config` with `field -> value` overrides (dotted fields) applied."""
    config = ml_collections.ConfigDict(config.to_dict())
    for field, value in overrides:
        get_field(config, field)
        parent, _, leaf = field.rpartition(".")
        node = get_field(config, parent) if parent else config
        node[leaf] = value
    return config


def parse_assignment(text: str, config: ml_collections.ConfigDict, many: bool) -> tuple:
    """`("a.b", value)` of `a.b=value` (`many`: a tuple of `a.b=v1,v2`), typed as the field."""
    if "=" not in text:
        raise ValueError(f"{text!r}: expected FIELD=VALUE{',VALUE...' if many else ''}")
    field, _, values = text.partition("=")
    old = get_field(config, field.strip())
    parts = [v.strip() for v in values.split(",")] if many else [values.strip()]
    if not all(parts):
        raise ValueError(f"{text!r}: empty value")
    parsed = tuple(parse_value(field, v, old) for v in parts)
    return field.strip(), (parsed if many else parsed[0])
