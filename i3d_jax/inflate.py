"""2D -> 3D weight inflation: pure functions over parameter pytrees.

`inflate(params_2d, target_3d, method)` returns new 3D params; its inputs are never modified.
Every 2D conv kernel `[kh, kw, cin, cout]` becomes `[kt, kh, kw, cin, cout]` with `kt` taken from
the target's shape:

- `"mean"` (I3D): the kernel repeated over time and divided by `kt`, so a clip of one repeated
  image gives the 2D network's activations (the "boring video" fixed point);
- `"center"`: the kernel in the middle frame (`kt // 2`) and zeros elsewhere, which has the same
  fixed point.

Everything else (biases, BatchNorm offsets/scales/statistics) is copied. At the temporal borders
the 3D network with zero temporal padding sees zeros beyond the clip, so the fixed point holds only
on frames at least half a receptive field away from either end; with
`InceptionI3d(temporal_padding="replicate")` it holds on every frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import traverse_util

METHODS = ("mean", "center")
FIRST_CONV = "Conv3d_1a_7x7"  # the only layer that sees the input channels


def inflate_kernel(kernel_2d: Any, time: int, method: str = "mean") -> np.ndarray:
    """One kernel: `[kh, kw, cin, cout]` -> `[time, kh, kw, cin, cout]`."""
    k = np.asarray(kernel_2d)
    if k.ndim != 4:
        raise ValueError(f"expected a 2D conv kernel [kh, kw, cin, cout], got shape {k.shape}")
    if method == "mean":
        return np.repeat(k[None], time, axis=0) / time
    if method == "center":
        out = np.zeros((time, *k.shape), dtype=k.dtype)
        out[time // 2] = k
        return out
    raise ValueError(f"unknown inflation method {method!r}; expected one of {METHODS}")


def inflate(params_2d: Mapping, target_3d: Mapping, method: str = "mean") -> dict:
    """Maps a 2D param (or variables) tree onto the 3D target's structure.

    Args:
      params_2d: nested dict of arrays from the 2D network (same paths as the 3D one).
      target_3d: nested dict of arrays or `jax.ShapeDtypeStruct`s (e.g. from `jax.eval_shape`)
        giving the 3D paths, shapes and dtypes.
      method: "mean" or "center".
    Returns a new nested dict of numpy arrays shaped like `target_3d`.
    Raises ValueError listing missing and unexpected names, or the first shape that cannot map.
    """
    if method not in METHODS:
        raise ValueError(f"unknown inflation method {method!r}; expected one of {METHODS}")
    src = traverse_util.flatten_dict(dict(params_2d), sep="/")
    dst = traverse_util.flatten_dict(dict(target_3d), sep="/")
    missing = sorted(set(dst) - set(src))
    unexpected = sorted(set(src) - set(dst))
    if missing or unexpected:
        raise ValueError(
            f"2D params do not match the 3D target: missing {missing}, unexpected {unexpected}"
        )
    out = {}
    for name, target in dst.items():
        value = np.asarray(src[name])
        shape = tuple(target.shape)
        if value.ndim == len(shape) - 1 and value.shape == shape[1:]:
            value = inflate_kernel(value, shape[0], method)
        elif value.shape != shape:
            raise ValueError(f"{name}: 2D shape {value.shape} cannot inflate to {shape}")
        out[name] = value.astype(jax.numpy.dtype(target.dtype))
    return traverse_util.unflatten_dict(out, sep="/")


def cross_modality(variables: Mapping, channels: int = 2, first: str = FIRST_CONV) -> dict:
    """TSN's cross-modality initialisation: an RGB network's variables for a `channels`-input one.

    The first conv's kernel `[..., cin, cout]` (under the `first` module) is averaged over its input
    (colour) channels and repeated `channels` times; every other array is copied. Returns a new
    nested dict of numpy arrays (the input is not modified).
    """
    flat = traverse_util.flatten_dict(dict(variables), sep="/")
    kernels = [k for k in flat if f"/{first}/" in f"/{k}" and k.endswith("/kernel")]
    if len(kernels) != 1:
        raise ValueError(f"cross-modality init: expected one kernel under {first!r}, got {kernels}")
    out = {k: np.array(v) for k, v in flat.items()}
    k = out[kernels[0]]
    out[kernels[0]] = np.repeat(k.mean(axis=-2, keepdims=True), channels, axis=-2).astype(k.dtype)
    return traverse_util.unflatten_dict(out, sep="/")
