"""The `camouflage` task of `synthetic_motion`: two cues, each seen by one stream of the paper.

Each video is a static random texture (smooth grey noise on the torus) tinted with one of two
colours of equal luma, and a disc cut from a *second* texture of the same kind that translates
across it. The disc's texture has the background's statistics and the disc has no outline, so a
single frame does not show it (camouflage); only its motion between frames does. The class is the
pair (tint, direction)::

    label = 2 * direction + tint      direction: right, left, down, up;  tint: warm, cool

so ``num_classes=4`` keeps both tints and right/left. What each stream can see:

* **appearance** (one RGB frame): the tint, exactly; the direction not at all.
* **TV-L1 flow**: computed on grey frames (``i3d_jax.flow.to_gray``, the luma), where the two
  tints give the same image, so the flow holds the direction and nothing of the tint.

An RGB network can in principle find the motion too (it has every frame), but a small one trained
briefly mostly learns the tint; a flow network cannot learn the tint at all. So RGB alone is near
``1 / directions``, flow alone near ``1 / 2`` and their late fusion can reach both
(see ``tests/test_camouflage.py`` and the README's "Two streams" section).

Config fields used (of :class:`i3d_jax.data.synthetic_motion.SyntheticMotionConfig`): ``size``,
``num_frames``, ``speed`` (pixels per frame at ``size=32``, rounded to whole pixels so the texture
moves without resampling), ``radius`` (the disc at ``size=32``), ``noise`` (per-frame pixel noise).
Flow datasets store :func:`quantized_flow` of each video (``modality="flow"`` builder configs).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from i3d_jax import flow as flow_lib
from i3d_jax import preprocess
from i3d_jax.data import flow_build, schema

TINT_NAMES = ("warm", "cool")
DIRECTION_NAMES = ("right", "left", "down", "up")
CLASS_NAMES = tuple(f"{d}_{t}" for d in DIRECTION_NAMES for t in TINT_NAMES)
FLOW_SETTINGS_KEY = flow_build.METADATA_KEY  # dataset metadata: the flow settings
_STEPS = ((1, 0), (-1, 0), (0, 1), (0, -1))  # (dx, dy) per direction; image y points down


def _equal_luma_tint(red: float, blue: float) -> np.ndarray:
    """An RGB gain with luma exactly 1 (ITU-R 601 weights, as `flow.to_gray`)."""
    wr, wg, wb = (float(w) for w in flow_lib.LUMA)
    return np.array([red, (1.0 - wr * red - wb * blue) / wg, blue])


TINTS = np.stack([_equal_luma_tint(1.45, 0.45), _equal_luma_tint(0.55, 1.6)])  # warm, cool
# Grey levels of the texture: the brightest tinted channel (1.6 x 150) stays below 255.
_GREY_LOW, _GREY_HIGH = 25.0, 150.0
_TEXTURE_SIGMA = 1.2  # pixels at size 32: fine enough to track, smooth enough for the pyramid


def split_label(label: int) -> tuple[int, int]:
    """(direction index, tint index) of a class label."""
    return label // 2, label % 2


def smooth_texture(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Float `[size, size]` in [0, 1]: white noise low-passed on the torus, rescaled to [0, 1]."""
    noise = rng.normal(size=(size, size))
    f = np.fft.fftfreq(size)
    gain = np.exp(-2 * (np.pi * sigma) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    tex = np.real(np.fft.ifft2(np.fft.fft2(noise) * gain))
    lo, hi = np.percentile(tex, [1, 99])
    return np.clip((tex - lo) / (hi - lo), 0.0, 1.0)


def render_camouflage(
    rng: np.random.Generator,
    label: int,
    *,
    num_frames: int = 16,
    size: int = 32,
    speed: float = 2.0,
    radius: float = 7.0,
    noise: float = 4.0,
) -> np.ndarray:
    """Render one video of class `label` (see the module docstring) as uint8 `[T, size, size, 3]`."""
    if not 0 <= label < len(CLASS_NAMES):
        raise ValueError(f"camouflage: label must be in 0..{len(CLASS_NAMES) - 1}, got {label}")
    direction, tint = split_label(label)
    scale = size / 32.0
    step = max(1, int(round(speed * scale)))
    sigma = _TEXTURE_SIGMA * scale
    background = smooth_texture(rng, size, sigma)
    disc_texture = smooth_texture(rng, size, sigma)
    r = radius * scale * rng.uniform(0.9, 1.1)
    x0, y0 = rng.integers(0, size, 2)
    dx, dy = (step * s for s in _STEPS[direction])
    gain = float(rng.uniform(0.9, 1.1))  # brightness varies a little between videos
    yy, xx = np.mgrid[:size, :size]
    frames = np.empty((num_frames, size, size), np.float64)
    for t in range(num_frames):
        cx, cy = x0 + dx * t, y0 + dy * t
        ox = np.mod(xx - cx + size / 2, size) - size / 2  # offsets on the torus
        oy = np.mod(yy - cy + size / 2, size) - size / 2
        inside = ox**2 + oy**2 <= r**2
        moved = np.roll(disc_texture, (dy * t, dx * t), axis=(0, 1))  # the texture moves with it
        frames[t] = np.where(inside, moved, background)
    grey = _GREY_LOW + frames * (_GREY_HIGH - _GREY_LOW) * gain
    rgb = grey[..., None] * TINTS[tint]
    if noise > 0:
        rgb = rgb + rng.normal(0.0, noise, rgb.shape)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def quantized_flow(
    videos: Iterable[np.ndarray],
    *,
    preset: str = "default",
    bound: float = preprocess.FLOW_BOUND,
) -> Iterator[np.ndarray]:
    """TV-L1 flow of each uint8 `[T, H, W, 3]` video, quantised: uint8 `[T-1, H, W, 2]`, in order.

    The one place the camouflage flow builds compute flow: `flow_build.flow_videos` with the JAX
    solver and `preset` parameters (the builder shows its own bar of videos)."""
    settings = flow_build.FlowSettings(solver="jax", preset=preset, bound=bound)
    return flow_build.flow_videos(videos, settings, progress=False)


def flow_settings(preset: str = "default", bound: float = preprocess.FLOW_BOUND) -> dict:
    """What a flow build records in its metadata under `FLOW_SETTINGS_KEY` (runs refuse other
    settings, `flow_build.check_expected`): solver, preset, TV-L1 parameters, bound, quantisation."""
    return flow_build.FlowSettings(solver="jax", preset=preset, bound=bound).as_metadata()


def flow_metadata(modality: str, preset: str) -> dict:
    """A flow dataset's metadata: `flow_scale` (the quantisation bound) and the flow settings;
    {} for an RGB one."""
    if modality != "flow":
        return {}
    settings = flow_settings(preset)
    return {schema.FLOW_SCALE_KEY: settings["bound"], FLOW_SETTINGS_KEY: settings}
