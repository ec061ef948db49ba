"""The 2D Inception-v1 (with BatchNorm) that I3D inflates, in Flax linen.

It is `InceptionI3d` with `ndim=2`: the same layer list, channel table and parameter paths
(`Conv3d_1a_7x7/conv_3d/kernel`, `Mixed_3b/Branch_1/Conv3d_0b_3x3/...`), with 2D kernels and the
spatial part of every stride and window. Sharing the names is what makes `i3d_jax.inflate` a
key-for-key map. Input `[B, H, W, C]`.
"""

from __future__ import annotations

import functools

from i3d_jax.model import InceptionI3d

InceptionV1 = functools.partial(InceptionI3d, ndim=2)
InceptionV1.__doc__ = "2D Inception-v1: `InceptionI3d(ndim=2, ...)`; input `[B, H, W, C]`."
