"""One `video_folder` video, decoded: the step the sequential and the Beam builds share."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from i3d_jax import preprocess
from i3d_jax.data import actions, schema
from i3d_jax.data.video_scan import VideoEntry


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
    """How `decode_entry` decodes a video (the builder's decode settings)."""

    fps: float | None = 25.0
    short_side: int | None = 256
    max_frames: int | None = None
    allow_truncated: bool = False
    min_frames: int = 1  # 2 for flow


class TooShort(ValueError):
    """Fewer frames than the config needs (flow: 2)."""


#: What makes `decode_entry` skip a video (recorded in the metadata, or raised with `strict`).
BAD_VIDEO_ERRORS = (preprocess.VideoDecodeError, FileNotFoundError, PermissionError, TooShort)


def decode_entry(entry: VideoEntry, options: DecodeOptions) -> tuple[np.ndarray, dict, int]:
    """One video's uint8 frames `[T, H, W, 3]`, its example without ``video``/``num_frames``, and
    its rotation (degrees; 0 if stored upright). Raises one of `BAD_VIDEO_ERRORS` for a bad file."""
    if entry.path is None:
        raise FileNotFoundError(entry.missing_reason)
    frames = preprocess.load_video(
        entry.path,
        fps=options.fps,
        short_side=options.short_side,
        start=entry.start,
        end=entry.end,
        max_frames=options.max_frames,
        allow_truncated=options.allow_truncated,
    )
    info = preprocess.video_info(entry.path)
    fps = options.fps if options.fps is not None else info["fps"]
    if len(frames) < options.min_frames:
        raise TooShort(f"{entry.path}: {len(frames)} frame(s); flow needs at least 2")
    example = {
        schema.LABEL: entry.label,
        schema.VIDEO_ID: entry.video_id,
        schema.PATH: entry.path,
        schema.FPS: np.float32(fps),
        schema.HEIGHT: np.int32(info["height"] or frames.shape[1]),
        schema.WIDTH: np.int32(info["width"] or frames.shape[2]),
    }
    if entry.actions is not None:  # a multi-label video: its action intervals
        example[schema.ACTIONS] = actions.as_feature(entry.actions)
    return frames, example, int(info["rotation"] or 0)


def example_key(entry: VideoEntry) -> str:
    """The TFDS key of a video's example (unique: split, id and file)."""
    return f"{entry.split}/{entry.video_id}/{entry.path}"


def skipped_record(entry: VideoEntry, reason: str) -> dict:
    return {"split": entry.split, "path": entry.path or entry.folder or "", "reason": reason}


def rotated_record(entry: VideoEntry, rotation: int) -> dict:
    return {"split": entry.split, "path": entry.path, "video_id": entry.video_id,
            "rotation": rotation}  # fmt: skip


def flow_cache_key(entry: VideoEntry, decode_settings: str) -> str:
    """A video's flow-cache name: its file (size, mtime), time range and the decode settings."""
    st = os.stat(entry.path)
    return f"{entry.path}|{st.st_size}|{st.st_mtime_ns}|{entry.start}|{entry.end}|{decode_settings}"
