"""FVD input: video sets, the clip plan (which frames of which video), and the reference resize.

A set is a list of :class:`VideoItem` (a file, decoded lazily, or a uint8 array `[T, H, W, 3]`).
:func:`plan_clips` decides, before any network runs, which fixed-length clips each video gives
(``num_frames`` frames every ``frame_stride``, from the first frame or from seeded random starts)
and reports unreadable and too-short videos by name. :func:`read_clip` then decodes only the frames
of one clip (streamed, never the whole video), and :func:`resize_bilinear` resizes it on the host
from uint8, in the TF1 ``resize_bilinear`` convention the reference FVD code uses
(``align_corners=False, half_pixel_centers=False``) or with half-pixel centres.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Sequence

import numpy as np

from i3d_jax import preprocess

SAMPLINGS = ("first", "random", "random-real")
RESIZES = ("tf1", "half-pixel")


@dataclasses.dataclass(frozen=True)
class VideoItem:
    """One video of a set: a file (`path`) or a uint8 array `[T, H, W, 3]` (`array`)."""

    name: str
    path: pathlib.Path | None = None
    array: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class Clip:
    """Frames `start, start + stride, ...` (`length` of them) of `items[item]`."""

    item: int
    start: int


@dataclasses.dataclass
class Plan:
    """The clips of one set and the videos left out (`skipped`: name -> reason)."""

    clips: list[Clip]
    skipped: dict[str, str]
    too_short: dict[str, int]  # name -> frames


def items_from_arrays(videos: np.ndarray | Sequence[np.ndarray], prefix: str) -> list[VideoItem]:
    """Items of an array `[N, T, H, W, 3]` or a list of `[T, H, W, 3]` (uint8)."""
    items = []
    for i, v in enumerate(videos):
        v = np.asarray(v)
        if v.ndim != 4 or v.shape[-1] != 3 or v.dtype != np.uint8:
            raise ValueError(f"{prefix}[{i}]: expected uint8 [T, H, W, 3], got {v.dtype} {v.shape}")
        items.append(VideoItem(f"{prefix}[{i}]", array=v))
    return items


def load_video_set(path: str | os.PathLike) -> list[VideoItem]:
    """A directory of videos (sorted by name; read lazily) or an `.npz` with one uint8 array
    `[N, T, H, W, 3]` (key `videos` or its only array)."""
    path = pathlib.Path(path)
    if path.is_dir():
        return [VideoItem(str(p), path=p) for p in preprocess.list_videos(path)]
    if path.suffix == ".npz" and path.is_file():
        with np.load(path) as z:
            keys = list(z.keys())
            if "videos" not in keys and len(keys) != 1:
                raise ValueError(f"{path}: expected key 'videos' or a single array, got {keys}")
            videos = z["videos" if "videos" in keys else keys[0]]
        if videos.ndim != 5 or videos.shape[-1] != 3 or videos.dtype != np.uint8:
            raise ValueError(
                f"{path}: expected uint8 [N, T, H, W, 3], got {videos.dtype} {videos.shape}"
            )
        return items_from_arrays(videos, str(path))
    if not path.exists():
        raise FileNotFoundError(f"not found: {path}")
    raise ValueError(f"{path}: expected a directory of videos or an .npz of uint8 [N, T, H, W, 3]")


def num_frames(item: VideoItem) -> int:
    """Frames of an item: the array's length, or the count its container declares (or, when it
    declares none, the frames counted by decoding, one at a time)."""
    if item.array is not None:
        return len(item.array)
    declared = preprocess.video_info(item.path)["num_frames"]
    if declared > 0:
        return int(declared)
    return sum(
        len(c) for c in preprocess.iter_video_chunks(item.path, 64, fps=None, short_side=None)
    )


def plan_clips(
    items: Sequence[VideoItem],
    *,
    length: int,
    stride: int,
    clips_per_video: int,
    random_start: bool,
    seed: int,
    strict: bool,
) -> Plan:
    """The clips of a set (see the module docstring); unreadable videos are skipped (or raise
    with `strict`), too-short ones are listed in `too_short` for the caller to refuse."""
    span = (length - 1) * stride + 1
    rng = np.random.default_rng(seed)
    plan = Plan([], {}, {})
    for i, item in enumerate(items):
        try:
            n = num_frames(item)
        except (preprocess.VideoDecodeError, FileNotFoundError) as e:
            if strict:
                raise
            plan.skipped[item.name] = str(e)
            continue
        need = span if random_start else span + (clips_per_video - 1) * length * stride
        if n < need:
            plan.too_short[item.name] = n
            continue
        for k in range(clips_per_video):
            start = int(rng.integers(0, n - span + 1)) if random_start else k * length * stride
            plan.clips.append(Clip(i, start))
    return plan


def read_clip(item: VideoItem, clip: Clip, length: int, stride: int) -> np.ndarray:
    """The uint8 frames `[length, H, W, 3]` of `clip`; a file is decoded only up to the clip's end,
    one chunk at a time, keeping only the clip's frames."""
    idx = clip.start + stride * np.arange(length)
    if item.array is not None:
        return item.array[idx]
    stop = int(idx[-1]) + 1
    out, seen = [], 0
    wanted = set(idx.tolist())
    for chunk in preprocess.iter_video_chunks(
        item.path, 16, fps=None, short_side=None, max_frames=stop
    ):
        out.extend(chunk[j] for j in range(len(chunk)) if seen + j in wanted)
        seen += len(chunk)
    if len(out) < length:
        raise preprocess.VideoDecodeError(
            item.path,
            f"decoded {seen} frames, but the clip needs frames {clip.start}..{stop - 1} "
            f"(the container declares more)",
        )
    return np.stack(out)


def _source_coords(in_size: int, out_size: int, method: str):
    """Per output index: lower and upper source index and the float32 weight of the upper one."""
    scale = np.float32(in_size) / np.float32(out_size)
    i = np.arange(out_size, dtype=np.float32)
    if method == "tf1":  # TF1 resize_bilinear, align_corners=False, half_pixel_centers=False
        src = i * scale
    elif method == "half-pixel":  # half_pixel_centers=True (tf.image.resize, PIL, OpenCV)
        src = np.maximum((i + np.float32(0.5)) * scale - np.float32(0.5), np.float32(0))
    else:
        raise ValueError(f"unknown resize {method!r}; expected one of {RESIZES}")
    lo = np.floor(src)
    frac = (src - lo).astype(np.float32)
    lo = np.minimum(lo.astype(np.int64), in_size - 1)
    hi = np.minimum(lo + 1, in_size - 1)
    return lo, hi, frac


def resize_bilinear(frames: np.ndarray, size: tuple[int, int], method: str = "tf1") -> np.ndarray:
    """Bilinear resize of `[..., H, W, C]` (uint8 or float) to float32 `[..., h, w, C]`, no
    antialiasing, computed as TF1's kernel does (x lerp of the top and bottom rows, then y lerp),
    in float32. `method`: ``"tf1"`` (source = dst * in/out) or ``"half-pixel"``."""
    h, w = size
    y0, y1, fy = _source_coords(frames.shape[-3], h, method)
    x0, x1, fx = _source_coords(frames.shape[-2], w, method)
    fx = fx[:, None]

    def rows(y):
        r = np.take(frames, y, axis=-3).astype(np.float32)
        left, right = np.take(r, x0, axis=-2), np.take(r, x1, axis=-2)
        return left + (right - left) * fx

    top, bottom = rows(y0), rows(y1)
    return top + (bottom - top) * fy[:, None, None]
