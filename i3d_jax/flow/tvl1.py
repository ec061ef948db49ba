"""Optical flow for the I3D flow stream: TV-L1 in JAX (jit + vmap) and the OpenCV reference.

`compute_flow(frames)` takes uint8 RGB frames `[T, H, W, 3]` and returns float32 pixel
displacements `[T-1, H, W, 2]` (x then y) from frame t to frame t+1, i.e.
`frames[t](p) ~ frames[t+1](p + flow[t](p))`. Both backends see the same grayscale input
(ITU-R 601 luma, `0.299 R + 0.587 G + 0.114 B`, rounded to uint8, as OpenCV's `RGB2GRAY`).
Scale to the network's range with `i3d_jax.preprocess.scale_flow` (clip to +-20, divide by 20).

The JAX solver is the Dual TV-L1 of Zach, Pock & Bischof (2007) in the form described by
Sanchez, Meinhardt-Perez & Facciolo (IPOL 2013), with OpenCV's parameter names and defaults:
per pyramid level (coarse to fine, factor `scale_step`), `warps` times: warp the second image
with the current flow (bicubic), linearise the data term around it, then alternate the
point-wise thresholding step (v), the flow update u = v + theta div p and the Chambolle
projected-gradient step on the dual variable p until the mean squared flow update falls under
`epsilon**2` (or `outer_iterations x inner_iterations` steps), with an optional median filter of
the flow at the start of each outer iteration (a pruned sorting network of min/max, which XLA
fuses; a sort was 10x slower on CPU). Intensities are in [0, 255], as in OpenCV, and warping
reads zeros outside the image, as OpenCV's `remap` (so the data term lets go where a match leaves
the frame). Differences from OpenCV: the image pyramid is antialiased (linear filter) and the flow
is upsampled with the exact per-axis size ratio (OpenCV: 1 / scale_step on both axes).
Frame pairs are vmapped in batches (`batch_size`); on CPU single pairs were faster per pair.
`tvl1_sharded` splits a batch over several devices (`jax.shard_map`; each device its own loops).

CLI: `python -m i3d_jax.flow VIDEO --out FLOW.npz [--backend jax|opencv] [--fast]` writes `flow`
(pixels; `--scaled` adds `flow_scaled`, the network's [-1, 1] input) for the video as decoded by
`i3d_jax.preprocess` (25 fps, short side 256); see `i3d_jax.flow.cli` (chunked, with progress).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

BACKENDS = ("jax", "opencv")
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
# The JAX solver's version, recorded with flow it made (flow datasets: `FlowSettings`; feature
# files: `extract_features.DEFAULT_FLOW_ID`) so that flow from an older solver reads as stale.
# Bump it when the solver's flow for the same frames and parameters changes. 1 (recorded as no
# version): until 2026-12-04, warping clamped at the borders and blew up there. 2: warping reads
# zeros outside the image, as OpenCV.
SOLVER_VERSION = 2


@dataclasses.dataclass(frozen=True)
class TVL1Params:
    """TV-L1 parameters, named and defaulted as OpenCV's `DualTVL1OpticalFlow`.

    tau: time step of the dual update (<= 0.25 for convergence).
    lam: weight of the data term (`lambda`; larger = less smooth), for intensities in [0, 255].
    theta: coupling between u and v.
    nscales: pyramid levels (fewer if a level would be smaller than 16 pixels).
    warps: warps (re-linearisations) per level.
    epsilon: stopping threshold on the root-mean-square flow update per iteration (pixels);
      0 runs the full `outer_iterations x inner_iterations` every warp (fixed cost).
    inner_iterations, outer_iterations: iteration caps; the median filter runs once per outer.
    scale_step: size ratio between pyramid levels.
    median_filtering: median window applied to the flow (1 disables it).
    """

    tau: float = 0.25
    lam: float = 0.15
    theta: float = 0.3
    nscales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    median_filtering: int = 5

    def to_opencv(self):
        """An OpenCV `DualTVL1OpticalFlow` with these parameters (needs opencv-contrib)."""
        cv2 = _import_cv2()
        return cv2.optflow.DualTVL1OpticalFlow_create(
            tau=self.tau,
            lambda_=self.lam,
            theta=self.theta,
            nscales=self.nscales,
            warps=self.warps,
            epsilon=self.epsilon,
            innnerIterations=self.inner_iterations,
            outerIterations=self.outer_iterations,
            scaleStep=self.scale_step,
            medianFiltering=self.median_filtering,
        )


DEFAULT = TVL1Params()
# Fewer iterations: 3 warps, at most 2 x 15 steps each. At 320x240 it took 0.61 s/pair vs 0.97 on
# a shared 2-core CPU and 3.2 vs 4.5 ms/pair on an H200; mean end-point difference from OpenCV's
# defaults on the release's sample clip was 0.044 px (DEFAULT: 0.022 px; both measured before the
# border fix of 2026-12-04).
FAST = TVL1Params(warps=3, inner_iterations=15, outer_iterations=2)
PRESETS = {"default": DEFAULT, "fast": FAST}


def to_gray(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB `[..., H, W, 3]` -> float32 luma `[..., H, W]` in [0, 255], rounded like OpenCV."""
    frames = np.asarray(frames)
    if frames.shape[-1] != 3:
        raise ValueError(f"expected RGB frames [..., H, W, 3], got shape {frames.shape}")
    return np.rint(frames.astype(np.float32) @ LUMA).astype(np.float32)


# ----------------------------------------------------------------------------- JAX TV-L1


def _forward_gradient(u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Forward differences with zero at the last column / row (Neumann boundary)."""
    ux = jnp.pad(u[:, 1:] - u[:, :-1], ((0, 0), (0, 1)))
    uy = jnp.pad(u[1:, :] - u[:-1, :], ((0, 1), (0, 0)))
    return ux, uy


def _divergence(px: jax.Array, py: jax.Array) -> jax.Array:
    """Backward-difference divergence, the negative adjoint of `_forward_gradient`."""
    dx = px - jnp.pad(px[:, :-1], ((0, 0), (1, 0)))
    dy = py - jnp.pad(py[:-1, :], ((1, 0), (0, 0)))
    # The last column (row) of p is always 0 (its gradient is 0), so dx there is -p[:, -2].
    return dx + dy


def _centered_gradient(img: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Central differences with replicated borders."""
    p = jnp.pad(img, 1, mode="edge")
    gx = 0.5 * (p[1:-1, 2:] - p[1:-1, :-2])
    gy = 0.5 * (p[2:, 1:-1] - p[:-2, 1:-1])
    return gx, gy


def _cubic_weights(t: jax.Array, a: float = -0.75) -> tuple[jax.Array, ...]:
    """Keys cubic convolution weights (OpenCV's a=-0.75) for taps at offsets -1, 0, 1, 2."""

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return far(1 + t), near(t), near(1 - t), far(2 - t)


def _taps(pos: jax.Array, size: int) -> tuple[jax.Array, jax.Array]:
    """Bicubic taps along one axis: indices `[4, ...]` (clamped) and weights (0 outside)."""
    start = jnp.floor(pos)
    index, weight = [], []
    for k, wt in enumerate(_cubic_weights(pos - start)):
        t = start + (k - 1)  # float: no int overflow for a wild flow
        weight.append(jnp.where((t >= 0) & (t <= size - 1), wt, 0.0))
        index.append(jnp.clip(t, 0, size - 1).astype(jnp.int32))
    return jnp.stack(index), jnp.stack(weight)


def _warp(images: jax.Array, u: jax.Array) -> jax.Array:
    """Bicubic sampling of `images [C, H, W]` at `(x + u_x, y + u_y)`; taps outside read 0.

    Zero outside the image is OpenCV's `remap` (its default constant border) and what keeps the
    solver stable at the borders: where a pixel's match leaves the image, the warped gradient is
    0, so the data term lets go and the smoothness term fills the flow in. Clamped taps (the
    border replicated) kept the border pixel's gradient there while the warped image stayed
    constant, so each warp re-linearised to the same residual and pushed the flow further out
    (tens to hundreds of pixels over the levels, in bands along the border).
    """
    _, h, w = images.shape
    ys, xs = jnp.meshgrid(jnp.arange(h, dtype=u.dtype), jnp.arange(w, dtype=u.dtype), indexing="ij")
    xi, wx = _taps(xs + u[..., 0], w)  # [4, H, W]
    yi, wy = _taps(ys + u[..., 1], h)
    index = (yi[:, None] * w + xi[None, :]).reshape(16, -1)  # [16, H*W], all taps at once
    weight = (wy[:, None] * wx[None, :]).reshape(16, h, w)
    taps = images.reshape(images.shape[0], -1)[:, index].reshape(-1, 16, h, w)
    return jnp.einsum("cthw,thw->chw", taps, weight, precision=jax.lax.Precision.HIGHEST)


def _oddeven_merge_sort(n: int) -> list[tuple[int, int]]:
    """Batcher's odd-even merge sort network for `n` (a power of two) wires, as (lo, hi) pairs."""
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return pairs


@functools.cache
def _median_network(count: int) -> tuple[int, list[tuple[int, int]], list[float]]:
    """A comparator network whose output wire holds the median of `count` (odd) inputs.

    The inputs are padded to a power of two with -inf/+inf so the median lands on one wire, and
    comparators that cannot reach that wire are dropped. Returns (wire, comparators, padding).
    """
    n = 1 << (count - 1).bit_length()
    low = (n - count) // 2
    padding = [-np.inf] * low + [np.inf] * (n - count - low)
    target = low + count // 2
    needed = {target}
    kept = []
    for lo, hi in reversed(_oddeven_merge_sort(n)):
        if lo in needed or hi in needed:
            kept.append((lo, hi))
            needed |= {lo, hi}
    return target, kept[::-1], padding


def _median_filter(u: jax.Array, k: int) -> jax.Array:
    """k x k median of each channel of `u [H, W, C]`, borders replicated.

    Computed with a pruned sorting network of elementwise min/max (fast under XLA, unlike a
    sort along a new axis); comparisons against the +-inf padding are resolved while tracing.
    """
    r = k // 2
    h, w = u.shape[:2]
    p = jnp.pad(u, ((r, r), (r, r), (0, 0)), mode="edge")
    target, comparators, padding = _median_network(k * k)
    wires: list = [p[i : i + h, j : j + w] for i in range(k) for j in range(k)] + padding
    for lo, hi in comparators:
        a, b = wires[lo], wires[hi]
        if isinstance(a, float) and isinstance(b, float):
            continue
        if isinstance(a, float):  # a constant: -inf stays low, +inf goes high
            wires[lo], wires[hi] = (a, b) if a < 0 else (b, a)
        elif isinstance(b, float):
            wires[lo], wires[hi] = (b, a) if b < 0 else (a, b)
        else:
            wires[lo], wires[hi] = jnp.minimum(a, b), jnp.maximum(a, b)
    return wires[target]


def _resize(x: jax.Array, shape: Sequence[int], antialias: bool) -> jax.Array:
    return jax.image.resize(x, tuple(shape), method="linear", antialias=antialias)


def pyramid_shapes(h: int, w: int, params: TVL1Params) -> list[tuple[int, int]]:
    """Level sizes, finest first; stops before a level under 16 pixels (as OpenCV)."""
    shapes = [(h, w)]
    for _ in range(1, params.nscales):
        ph, pw = shapes[-1]
        nh, nw = int(round(ph * params.scale_step)), int(round(pw * params.scale_step))
        if nh < 16 or nw < 16:
            break
        shapes.append((nh, nw))
    return shapes


def _one_scale(i0: jax.Array, i1: jax.Array, u: jax.Array, params: TVL1Params) -> jax.Array:
    """TV-L1 at one pyramid level: `warps` linearisations, each solved by primal-dual steps."""
    h, w = i0.shape
    l_t = params.lam * params.theta
    taut = params.tau / params.theta
    eps2 = params.epsilon**2 * h * w
    i1x, i1y = _centered_gradient(i1)
    source = jnp.stack([i1, i1x, i1y])
    big = jnp.asarray(jnp.finfo(jnp.float32).max, jnp.float32)

    def warp_body(_, carry):
        u, p = carry
        i1w, gx, gy = _warp(source, u)
        grad = gx * gx + gy * gy
        rho_c = i1w - gx * u[..., 0] - gy * u[..., 1] - i0
        g = jnp.stack([gx, gy], axis=-1)
        safe_grad = jnp.where(grad > 1e-10, grad, 1.0)

        def inner_body(state):
            u, p, _, n = state
            # Thresholding step: v = u + d minimises |rho(v)| lambda + |v - u|^2 / (2 theta).
            rho = rho_c + gx * u[..., 0] + gy * u[..., 1]
            step = jnp.where(
                rho < -l_t * grad,
                l_t,
                jnp.where(rho > l_t * grad, -l_t, jnp.where(grad > 1e-10, -rho / safe_grad, 0.0)),
            )
            v = u + step[..., None] * g
            # Primal update u = v + theta div p, then the dual (Chambolle) step on p.
            div = jnp.stack(
                [_divergence(p[..., 0], p[..., 1]), _divergence(p[..., 2], p[..., 3])], axis=-1
            )
            u_new = v + params.theta * div
            err = jnp.sum(jnp.square(u_new - u))
            u1x, u1y = _forward_gradient(u_new[..., 0])
            u2x, u2y = _forward_gradient(u_new[..., 1])
            du = jnp.stack([u1x, u1y, u2x, u2y], axis=-1)
            norm1 = 1 + taut * jnp.sqrt(u1x * u1x + u1y * u1y)
            norm2 = 1 + taut * jnp.sqrt(u2x * u2x + u2y * u2y)
            denom = jnp.stack([norm1, norm1, norm2, norm2], axis=-1)
            p = (p + taut * du) / denom
            return u_new, p, err, n + 1

        def inner_cond(state):
            return (state[2] > eps2) & (state[3] < params.inner_iterations)

        def outer_body(state):
            u, p, err, n = state
            if params.median_filtering > 1:
                u = _median_filter(u, params.median_filtering)
            u, p, err, _ = jax.lax.while_loop(inner_cond, inner_body, (u, p, err, 0))
            return u, p, err, n + 1

        def outer_cond(state):
            return (state[2] > eps2) & (state[3] < params.outer_iterations)

        u, p, _, _ = jax.lax.while_loop(outer_cond, outer_body, (u, p, big, 0))
        return u, p

    p0 = jnp.zeros((h, w, 4), jnp.float32)
    u, _ = jax.lax.fori_loop(0, params.warps, warp_body, (u, p0))
    return u


def tvl1_pair(i0: jax.Array, i1: jax.Array, params: TVL1Params = DEFAULT) -> jax.Array:
    """TV-L1 flow from gray image `i0 [H, W]` to `i1 [H, W]` (float, [0, 255]) -> `[H, W, 2]`."""
    i0 = jnp.asarray(i0, jnp.float32)
    i1 = jnp.asarray(i1, jnp.float32)
    shapes = pyramid_shapes(*i0.shape, params)
    levels = [(i0, i1)]
    for shape in shapes[1:]:
        a, b = levels[-1]
        levels.append((_resize(a, shape, True), _resize(b, shape, True)))
    u = jnp.zeros((*shapes[-1], 2), jnp.float32)
    for s in range(len(shapes) - 1, -1, -1):
        u = _one_scale(*levels[s], u, params)
        if s:
            (fh, fw), (ch, cw) = shapes[s - 1], shapes[s]
            u = _resize(u, (fh, fw, 2), False) * jnp.array([fw / cw, fh / ch], jnp.float32)
    return u


@functools.partial(jax.jit, static_argnames="params")
def tvl1_batch(i0: jax.Array, i1: jax.Array, params: TVL1Params = DEFAULT) -> jax.Array:
    """TV-L1 for a batch of gray pairs `[B, H, W]` -> `[B, H, W, 2]` (vmapped, jitted)."""
    return jax.vmap(functools.partial(tvl1_pair, params=params))(i0, i1)


PAIRS_AXIS = "pairs"  # the one axis of `pairs_mesh`


def pairs_mesh(devices: Sequence[jax.Device]) -> Mesh:
    """A 1-D mesh (axis `PAIRS_AXIS`) over `devices`, for `tvl1_sharded`."""
    devices = list(devices)
    if not devices:
        raise ValueError("pairs_mesh: no devices given")
    return jax.make_mesh(
        (len(devices),), (PAIRS_AXIS,), axis_types=(AxisType.Explicit,), devices=devices
    )


@functools.cache
def _sharded_solver(mesh: Mesh, params: TVL1Params):
    spec = P(PAIRS_AXIS)
    # Each device runs `tvl1_batch`'s vmapped loops on its own pairs, with no collective, so it
    # stops when its own pairs converge. check_vma=False: the solver's loops start from
    # constants (zeros), which the varying-axis check would want cast to varying.
    body = jax.shard_map(
        jax.vmap(functools.partial(tvl1_pair, params=params)),
        mesh=mesh,
        in_specs=(spec, spec),
        out_specs=spec,
        check_vma=False,
    )
    return jax.jit(body), NamedSharding(mesh, spec)


def tvl1_sharded(i0, i1, params: TVL1Params = DEFAULT, *, mesh: Mesh) -> jax.Array:
    """TV-L1 for gray pairs `[D * B, H, W]` (host arrays, [0, 255]) split over the `D` devices of
    `mesh` (`pairs_mesh`), `B` consecutive pairs per device -> `[D * B, H, W, 2]` sharded the
    same way (not yet computed: dispatch is asynchronous).

    One program per mesh, parameters and frame size. Each device solves its `B` pairs as
    `tvl1_batch` would (the same vmapped program), on its own: one device's pairs never wait
    for another's. A pair's flow depends on `B` (the program's batch size; XLA's arithmetic
    differs between batch sizes) but not on its companions nor on `D`.
    """
    n = mesh.devices.size
    if len(i0) != len(i1) or len(i0) % n:
        raise ValueError(
            f"tvl1_sharded: {len(i0)} and {len(i1)} frames; expected the same number of first "
            f"and second frames, a multiple of the {n} devices"
        )
    solve, sharding = _sharded_solver(mesh, params)
    return solve(jax.device_put(i0, sharding), jax.device_put(i1, sharding))


# ----------------------------------------------------------------------------- OpenCV


def _import_cv2():
    try:
        import cv2
    except ImportError as e:
        raise ImportError(
            "the OpenCV TV-L1 reference needs opencv-contrib-python-headless "
            "(pip install opencv-contrib-python-headless; never beside opencv-python-headless)"
        ) from e
    if not hasattr(cv2, "optflow"):
        raise ImportError(
            "cv2 has no `optflow` module: install opencv-contrib-python-headless instead of "
            "opencv-python-headless"
        )
    return cv2


def opencv_available() -> bool:
    """Whether the OpenCV TV-L1 reference can run here."""
    try:
        _import_cv2()
    except ImportError:
        return False
    return True


def _opencv_flow(gray: np.ndarray, params: TVL1Params, progress: Callable[[int], object]):
    tvl1 = params.to_opencv()
    frames = gray.astype(np.uint8)
    out = []
    for t in range(len(frames) - 1):
        out.append(tvl1.calc(frames[t], frames[t + 1], None))
        progress(1)
    return np.stack(out).astype(np.float32)


# ----------------------------------------------------------------------------- API


def compute_flow(
    frames: np.ndarray,
    backend: str = "jax",
    params: TVL1Params | str = DEFAULT,
    batch_size: int | None = None,
    progress: Callable[[int], object] | None = None,
) -> np.ndarray:
    """TV-L1 flow between consecutive frames.

    Args:
      frames: uint8 RGB `[T, H, W, 3]` with T >= 2.
      backend: "jax" (this module's solver, any JAX device) or "opencv" (the reference).
      params: a `TVL1Params` or a preset name ("default" = OpenCV's defaults, "fast").
      batch_size: frame pairs per vmapped call (JAX backend); the last batch is padded so only
        one program is compiled per frame size. None: 8 on GPU/TPU, 1 on CPU (where a vmapped
        batch measured several times slower per pair than single pairs).

    Returns:
      float32 `[T-1, H, W, 2]` displacements in pixels, (x, y), from frame t to frame t+1.
    """
    if isinstance(params, str):
        if params not in PRESETS:
            raise ValueError(f"unknown TV-L1 preset {params!r}; expected one of {sorted(PRESETS)}")
        params = PRESETS[params]
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 2:
        raise ValueError(
            f"expected uint8 RGB frames [T>=2, H, W, 3] (flow needs two frames), got shape "
            f"{frames.shape}"
        )
    if frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames, got dtype {frames.dtype}")
    gray = to_gray(frames)
    progress = progress or (lambda n: None)
    if backend == "opencv":
        return _opencv_flow(gray, params, progress)
    if backend != "jax":
        raise ValueError(f"unknown flow backend {backend!r}; expected one of {BACKENDS}")
    n = len(gray) - 1
    if batch_size is None:
        batch_size = 1 if jax.default_backend() == "cpu" else 8
    batch_size = max(1, min(batch_size, n))
    out = []
    for start in range(0, n, batch_size):
        idx = np.minimum(np.arange(start, start + batch_size), n - 1)
        flow = tvl1_batch(gray[idx], gray[idx + 1], params)
        out.append(np.asarray(flow)[: min(batch_size, n - start)])
        progress(len(out[-1]))
    return np.concatenate(out).astype(np.float32)
