"""PyTorch I3D in the layout of piergiaj/pytorch-i3d (also used by FVD code), both directions.

State-dict names: `Conv3d_1a_7x7.conv3d.weight` `[out, in, T, H, W]`, `.bn.{weight, bias,
running_mean, running_var, num_batches_tracked}`; blocks `Mixed_3b.{b0, b1a, b1b, b2a, b2b,
b3b}.conv3d.weight` + `.bn.*`; head `logits.conv3d.{weight, bias}`. Our layout is
`[T, H, W, in, out]`. A leading `module.` (from `nn.DataParallel`) is stripped.

BatchNorm: a weight of all ones means `bn_scale=False` (the release has no scale); any other
weight gives `bn_scale=True`. Epsilon is not stored in a state dict: the model keeps its default
1e-3 (the release's; note piergiaj's own code constructs `BatchNorm3d(eps=1e-5)`, pass
`bn_epsilon=1e-5` to reproduce a model trained with that). `num_batches_tracked` is dropped.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import traverse_util

from i3d_jax.weights import common

BRANCHES = ("b0", "b1a", "b1b", "b2a", "b2b", "b3b")  # same order as `common.block_units`


def _units() -> dict[str, str]:
    units = {u: u for u in common.CONV_UNITS}
    for block in common.MIXED_BLOCKS:
        for short, ours in zip(BRANCHES, common.block_units(block), strict=True):
            units[f"{block}.{short}"] = ours
    units["logits"] = common.LOGITS_UNIT
    return units


UNITS = _units()  # piergiaj unit name -> our unit path
LEAVES = {
    "conv3d.weight": common.Leaf("params", "conv_3d/kernel", common.torch_conv),
    "conv3d.bias": common.Leaf("params", "conv_3d/bias"),
    "bn.weight": common.Leaf("params", "batch_norm/scale"),
    "bn.bias": common.Leaf("params", "batch_norm/bias"),
    "bn.running_mean": common.Leaf("batch_stats", "batch_norm/mean"),
    "bn.running_var": common.Leaf("batch_stats", "batch_norm/var"),
}
DROP = (r".*\.bn\.num_batches_tracked",)  # a PyTorch step counter, no meaning for inference


def is_piergiaj(names) -> bool:
    names = {n.removeprefix("module.") for n in names}
    return "Conv3d_1a_7x7.conv3d.weight" in names or "logits.conv3d.weight" in names


def from_state_dict(state_dict: Mapping[str, Any], origin: str = "state dict") -> common.Mapped:
    """Renames a piergiaj state dict (numpy arrays) to our paths and layouts."""
    sd = {k.removeprefix("module."): np.asarray(v) for k, v in state_dict.items()}
    return common.map_tensors(sd, origin, UNITS, LEAVES, ".", DROP)


def to_state_dict(variables: Mapping) -> dict[str, np.ndarray]:
    """Our `{'params', 'batch_stats'}` -> a piergiaj state dict of numpy arrays.

    Without BatchNorm scale (`bn_scale=False`) `bn.weight` is written as ones; every BN gets
    `num_batches_tracked = 0` (int64, shape `()`), so `load_state_dict(strict=True)` accepts it.
    Raises ValueError naming any variable that has no piergiaj name.
    """
    flat = traverse_util.flatten_dict(dict(variables), sep="/")
    inverse_units = {ours: theirs for theirs, ours in UNITS.items()}
    inverse_leaves = {f"{leaf.collection}/{leaf.name}": name for name, leaf in LEAVES.items()}
    out: dict[str, np.ndarray] = {}
    unknown = []
    for path, value in flat.items():
        collection, rest = path.split("/", 1)
        unit, *leaf_parts = rest.rsplit("/", 2)
        leaf = "/".join(leaf_parts)
        key = f"{collection}/{leaf}"
        if unit not in inverse_units or key not in inverse_leaves:
            unknown.append(path)
            continue
        value = np.asarray(value)
        if leaf == "conv_3d/kernel":
            value = common.from_torch_conv(value)
        out[f"{inverse_units[unit]}.{inverse_leaves[key]}"] = np.ascontiguousarray(value)
    if unknown:
        raise ValueError(f"variables with no piergiaj name: {unknown}")
    for name in list(out):
        if name.endswith(".bn.bias"):
            prefix = name[: -len("bias")]
            if prefix + "weight" not in out:
                out[prefix + "weight"] = np.ones_like(out[name])
            out[prefix + "num_batches_tracked"] = np.zeros((), np.int64)
    return dict(sorted(out.items()))


def read_torch(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A `.pt`/`.pth` state dict via `torch.load(weights_only=True)` (needs torch)."""
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            f"reading {path} needs PyTorch (pip install torch), or convert it to "
            ".safetensors elsewhere"
        ) from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for non-state-dict files
        raise ValueError(
            f"{path}: not readable as a weights-only PyTorch state dict ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''})"
        ) from e
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"{path}: expected a state dict (name -> tensor), got {type(obj).__name__}"
        )
    out = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            raise ValueError(f"{path}: entry {k!r} is {type(v).__name__}, expected a tensor")
        out[k] = v.detach().cpu().numpy()
    return out


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of a `.safetensors` file as numpy arrays (no torch needed)."""
    from safetensors.numpy import load_file

    return load_file(os.fspath(path))


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A state dict from `.pt`/`.pth` (torch) or `.safetensors` (no torch needed)."""
    if os.fspath(path).endswith(".safetensors"):
        return read_safetensors(path)
    return read_torch(path)


def load(path: str | os.PathLike) -> common.Mapped:
    """Reads a piergiaj-layout `.pt`/`.pth`/`.safetensors` file and renames it to our paths."""
    sd = read_state_dict(path)
    if not is_piergiaj(sd):
        raise ValueError(f"{path}: not a piergiaj I3D state dict (no Conv3d_1a_7x7.conv3d.weight)")
    return from_state_dict(sd, os.fspath(path))


def save_safetensors(variables: Mapping, path: str | os.PathLike, metadata: dict | None = None):
    """Writes `to_state_dict(variables)` to a `.safetensors` file."""
    from safetensors.numpy import save_file

    save_file(to_state_dict(variables), os.fspath(path), metadata=metadata)
