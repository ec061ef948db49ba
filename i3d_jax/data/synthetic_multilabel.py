"""The multi-label task of `synthetic_motion` (builder config ``multilabel``): untrimmed videos
where several actions start, stop and overlap, so that no single label per video (no softmax) can
be right.

Each of the ``num_classes`` classes (the first of ``right, left, down, up, down_right, up_left``)
is, independently with probability 1/2 (at least one per video), one action of the video: a disc
of random bright colour and size appears at a random place at a random start frame, travels in
the class's direction at about ``speed`` px/frame (on the torus) for a random length of
``event_frames`` to ``num_frames / 2`` frames, and disappears. Several discs are often visible at
once (overlapping actions); frames between actions show only the dark background. A single frame
shows where discs are, never which way they go, so the classes of a frame come only from motion.

The intervals are stored as the dataset's ``actions`` (seconds at 25 fps): a disc is drawn on
exactly the frames the targets mark (`i3d_jax.data.actions.targets_at`, the same rule), and the
video's ``label`` is its earliest action (what a single-label baseline is trained on).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from i3d_jax.data import actions, schema

FPS = 25.0
_DIRECTIONS = (
    (1.0, 0.0),
    (-1.0, 0.0),
    (0.0, 1.0),
    (0.0, -1.0),
    (0.7071, 0.7071),
    (-0.7071, -0.7071),
)
MOST_CLASSES = len(_DIRECTIONS)
_SUPERSAMPLE = 2


def draw_actions(rng: np.random.Generator, config: Any) -> list[tuple[int, float, float]]:
    """`(class, start s, end s)` of one video: each class present with probability 1/2 (at least
    one), over `event_frames` to `num_frames // 2` frames (the end is the last frame's time)."""
    t = config.num_frames
    present = rng.random(config.num_classes) < 0.5
    if not present.any():
        present[rng.integers(config.num_classes)] = True
    out = []
    longest = max(config.event_frames, t // 2)
    for k in np.flatnonzero(present):
        length = int(rng.integers(config.event_frames, longest + 1))
        start = int(rng.integers(0, t - length + 1))
        out.append((int(k), start / FPS, (start + length - 1) / FPS))
    return out


def render(rng: np.random.Generator, config: Any) -> tuple[np.ndarray, list]:
    """One video, uint8 `[num_frames, size, size, 3]`, and its actions `(class, start, end)`."""
    acts = draw_actions(rng, config)
    t, size = config.num_frames, config.size
    scale = size / 32.0
    example = {schema.ACTIONS: actions.as_feature(acts), schema.FPS: FPS}
    shown = actions.targets_at(example, np.arange(t) / FPS, config.num_classes)  # [T, K]
    frames = np.broadcast_to(rng.uniform(0, 60, 3), (t, size, size, 3)).astype(np.float64)
    n = size * _SUPERSAMPLE
    grid = (np.arange(n) + 0.5) / _SUPERSAMPLE
    steps = np.arange(t, dtype=np.float64)
    for k, start, _ in acts:
        centre0 = rng.uniform(0.0, size, 2)
        vel = config.speed * scale * rng.uniform(0.85, 1.15) * np.asarray(_DIRECTIONS[k])
        radius = config.radius * scale * rng.uniform(0.85, 1.2)
        colour = rng.uniform(150, 255, 3)
        centres = centre0 + (steps - start * FPS)[:, None] * vel  # [T, 2]
        dx = np.mod(grid[None, None, :] - centres[:, 0, None, None] + size / 2, size) - size / 2
        dy = np.mod(grid[None, :, None] - centres[:, 1, None, None] + size / 2, size) - size / 2
        mask = (dx**2 + dy**2 <= radius**2) & (shown[:, k] > 0)[:, None, None]
        cover = mask.reshape(t, size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(2, 4))
        frames = frames + cover[..., None] * (colour - frames)
    if config.noise > 0:
        frames = frames + rng.normal(0.0, config.noise, frames.shape)
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8), acts


def example(rng: np.random.Generator, config: Any, video_id: str) -> dict:
    """One example in the schema's keys (uint8 frames, not encoded) with ``actions``."""
    frames, acts = render(rng, config)
    return {
        schema.VIDEO: frames,
        schema.LABEL: actions.first_action(acts),
        schema.VIDEO_ID: video_id,
        schema.FPS: np.float32(FPS),
        schema.ACTIONS: actions.as_feature(acts),
    }
