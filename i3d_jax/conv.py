"""Convolutions with TF SAME padding, and two rewrites that compute the same conv faster.

`space_to_depth` folds a strided conv's blocks into channels; `time_to_channels` folds a 3D
conv's time taps into channels so it runs as a 2D conv. `Conv` applies either on request
(`i3d_jax.graph.Graph` says which, per backend).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


def space_to_depth(x: jax.Array, kernel: jax.Array, stride: Sequence[int], pads) -> tuple:
    """Rewrites a strided conv as a stride-1 VALID conv on blocks of `stride` folded into channels.

    `x` is `[B, *spatial, C]`, `kernel` `[*k, C, O]`. With blocks of size s on every axis, output
    o reads padded input 2o+k = s(o+a)+b, so the kernel is zero-padded to a multiple of s and
    split into (a, b): a stride-1 conv with kernel ceil(k/s) over C*prod(s) channels. Returns
    the rewritten input and kernel; a stride-1 VALID conv of them equals the original conv.
    """
    nd = len(stride)
    outs = [math.ceil(n / s) for n, s in zip(x.shape[1:-1], stride, strict=True)]
    blocks = [math.ceil(k / s) for k, s in zip(kernel.shape[:nd], stride, strict=True)]
    widths = (
        [(0, 0)]
        + [
            (before, (o + a - 1) * s - n - before)
            for (before, _), o, a, s, n in zip(
                pads, outs, blocks, stride, x.shape[1:-1], strict=True
            )
        ]
        + [(0, 0)]
    )
    x = jnp.pad(x, widths)
    shape = [x.shape[0]]
    for n, s in zip(x.shape[1:-1], stride, strict=True):
        shape += [n // s, s]
    x = x.reshape(*shape, x.shape[-1])
    # [B, n0, s0, n1, s1, ..., C] -> [B, n0, n1, ..., s0, s1, ..., C]
    order = [0] + [1 + 2 * i for i in range(nd)] + [2 + 2 * i for i in range(nd)] + [2 * nd + 1]
    x = x.transpose(order).reshape(*x.shape[:1], *[shape[1 + 2 * i] for i in range(nd)], -1)
    k = jnp.pad(
        kernel,
        [(0, a * s - kk) for a, s, kk in zip(blocks, stride, kernel.shape[:nd], strict=True)]
        + [(0, 0)] * 2,
    )
    kshape = []
    for a, s in zip(blocks, stride, strict=True):
        kshape += [a, s]
    k = k.reshape(*kshape, *kernel.shape[-2:])
    korder = [2 * i for i in range(nd)] + [2 * i + 1 for i in range(nd)] + [2 * nd, 2 * nd + 1]
    k = k.transpose(korder).reshape(*blocks, -1, kernel.shape[-1])
    return x, k


def time_to_channels(
    x: jax.Array, kernel: jax.Array, stride: int, pad: tuple[int, int]
) -> tuple[jax.Array, jax.Array]:
    """Rewrites a 3D conv's time axis as channels: `[B, T, H, W, C]` -> `[B*T', H, W, kt*C]`.

    Output frame t reads padded input frames `stride*t + j` for j < kt; those kt frames are
    concatenated on channels and the kernel `[kt, kh, kw, C, O]` becomes `[kh, kw, kt*C, O]`, so a
    2D conv over frames in the batch equals the 3D conv. Returns the rewritten input and kernel.
    """
    kt = kernel.shape[0]
    x = jnp.pad(x, ((0, 0), pad, (0, 0), (0, 0), (0, 0)))
    frames = (x.shape[1] - kt) // stride + 1
    taps = [
        jax.lax.slice_in_dim(x, j, j + stride * (frames - 1) + 1, stride, axis=1) for j in range(kt)
    ]
    x = jnp.concatenate(taps, axis=-1) if kt > 1 else taps[0]
    x = x.reshape(-1, *x.shape[2:])
    kernel = jnp.moveaxis(kernel, 0, 2).reshape(*kernel.shape[1:3], -1, kernel.shape[-1])
    return x, kernel


class Conv(nn.Module):
    """N-d convolution with explicit (TF SAME) padding; optionally via space-to-depth.

    `time_to_channels=True` computes a 3D conv as a 2D conv with the kernel's time taps folded
    into channels (see `time_to_channels`): the same params and function (see `i3d_jax.graph`
    for where it is measured faster).

    Parameters `kernel` `[*k, C_in, C_out]` and `bias`, named and initialised like `nn.Conv`.
    """

    features: int
    kernel_size: Sequence[int]
    strides: Sequence[int]
    padding: Sequence[tuple[int, int]]
    use_bias: bool = False
    space_to_depth: bool = False
    time_to_channels: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        nd = len(self.kernel_size)
        batch = x.shape[0]
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (*self.kernel_size, x.shape[-1], self.features),
            self.param_dtype,
        )
        bias = (
            self.param("bias", nn.initializers.zeros_init(), (self.features,), self.param_dtype)
            if self.use_bias
            else None
        )
        x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        strides, padding = tuple(self.strides), list(self.padding)
        # A 1x1x1 conv is a matmul either way (and measured slightly faster as a 3D conv).
        if self.time_to_channels and nd == 3 and (self.kernel_size[0], strides[0]) != (1, 1):
            x, kernel = time_to_channels(x, kernel, strides[0], padding[0])
            nd, strides, padding = 2, strides[1:], padding[1:]
        if self.space_to_depth and any(s > 1 for s in strides):
            x, kernel = space_to_depth(x, kernel, strides, padding)
            strides, padding = (1,) * nd, [(0, 0)] * nd
        spatial = "DHW"[3 - nd :]
        y = jax.lax.conv_general_dilated(
            x,
            kernel,
            strides,
            padding,
            dimension_numbers=(f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"),
        )
        if nd < len(self.kernel_size):
            y = y.reshape(batch, -1, *y.shape[1:])
        if bias is not None:
            y = y + bias.astype(self.dtype)
        return y
