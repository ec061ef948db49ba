"""Clip geometry, one home for it: windows in time, crop boxes in space, flips (pure numpy).

Time is in frames unless a name says `_seconds`. A window of `length` frames from `start` takes
frames `start, start + 1, ...`, looped modulo the video's length when it runs past the end (the
paper's rule for short training clips). Space is in pixels of `[..., H, W, C]` frames: a
`CropBox(top, left, flip)` cuts `size x size` at (top, left) and mirrors it horizontally when
`flip`; a flipped flow clip also negates its x channel (channel 0), since motion to the right
becomes motion to the left.

Used by the training/eval pipeline (`i3d_jax.data.pipeline`), feature extraction and prediction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

CROP_SETS = {"center": 1, "three": 3, "ten": 10}


class CropBox(NamedTuple):
    """Top-left corner of a square crop in pixels, and whether the crop is mirrored."""

    top: int
    left: int
    flip: bool = False


# ----------------------------------------------------------------------------- time


def window_starts(num_frames: int, window: int, stride: int) -> list[int]:
    """Sliding windows: starts `0, stride, ...` while `start + window <= num_frames`; a video of
    at most `window` frames gets the one window at 0 (looped by `window_indices`)."""
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1, got {window} and {stride}")
    if num_frames <= window:
        return [0]
    return list(range(0, num_frames - window + 1, stride))


def uniform_starts(num_frames: int, length: int, num_clips: int) -> list[int]:
    """Starts of `num_clips` evenly spaced clips of `length` (the middle one when 1; all 0 for a
    video of at most `length` frames)."""
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    last = max(num_frames - length, 0)
    if num_clips == 1:
        return [last // 2]
    return [int(round(i * last / (num_clips - 1))) for i in range(num_clips)]


def window_indices(
    num_frames: int, start: int, length: int, loop: bool = True, video_id: str = ""
) -> np.ndarray:
    """Frame indices `[length]` of the window at `start`, looped modulo `num_frames`; with
    `loop=False` a video shorter than `length` raises."""
    if num_frames <= 0:
        raise ValueError(f"video {video_id!r} has no frames")
    if num_frames < length and not loop:
        raise ValueError(
            f"video {video_id!r} has {num_frames} frames, shorter than clip_length={length} "
            "and looping is off (set loop_short=True or a shorter clip_length)"
        )
    return (start + np.arange(length)) % num_frames


def window_seconds(num_frames: int, starts: Sequence[int], window: int, fps: float) -> np.ndarray:
    """float64 `[len(starts), 2]`: each window's [start, end) in seconds (`frame / fps`); a
    window is clipped to the video's end (a looped window ends where the video ends)."""
    s = np.asarray(starts, np.float64)
    return np.stack([s / fps, np.minimum(s + window, num_frames) / fps], axis=-1).reshape(-1, 2)


class Windows:
    """`window_starts` over a stream: cuts aligned chunks (one array per stream, same length)
    into windows of `window` frames every `stride` frames, keeping only the frames a future
    window needs; a stream shorter than `window` gives one looped window at `finish`."""

    def __init__(self, window: int, stride: int):
        self.window, self.stride = window, stride
        self.buffers: dict[str, np.ndarray] = {}
        self.offset = 0  # frame index of buffers[...][0]
        self.total = 0  # frames seen
        self.next_start = 0
        self.emitted = 0

    def push(self, chunk: dict[str, np.ndarray]) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Adds a chunk; yields `(start, {stream: [window, ...]})` for every window now complete."""
        for s, x in chunk.items():
            b = self.buffers.get(s)
            self.buffers[s] = x if b is None or not len(b) else np.concatenate([b, x])
        self.total += len(next(iter(chunk.values())))
        while self.next_start + self.window <= self.total:
            a = self.next_start - self.offset
            yield self.next_start, {s: b[a : a + self.window] for s, b in self.buffers.items()}
            self.emitted += 1
            self.next_start += self.stride
        drop = min(self.next_start - self.offset, self.total - self.offset)
        if drop > 0:
            self.buffers = {s: b[drop:] for s, b in self.buffers.items()}
            self.offset += drop

    def finish(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """The one looped window of a video shorter than `window` (nothing otherwise)."""
        if self.emitted == 0 and self.total > 0:
            idx = window_indices(self.total, 0, self.window)
            yield 0, {s: b[idx] for s, b in self.buffers.items()}
            self.emitted = 1


# ----------------------------------------------------------------------------- space


def crop_shape(size: int | tuple[int, int]) -> tuple[int, int]:
    """`(height, width)` of a crop given as one side or a pair."""
    if isinstance(size, int | np.integer):
        return int(size), int(size)
    ch, cw = size
    return int(ch), int(cw)


def check_crop(h: int, w: int, size: int | tuple[int, int], what: str = "frames") -> None:
    """Raises ValueError when an `h x w` frame cannot hold the crop."""
    ch, cw = crop_shape(size)
    if min(ch, cw) < 1 or ch > h or cw > w:
        raise ValueError(f"{what} of {h}x{w} are smaller than the {ch}x{cw} crop")


def center_box(h: int, w: int, size: int | tuple[int, int]) -> CropBox:
    """The centred crop (an odd extra pixel goes to the bottom/right)."""
    check_crop(h, w, size)
    ch, cw = crop_shape(size)
    return CropBox((h - ch) // 2, (w - cw) // 2)


def random_box(h: int, w: int, size: int | tuple[int, int], rng: np.random.Generator) -> CropBox:
    """A uniformly random crop position (no flip): draws top, then left."""
    check_crop(h, w, size)
    ch, cw = crop_shape(size)
    return CropBox(int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)))


def crop_boxes(h: int, w: int, size: int, mode: str | int) -> list[CropBox]:
    """The crops of a named set: "center" (1); "three" (start, centre and end of the longer
    side, centred on the shorter); "ten" (corners TL, TR, BL, BR and centre, then the same five
    flipped). An int 1/3/10 names the set by its size."""
    if isinstance(mode, int | np.integer):
        by_size = {n: name for name, n in CROP_SETS.items()}
        if int(mode) not in by_size:
            raise ValueError(f"number of crops must be one of {sorted(by_size)}, got {mode}")
        mode = by_size[int(mode)]
    if mode not in CROP_SETS:
        raise ValueError(f"unknown crops {mode!r}; expected one of {sorted(CROP_SETS)}")
    c = center_box(h, w, size)
    if mode == "center":
        return [c]
    if mode == "three":
        if w >= h:
            return [CropBox(c.top, 0), c, CropBox(c.top, w - size)]
        return [CropBox(0, c.left), c, CropBox(h - size, c.left)]
    five = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size), (c.top, c.left)]
    return [CropBox(t, left) for t, left in five] + [CropBox(t, left, True) for t, left in five]


def flip(clip: np.ndarray, is_flow: bool = False) -> np.ndarray:
    """Horizontal mirror of `[..., H, W, C]`; for flow (float) the x channel changes sign."""
    out = clip[..., ::-1, :]
    if is_flow:
        if out.dtype == np.uint8:
            raise ValueError("flip: flow must be float (dequantised) before its x sign flips")
        out = out * np.array([-1.0, 1.0], out.dtype)
    return np.ascontiguousarray(out)


def crop(
    clip: np.ndarray, box: CropBox, size: int | tuple[int, int], is_flow: bool = False
) -> np.ndarray:
    """The crop `[..., ch, cw, C]` of `clip [..., H, W, C]` at `box` (mirrored if flipped); a
    view of `clip` unless flipped."""
    if clip.ndim < 3:
        raise ValueError(f"crop: expected frames [..., H, W, C], got shape {clip.shape}")
    h, w = clip.shape[-3], clip.shape[-2]
    ch, cw = crop_shape(size)
    if box.top < 0 or box.left < 0 or box.top + ch > h or box.left + cw > w:
        raise ValueError(
            f"crop: a {ch}x{cw} crop at (top {box.top}, left {box.left}) does not fit frames of "
            f"{h}x{w} (shape {tuple(clip.shape)})"
        )
    out = clip[..., box.top : box.top + ch, box.left : box.left + cw, :]
    return flip(out, is_flow) if box.flip else out
