"""torchvision's GoogLeNet (Inception-v1 with BatchNorm) state dict -> our 2D `InceptionV1`.

This is the 2D source network of inflation: load it here, then `i3d_jax.inflate` it to 3D.

Name table (torchvision -> ours): `conv1` -> `Conv3d_1a_7x7`, `conv2` -> `Conv3d_2b_1x1`,
`conv3` -> `Conv3d_2c_3x3`; `inception3a/3b` -> `Mixed_3b/3c`, `inception4a..4e` ->
`Mixed_4b..4f`, `inception5a/5b` -> `Mixed_5b/5c`; inside a block `branch1` ->
`Branch_0/Conv3d_0a_1x1`, `branch2.0/.1` -> `Branch_1/Conv3d_0a_1x1`/`Conv3d_0b_3x3`,
`branch3.0/.1` -> `Branch_2/Conv3d_0a_1x1`/`Conv3d_0b_3x3` (torchvision's "5x5" branch really
is 3x3, as in ours), `branch4.1` -> `Branch_3/Conv3d_0b_1x1` (`branch4.0` is the max-pool);
`fc` (a `[1000, 1024]` linear) -> `Logits/Conv3d_0c_1x1` as a 1x1 conv. Each `*.conv.weight`
`[out, in, kh, kw]` becomes `[kh, kw, in, out]`; `*.bn.weight` is the BN scale, so the model has
`bn_scale=True`; torchvision's BN epsilon is 1e-3, our default.

Dropped on purpose: the auxiliary classifiers `aux1.*` and `aux2.*` (training-time heads that
I3D does not have) and every `num_batches_tracked` (a PyTorch step counter).

Input note: torchvision's pretrained GoogLeNet expects ImageNet-normalised input (its
`transform_input` re-normalises it); I3D feeds [-1, 1]. The weights map exactly; the input
convention is for whoever fine-tunes the inflated model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from i3d_jax.weights import common, piergiaj

BLOCKS = {
    "inception3a": "Mixed_3b",
    "inception3b": "Mixed_3c",
    "inception4a": "Mixed_4b",
    "inception4b": "Mixed_4c",
    "inception4c": "Mixed_4d",
    "inception4d": "Mixed_4e",
    "inception4e": "Mixed_4f",
    "inception5a": "Mixed_5b",
    "inception5b": "Mixed_5c",
}
BRANCHES = ("branch1", "branch2.0", "branch2.1", "branch3.0", "branch3.1", "branch4.1")
CONVS = {"conv1": "Conv3d_1a_7x7", "conv2": "Conv3d_2b_1x1", "conv3": "Conv3d_2c_3x3"}


def _units() -> dict[str, str]:
    units = dict(CONVS)
    for tv, ours in BLOCKS.items():
        for short, unit in zip(BRANCHES, common.block_units(ours), strict=True):
            units[f"{tv}.{short}"] = unit
    return units


def fc_to_conv(x):
    """Linear weight [out, in] -> a 1x1 conv kernel [1, 1, in, out]."""
    return x.transpose((1, 0)).reshape((1, 1, x.shape[1], x.shape[0]))


UNITS = _units()  # torchvision BasicConv2d name -> our unit path
LEAVES = {
    "conv.weight": common.Leaf("params", "conv_3d/kernel", common.torch_conv),
    "bn.weight": common.Leaf("params", "batch_norm/scale"),
    "bn.bias": common.Leaf("params", "batch_norm/bias"),
    "bn.running_mean": common.Leaf("batch_stats", "batch_norm/mean"),
    "bn.running_var": common.Leaf("batch_stats", "batch_norm/var"),
}
FC_UNITS = {"fc": common.LOGITS_UNIT}
FC_LEAVES = {
    "weight": common.Leaf("params", "conv_3d/kernel", fc_to_conv),
    "bias": common.Leaf("params", "conv_3d/bias"),
}
DROP = (r"aux[12]\..*", r".*\.num_batches_tracked")


def is_googlenet(names) -> bool:
    names = {n.removeprefix("module.") for n in names}
    return "conv1.conv.weight" in names and "inception3a.branch1.conv.weight" in names


def from_state_dict(state_dict: Mapping[str, Any], origin: str = "state dict") -> common.Mapped:
    """Renames a torchvision GoogLeNet state dict to our 2D paths and layouts."""
    sd = {k.removeprefix("module."): np.asarray(v) for k, v in state_dict.items()}
    fc = {k: v for k, v in sd.items() if k.startswith("fc.")}
    rest = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    out = common.map_tensors(rest, origin, UNITS, LEAVES, ".", DROP)
    head = common.map_tensors(fc, origin, FC_UNITS, FC_LEAVES, ".")
    for path, (src, value) in head.tensors.items():
        out.add(path, src, value)
    out.unexpected += head.unexpected
    return out


def load(path: str | os.PathLike) -> common.Mapped:
    """Reads a torchvision GoogLeNet `.pth`/`.safetensors` file and renames it to our 2D paths."""
    sd = piergiaj.read_state_dict(path)
    if not is_googlenet(sd):
        raise ValueError(f"{path}: not a torchvision GoogLeNet state dict (no conv1.conv.weight)")
    return from_state_dict(sd, os.fspath(path))
