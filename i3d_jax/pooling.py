"""Max-pooling with TF SAME padding, and a faster gradient for XLA:CPU.

XLA differentiates a max-pool through `select_and_scatter`, which XLA:CPU runs at about 100 ns
per element: in a training step of the full I3D on CPU the pools' backward took longer than their
convolutions' forward. `max_pool_window_taps` computes the same pool from one strided slice of
the input per window offset, keeps which slice held the maximum (the first, in row-major window
order, on ties: as `select_and_scatter` does), and routes the gradient there.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (extra element at the end) for one axis (works for symbolic sizes)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def max_pool_same(
    x: jax.Array, window: Sequence[int], stride: Sequence[int], method: str = "xla"
) -> jax.Array:
    """Max-pool `[B, *spatial, C]` with TF SAME padding (padding never wins the max).

    `method="taps"`: separable pools through `max_pool_window_taps` (same values, same gradient
    routing); "xla": XLA's `reduce_window`, differentiated by `select_and_scatter`.
    """
    if method not in ("xla", "taps"):
        raise ValueError(f"unknown max-pool method {method!r}; expected 'xla' or 'taps'")
    with jax.named_scope("max_pool"):  # names the ops in profiles (benchmarks/profile_step.py)
        if method == "taps":
            return max_pool_separable(x, tuple(window), tuple(stride))
        return nn.max_pool(x, tuple(window), strides=tuple(stride), padding="SAME")


def max_pool_separable(x: jax.Array, window: tuple, stride: tuple) -> jax.Array:
    """The same pool as one 1D pool per axis, last axis first, each through the taps gradient.

    SAME padding splits per axis, and the max over a box is the max of maxima along each axis.
    Ties resolve as in the box pool: going backwards, the first axis picks its first maximal
    index, then the next axis within it, ... which is the first maximum in row-major order.
    """
    nd = len(window)
    for axis in reversed(range(nd)):
        if window[axis] > 1 or stride[axis] > 1:
            w = tuple(window[axis] if a == axis else 1 for a in range(nd))
            s = tuple(stride[axis] if a == axis else 1 for a in range(nd))
            x = max_pool_window_taps(x, w, s)
    return x


def _taps(x: jax.Array, window: tuple, stride: tuple):
    """The padded input, its padding, and `(offset, strided slice)` for each window offset."""
    spatial = x.shape[1:-1]
    pads = [same_padding(n, k, s) for n, k, s in zip(spatial, window, stride, strict=True)]
    xp = jnp.pad(x, [(0, 0), *pads, (0, 0)], constant_values=-jnp.inf)
    outs = [-(-n // s) for n, s in zip(spatial, stride, strict=True)]
    taps = []
    for offset in itertools.product(*(range(k) for k in window)):
        limit = [o + s * (n - 1) + 1 for o, s, n in zip(offset, stride, outs, strict=True)]
        start, stop = (0, *offset, 0), (xp.shape[0], *limit, xp.shape[-1])
        taps.append((offset, jax.lax.slice(xp, start, stop, (1, *stride, 1))))
    return xp, pads, taps


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def max_pool_window_taps(x: jax.Array, window: tuple, stride: tuple) -> jax.Array:
    """`nn.max_pool(x, window, stride, "SAME")` from strided slices, with an argmax gradient."""
    return _forward(x, window, stride)[0]


def _forward(x, window, stride):
    """The max over the window's slices and which slice held it (the first, on ties)."""
    _, pads, taps = _taps(x, window, stride)
    y, which = taps[0][1], jnp.zeros(taps[0][1].shape, jnp.int8)
    for k, (_, tap) in enumerate(taps[1:], start=1):
        better = tap > y
        y, which = jnp.where(better, tap, y), jnp.where(better, jnp.int8(k), which)
    # The argmax is saved rather than recomputed: re-deriving it by comparing a recomputed
    # input with `y` breaks when XLA rounds a fused recomputation differently.
    return y, (which, x.shape, pads)


def _backward(window, stride, residuals, g):
    which, shape, pads = residuals
    padded = [n + lo + hi for n, (lo, hi) in zip(shape[1:-1], pads, strict=True)]
    grad = jnp.zeros((shape[0], *padded, shape[-1]), g.dtype)
    for k, offset in enumerate(itertools.product(*(range(w) for w in window))):
        widths = [(0, 0, 0)]
        for o, s, n, size in zip(offset, stride, g.shape[1:-1], padded, strict=True):
            widths.append((o, size - o - s * (n - 1) - 1, s - 1))
        widths.append((0, 0, 0))
        grad = grad + jax.lax.pad(
            jnp.where(which == k, g, 0).astype(g.dtype), g.dtype.type(0), widths
        )
    index = tuple(slice(lo, lo + n) for (lo, _), n in zip(pads, shape[1:-1], strict=True))
    return (grad[(slice(None), *index, slice(None))],)


max_pool_window_taps.defvjp(_forward, _backward)
