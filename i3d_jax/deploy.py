"""The inference form of a trained I3D: BatchNorm folded into conv biases, 1x1x1 convs fused.

Pure functions over variables; the result runs in a model whose `graph` has `fold_bn=True` (and
`fuse_1x1`), and
computes the same function as the original in inference mode (`train=False`):

    bn(conv(x, w)) = conv(x, w * g) + (beta - mean * g),   g = scale / sqrt(var + eps)

and the three 1x1x1 convs that read an Inception block's input become one conv whose output
channels are theirs concatenated (`Mixed_*/Fused_1x1`), split afterwards.
"""

from __future__ import annotations

import numpy as np
from flax import traverse_util

from i3d_jax.model import InceptionI3d

FUSED = ("Branch_0/Conv3d_0a_1x1", "Branch_1/Conv3d_0a_1x1", "Branch_2/Conv3d_0a_1x1")
RENAMED = ("Branch_1/Conv3d_0b_3x3", "Branch_2/Conv3d_0b_3x3", "Branch_3/Conv3d_0b_1x1")


def fold_batchnorm(variables: dict, epsilon: float = 1e-3) -> dict:
    """`{'params', 'batch_stats'}` -> `{'params'}` with every BatchNorm folded into its conv."""
    params = traverse_util.flatten_dict(variables["params"], sep="/")
    stats = traverse_util.flatten_dict(variables.get("batch_stats", {}), sep="/")
    out = {}
    for name, value in params.items():
        if "/batch_norm/" not in name:  # batch_norm/{bias,scale} are folded below
            out[name] = np.asarray(value)
    for name in [n for n in params if n.endswith("/batch_norm/bias")]:
        unit = name[: -len("/batch_norm/bias")]
        scale = np.asarray(params.get(f"{unit}/batch_norm/scale", 1.0), np.float64)
        mean = np.asarray(stats[f"{unit}/batch_norm/mean"], np.float64)
        var = np.asarray(stats[f"{unit}/batch_norm/var"], np.float64)
        g = scale / np.sqrt(var + epsilon)
        kernel = np.asarray(params[f"{unit}/conv_3d/kernel"])
        out[f"{unit}/conv_3d/kernel"] = (kernel * g).astype(kernel.dtype)
        out[f"{unit}/conv_3d/bias"] = (np.asarray(params[name], np.float64) - mean * g).astype(
            kernel.dtype
        )
    return {"params": traverse_util.unflatten_dict(out, sep="/")}


def fuse_1x1(folded: dict) -> dict:
    """Folded params -> params of the `fuse_1x1=True` model (each block's 1x1s concatenated)."""
    params = traverse_util.flatten_dict(folded["params"], sep="/")
    blocks = sorted({n.split("/")[0] for n in params if n.startswith("Mixed_")})
    out = {n: v for n, v in params.items() if not n.startswith("Mixed_")}
    for block in blocks:
        for leaf in ("kernel", "bias"):
            parts = [params[f"{block}/{unit}/conv_3d/{leaf}"] for unit in FUSED]
            out[f"{block}/Fused_1x1/conv_3d/{leaf}"] = np.concatenate(parts, axis=-1)
            for unit in RENAMED:
                new = unit.replace("/", "_")
                out[f"{block}/{new}/conv_3d/{leaf}"] = params[f"{block}/{unit}/conv_3d/{leaf}"]
    return {"params": traverse_util.unflatten_dict(out, sep="/")}


def to_inference(
    model: InceptionI3d, variables: dict, fuse: bool = True
) -> tuple[InceptionI3d, dict]:
    """The folded (and optionally fused) model and variables; same logits in inference mode."""
    folded = fold_batchnorm(variables, model.bn_epsilon)
    if fuse:
        folded = fuse_1x1(folded)
    return model.clone(graph=model.graph.replace(fold_bn=True, fuse_1x1=fuse)), folded
