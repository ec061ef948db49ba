"""The long-range task of `synthetic_motion`: two motion events farther apart than I3D can see.

Every video shows one disc of random bright colour on a random dark background (with pixel
noise), standing still except during two *events* of ``event_frames`` frames (16 by default) in
which it translates at about ``speed`` px/frame in one of the directions of :data:`KINDS`
(``right``, ``left``, ``down``). Its start is uniform on the torus (it wraps at the edges), so a
single frame tells nothing.

* ``long_range`` (:data:`PAIR_NAMES`, 6 classes): 224 frames of 32x32; the two events have
  different kinds and the class is their *ordered* pair (``right_then_left``,
  ``left_then_right``, ...). Between the end of the first event and the start of the second the
  disc stands still for at least ``gap`` frames (112 by default; up to 152 with the random
  placement), more than the temporal receptive field of I3D's last layer: 99 frames at Mixed_5c
  and 107 at Logits for the paper's schedule, whatever the width
  (``python -m i3d_jax.schedules --frames 224 --size 32 --global_pool``). So no unit of the
  network sees a frame of both events, and any order-free pooling over time (the paper's mean of
  clip logits) can name the two kinds but not their order: at best 50% on a class. The first
  two classes are one pair in both orders, so ``num_classes=2`` is the order alone.
* ``long_range_events`` (:data:`EVENT_NAMES`, 4 classes): 24-frame clips of one event (or none)
  at a random offset, labelled by its kind (``still``: no event); what the network is trained on
  before its features are extracted over the long videos (``benchmarks/long_range.py``).

:func:`render_long` and :func:`render_events` return uint8 frames with the events' frame ranges,
so tests can check the label from the pixels (:func:`motion_per_frame`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

KINDS = ("right", "left", "down")
_DIRECTIONS = {"right": (1.0, 0.0), "left": (-1.0, 0.0), "down": (0.0, 1.0)}
# Ordered pairs of different kinds; each pair right after its reverse.
PAIRS = ((0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1))
PAIR_NAMES = tuple(f"{KINDS[a]}_then_{KINDS[b]}" for a, b in PAIRS)
EVENT_NAMES = (*KINDS, "still")
TASKS = ("long_range", "long_range_events")
NAMES = {"long_range": PAIR_NAMES, "long_range_events": EVENT_NAMES}
_SUPERSAMPLE = 2


@dataclasses.dataclass(frozen=True)
class Rendered:
    """A rendered video and where its events are: `events[k] = (kind, first frame, end frame)`."""

    frames: np.ndarray  # uint8 [T, size, size, 3]
    events: tuple[tuple[int, int, int], ...]


def _disc_frames(rng, centres: np.ndarray, radius: float, size: int, noise: float) -> np.ndarray:
    """uint8 `[T, size, size, 3]`: a disc at `centres [T, 2]` (x, y on the torus)."""
    background = rng.uniform(0, 80, 3)
    colour = rng.uniform(150, 255, 3)
    grid = (np.arange(size * _SUPERSAMPLE) + 0.5) / _SUPERSAMPLE
    dx = np.mod(grid[None, None, :] - centres[:, 0, None, None] + size / 2, size) - size / 2
    dy = np.mod(grid[None, :, None] - centres[:, 1, None, None] + size / 2, size) - size / 2
    mask = dx**2 + dy**2 <= radius**2
    cover = mask.reshape(len(centres), size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(2, 4))
    frames = background + cover[..., None] * (colour - background)
    if noise > 0:
        frames = frames + rng.normal(0.0, noise, frames.shape)
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def _render(rng, num_frames, size, events, speed, radius, noise) -> Rendered:
    """The disc still except during `events` ((kind, start, end) frame ranges)."""
    scale = size / 32.0
    vel = speed * scale * rng.uniform(0.85, 1.15)
    step = np.zeros((num_frames, 2))  # displacement from frame t - 1 to frame t
    for kind, start, end in events:
        step[start + 1 : end] = vel * np.asarray(_DIRECTIONS[KINDS[kind]])
    centres = rng.uniform(0.0, size, 2) + np.cumsum(step, axis=0)
    r = radius * scale * rng.uniform(0.9, 1.1)
    return Rendered(_disc_frames(rng, centres, r, size, noise), tuple(events))


def check_long(num_frames: int, event_frames: int, gap: int) -> None:
    """ValueError unless two events and the gap fit in `num_frames`."""
    if event_frames < 2 or gap < 1 or 2 * event_frames + gap > num_frames:
        raise ValueError(
            "synthetic_motion long_range: need event_frames >= 2, gap >= 1 and "
            f"2 * event_frames + gap <= num_frames; got event_frames={event_frames}, gap={gap}, "
            f"num_frames={num_frames}"
        )


def render_long(
    rng: np.random.Generator,
    label: int,
    *,
    num_frames: int = 224,
    size: int = 32,
    event_frames: int = 16,
    gap: int = 112,
    speed: float = 1.5,
    radius: float = 2.5,
    noise: float = 6.0,
) -> Rendered:
    """`long_range` class `label`: events of kinds `PAIRS[label]` with >= `gap` still frames between."""
    if not 0 <= label < len(PAIRS):
        raise ValueError(f"synthetic_motion long_range: label must be in 0..{len(PAIRS) - 1}, got {label}")  # fmt: skip
    check_long(num_frames, event_frames, gap)
    slack = num_frames - 2 * event_frames - gap
    extra = int(rng.integers(0, slack // 2 + 1))  # quiet frames beyond `gap`
    first = int(rng.integers(0, slack - extra + 1))
    second = first + event_frames + gap + extra
    a, b = PAIRS[label]
    events = [(a, first, first + event_frames), (b, second, second + event_frames)]
    return _render(rng, num_frames, size, events, speed, radius, noise)


def render_events(
    rng: np.random.Generator,
    label: int,
    *,
    num_frames: int = 24,
    size: int = 32,
    event_frames: int = 16,
    speed: float = 1.5,
    radius: float = 2.5,
    noise: float = 6.0,
) -> Rendered:
    """`long_range_events` class `label`: one event of kind `KINDS[label]` (none for `still`)."""
    if not 0 <= label < len(EVENT_NAMES):
        raise ValueError(f"synthetic_motion long_range_events: label must be in 0..{len(EVENT_NAMES) - 1}, got {label}")  # fmt: skip
    if not 2 <= event_frames <= num_frames:
        raise ValueError(
            f"synthetic_motion long_range_events: need 2 <= event_frames <= num_frames, got "
            f"event_frames={event_frames}, num_frames={num_frames}"
        )
    start = int(rng.integers(0, num_frames - event_frames + 1))
    events = [] if label == len(KINDS) else [(label, start, start + event_frames)]
    return _render(rng, num_frames, size, events, speed, radius, noise)


def render_from_config(rng: np.random.Generator, label: int, config) -> np.ndarray:
    """Frames of a `SyntheticMotionConfig` whose task is one of :data:`TASKS`."""
    common = dict(num_frames=config.num_frames, size=config.size, event_frames=config.event_frames,
                  speed=config.speed, radius=config.radius, noise=config.noise)  # fmt: skip
    if config.task == "long_range":
        return render_long(rng, label, gap=config.gap, **common).frames
    return render_events(rng, label, **common).frames


def motion_per_frame(frames: np.ndarray) -> np.ndarray:
    """float `[T, 2]`: the disc's (dx, dy) from frame t - 1 to t (row 0 is zero), by the change in
    its brightness-weighted centre on the torus (the disc is brighter than the background)."""
    grey = frames.astype(np.float64).mean(-1)
    t, size = grey.shape[:2]
    weight = np.clip(grey - np.median(grey, axis=(1, 2), keepdims=True) - 30.0, 0, None)
    angles = 2 * np.pi * (np.arange(size) + 0.5) / size
    out = np.zeros((t, 2))
    centre = []
    for axis in (2, 1):  # x: columns, y: rows
        profile = weight.sum(axis=3 - axis)  # [T, size]
        phase = np.angle((profile * np.exp(1j * angles)).sum(-1))
        centre.append(phase * size / (2 * np.pi))
    centre = np.stack(centre, -1)
    delta = np.diff(centre, axis=0)
    out[1:] = np.mod(delta + size / 2, size) - size / 2
    return out


def events_from_frames(frames: np.ndarray, threshold: float = 0.5) -> list[tuple[int, int, int]]:
    """The events seen in the pixels: (kind, first moving frame, end) of each run of motion."""
    step = motion_per_frame(frames)
    moving = np.linalg.norm(step, axis=-1) > threshold
    out, t = [], 0
    while t < len(moving):
        if not moving[t]:
            t += 1
            continue
        end = t
        while end < len(moving) and moving[end]:
            end += 1
        mean = step[t:end].mean(0)
        kind = max(range(len(KINDS)), key=lambda k: float(np.dot(mean, _DIRECTIONS[KINDS[k]])))
        out.append((kind, t - 1, end))  # frame t - 1 is the event's first (still) position
        t = end
    return out
