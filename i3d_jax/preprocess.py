"""The one input contract of i3d_jax: how a video becomes model input.

Decoding (:func:`load_video`, :func:`iter_video_chunks`, :func:`iter_timed_chunks`)
    Any container/codec PyAV (FFmpeg) reads, plus GIF (PyAV, PIL as a fallback). The first video
    stream is decoded; frames come out as ``np.uint8 [T, H, W, 3]`` RGB (grayscale and paletted
    sources become 3 equal/RGB channels).

    * Time: a frame's timestamp is its presentation time (``frame.pts * time_base``) minus the
      stream start, in seconds. ``start``/``end`` (seconds, either optional) keep the output
      times ``start <= t < end``.
    * Frame rate: output frame ``k`` is at time ``start + k / fps`` and shows the decoded frame whose
      timestamp is *nearest* to it (ties go to the earlier frame); the video ends at the last
      frame's timestamp plus its duration. So a 2 s video gives ``ceil(2 * fps)`` frames at any
      ``fps`` (frames are repeated when ``fps`` exceeds the native rate, skipped when below).
      ``fps=None`` keeps every decoded frame at its own timestamp (variable frame rates stay
      variable).
    * Output times (:func:`iter_timed_chunks`): each output frame's ``[start, end)`` seconds. With
      ``fps``, ``[start + k / fps, start + (k + 1) / fps)``; with ``fps=None``, from the frame's
      timestamp to the next frame's (the last one: plus its duration), never past ``end``.
    * Rotation: frames are turned upright by the stream's display matrix (what phones write; PyAV
      gives it as ``VideoFrame.rotation``, degrees counter-clockwise, read from the first frame
      and applied to every frame) in quarter turns with ``np.rot90``; a sideways phone video
      (``rotation == -90``) comes out portrait. :func:`video_info` reports the upright size and
      the ``rotation`` applied (0, 90, 180 or -90).
    * Size: resized (area filter) so that the smaller side is ``short_side`` and the aspect ratio
      is kept (the other side rounded); ``short_side=None`` keeps the decoded size.
    * ``max_frames`` stops after that many output frames (decoding stops too).

    Undecodable input raises :class:`VideoDecodeError` naming the file and the reason (corrupted,
    truncated, no video stream, zero frames in the requested range); a missing file raises
    ``FileNotFoundError``.

RGB model input (the paper's recipe: 25 fps, smaller side 256, 224 crop)
    :func:`center_crop` (test) or :func:`random_crop` (train) on ``[..., H, W, C]``, then
    :func:`to_float`: ``x / 127.5 - 1``, float in ``[-1, 1]``. Crop positions, windows and flips
    live in :mod:`i3d_jax.clips`.

Flow model input
    Flow is pixel displacement ``[T, H, W, 2]`` (x, y). :func:`scale_flow` clips to
    ``[-FLOW_BOUND, FLOW_BOUND] = [-20, 20]`` pixels and divides by 20, giving ``[-1, 1]``.
    For storage, :func:`quantize_flow` maps pixels to uint8 with ``round(f * 127 / bound) + 128``
    (zero is exactly 128; step ``bound / 127`` pixels); :func:`dequantize_flow_pixels` inverts it
    (pixels) and :func:`dequantize_flow_unit` gives the network's ``[-1, 1]``; the ``bound`` used
    is recorded beside the data (dataset metadata ``flow_scale``).
"""

from __future__ import annotations

import math
import os
import pathlib
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from i3d_jax import clips

FLOW_BOUND = 20.0
_QUANT_LEVELS = 127.0
# What the tools take as videos in a folder (any other file there is not a video).
VIDEO_SUFFIXES = (
    ".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv", ".gif",
)  # fmt: skip


class VideoDecodeError(ValueError):
    """A video file could not be decoded; `path` and `reason` say which and why."""

    def __init__(self, path, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"cannot decode video {self.path!r}: {reason}")


def list_videos(path: str | os.PathLike) -> list[pathlib.Path]:
    """A video file, or the video files (by suffix, `VIDEO_SUFFIXES`) directly in a directory,
    sorted by name. FileNotFoundError for a missing path, ValueError for a folder of none."""
    path = pathlib.Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if not files:
            raise ValueError(f"{path}: no video files ({', '.join(VIDEO_SUFFIXES)})")
        return files
    if not path.exists():
        raise FileNotFoundError(f"not found: {path}")
    return [path]


def load_video(
    path,
    *,
    fps: float | None = 25.0,
    short_side: int | None = 256,
    start: float | None = None,
    end: float | None = None,
    max_frames: int | None = None,
    allow_truncated: bool = False,
) -> np.ndarray:
    """Decode a video file to uint8 RGB frames `[T, H, W, 3]` (see the module docstring).

    Args:
      path: a video file (mp4, avi, webm, mkv, gif, ...).
      fps: output frame rate (nearest frame by timestamp); None keeps the native frames.
      short_side: the smaller side after resizing, in pixels; None keeps the size.
      start, end: keep frames with ``start <= t < end`` seconds; None means the beginning/end.
      max_frames: at most this many output frames.
      allow_truncated: accept a stream that ends clearly before the frame count its container
        declares (by default that is a `VideoDecodeError` naming both counts).
    Returns:
      ``np.uint8 [T, H, W, 3]``, ``T >= 1``.
    Raises:
      VideoDecodeError: corrupted, truncated or unsupported file, or no frame in the range.
      FileNotFoundError: `path` does not exist.
    """
    frames = [
        frame
        for frame, _, _ in _iter_frames(
            path,
            fps=fps,
            short_side=short_side,
            start=start,
            end=end,
            max_frames=max_frames,
            allow_truncated=allow_truncated,
        )
    ]
    return np.stack(frames)


def iter_video_chunks(
    path,
    chunk_frames: int,
    *,
    fps: float | None = 25.0,
    short_side: int | None = 256,
    start: float | None = None,
    end: float | None = None,
    max_frames: int | None = None,
    allow_truncated: bool = False,
) -> Iterator[np.ndarray]:
    """Stream a long video as consecutive uint8 chunks `[<=chunk_frames, H, W, 3]`.

    Same frames, in the same order, as `load_video` with the same arguments, concatenated; only one
    chunk is held in memory. Every chunk has `chunk_frames` frames except possibly the last.
    """
    for frames, _ in iter_timed_chunks(
        path,
        chunk_frames,
        fps=fps,
        short_side=short_side,
        start=start,
        end=end,
        max_frames=max_frames,
        allow_truncated=allow_truncated,
    ):
        yield frames


def iter_timed_chunks(
    path,
    chunk_frames: int,
    *,
    fps: float | None = 25.0,
    short_side: int | None = 256,
    start: float | None = None,
    end: float | None = None,
    max_frames: int | None = None,
    allow_truncated: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`iter_video_chunks` with each frame's time: `(frames [n, H, W, 3] uint8, seconds [n, 2]
    float64)`, `seconds[i]` the output frame's ``[start, end)`` in the video's seconds (see the
    module docstring: the resampled grid with `fps`, the decoded timestamps with ``fps=None``)."""
    if chunk_frames < 1:
        raise ValueError(f"iter_video_chunks: chunk_frames must be >= 1, got {chunk_frames}")
    chunk, times = [], []
    for frame, t0, t1 in _iter_frames(
        path,
        fps=fps,
        short_side=short_side,
        start=start,
        end=end,
        max_frames=max_frames,
        allow_truncated=allow_truncated,
    ):
        chunk.append(frame)
        times.append((t0, t1))
        if len(chunk) == chunk_frames:
            yield np.stack(chunk), np.asarray(times, np.float64)
            chunk, times = [], []
    if chunk:
        yield np.stack(chunk), np.asarray(times, np.float64)


def video_info(path) -> dict:
    """Container facts: ``{"fps", "num_frames", "duration", "height", "width", "rotation"}``.

    Only the first frame is decoded (for its display rotation). ``height``/``width`` are the
    upright size (as decoded frames come out before resizing) and ``rotation`` the degrees
    counter-clockwise the decoder turns the stored frames (0, 90, 180 or -90). Values the container
    does not state are estimated (``num_frames`` from duration x rate) or 0.
    """
    import av

    container = _open(path)
    try:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.base_rate or 0.0)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = 0.0
        num = stream.frames or int(round(duration * rate))
        height, width = int(stream.codec_context.height), int(stream.codec_context.width)
        turns = _first_frame_turns(container, stream)
        if turns % 2:
            height, width = width, height
        return {
            "fps": rate,
            "num_frames": int(num),
            "duration": duration,
            "height": height,
            "width": width,
            "rotation": rotation_degrees(turns),
        }
    finally:
        container.close()


def stream_fingerprint(path) -> str:
    """16 hex digits naming the video stream's facts (codec, size, frames, duration, rate);
    "" when the file does not open (the decode then reports why)."""
    import hashlib

    try:
        container = _open(path)
    except (ValueError, OSError):
        return ""
    try:
        s = container.streams.video[0]
        facts = [s.codec_context.name, s.codec_context.width, s.codec_context.height, s.frames,
                 s.duration, str(s.time_base), str(s.average_rate), container.duration]  # fmt: skip
    finally:
        container.close()
    return hashlib.sha256(repr(facts).encode()).hexdigest()[:16]


def expected_frames(path, fps: float | None = 25.0) -> int:
    """The frames `iter_video_chunks(path, fps=fps)` should yield, read from the packets' times
    without decoding (an estimate: a decoder may drop frames; 0 when nothing is known)."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        tb = stream.time_base
        t0 = stream.start_time or 0
        packets, end = 0, None
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            packets += 1
            if packet.pts is not None and tb is not None:
                stop = packet.pts + (packet.duration or 0)
                end = stop if end is None else max(end, stop)
    except Exception:  # an estimate only: the decode that follows reports what is wrong
        return 0
    finally:
        container.close()
    if fps is None or end is None:
        return packets
    return max(math.ceil(float((end - t0) * tb) * fps - 1e-6), 1)


def rotation_degrees(turns: int) -> int:
    """Counter-clockwise quarter turns -> degrees in (-180, 180]: 0, 90, 180 or -90."""
    return (0, 90, 180, -90)[turns % 4]


def resized_shape(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    """`(height, width)` after scaling the smaller side to `short_side` (None: unchanged)."""
    if short_side is None:
        return height, width
    if height <= width:
        return short_side, max(1, int(round(width * short_side / height)))
    return max(1, int(round(height * short_side / width))), short_side


def center_crop(frames: np.ndarray, size: int | tuple[int, int] = 224) -> np.ndarray:
    """Centre crop of `[..., H, W, C]` to `[..., size, size, C]` (extra pixel goes bottom/right)."""
    ch, cw = _pair(size)
    _check_crop(frames.shape, ch, cw)
    box = clips.center_box(frames.shape[-3], frames.shape[-2], (ch, cw))
    return clips.crop(frames, box, (ch, cw))


def random_crop(
    frames: np.ndarray, size: int | tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """One random crop of `[..., H, W, C]` to `[..., size, size, C]`, the same for every frame."""
    ch, cw = _pair(size)
    _check_crop(frames.shape, ch, cw)
    box = clips.random_box(frames.shape[-3], frames.shape[-2], (ch, cw), rng)
    return clips.crop(frames, box, (ch, cw))


def to_float(frames: Any, dtype: Any = np.float32) -> Any:
    """The one pixel contract: uint8 `[..., C]` in [0, 255] -> `dtype` in [-1, 1] (``x / 127.5 - 1``).

    Works on numpy and jax arrays (also under jit). Floating input is taken as model input
    already in [-1, 1] (e.g. scaled flow) and only cast to `dtype`; any other dtype raises.
    """
    if not hasattr(frames, "dtype"):
        frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return (frames.astype(np.float32) * (1.0 / 127.5) - 1.0).astype(dtype)
    if np.issubdtype(frames.dtype, np.floating) or str(frames.dtype) == "bfloat16":
        return frames.astype(dtype)
    raise ValueError(
        f"to_float: expected uint8 pixels (or float model input in [-1, 1]), got {frames.dtype}"
    )


def scale_flow(flow_pixels: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """Flow in pixels `[..., 2]` -> float32 in [-1, 1]: clip to ``[-bound, bound]``, divide."""
    flow = np.asarray(flow_pixels, np.float32)
    return np.clip(flow, -bound, bound) / np.float32(bound)


def quantize_flow(flow_pixels: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """Flow in pixels -> uint8 ``round(clip(f, ±bound) * 127 / bound) + 128`` (0 px -> 128)."""
    flow = np.clip(np.asarray(flow_pixels, np.float32), -bound, bound)
    return (np.rint(flow * (_QUANT_LEVELS / bound)) + 128).astype(np.uint8)


def dequantize_flow_pixels(flow_uint8: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """Inverse of `quantize_flow`: uint8 -> float32 **pixels** (error at most ``bound / 254``)."""
    q = np.asarray(flow_uint8)
    if q.dtype != np.uint8:
        raise ValueError(f"dequantize_flow_pixels: expected uint8, got {q.dtype}")
    return (q.astype(np.float32) - 128.0) * np.float32(bound / _QUANT_LEVELS)


def dequantize_flow_unit(flow_uint8: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """uint8 flow stored with `bound` -> float32 network input in **[-1, 1]** (pixels / bound)."""
    return scale_flow(dequantize_flow_pixels(flow_uint8, bound), bound)


# --------------------------------------------------------------------------------------------
# Decoding internals.


def _pair(size) -> tuple[int, int]:
    if isinstance(size, int | np.integer):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def _check_crop(shape, ch: int, cw: int) -> None:
    if len(shape) < 3:
        raise ValueError(f"crop: expected frames [..., H, W, C], got shape {tuple(shape)}")
    h, w = shape[-3], shape[-2]
    if ch > h or cw > w:
        raise ValueError(
            f"crop: frames of {h}x{w} (shape {tuple(shape)}) are smaller than the crop {ch}x{cw}"
        )


def _open(path):
    import av

    if not os.path.exists(path):
        raise FileNotFoundError(f"video file not found: {os.fspath(path)!r}")
    try:
        container = av.open(os.fspath(path))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise VideoDecodeError(path, f"not a readable video container ({e})") from e
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, "the file has no video stream")
    return container


def _iter_frames(
    path, *, fps, short_side, start, end, max_frames, allow_truncated=False
) -> Iterator[tuple[np.ndarray, float, float]]:
    """Yield `(frame, t_start, t_end)` one output frame at a time, upright (the single decode
    loop behind every public reader; times in seconds, see the module docstring)."""
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be > 0 or None, got {fps}")
    if short_side is not None and short_side < 1:
        raise ValueError(f"short_side must be >= 1 or None, got {short_side}")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"end ({end}) must be after start ({start}) for {os.fspath(path)!r}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")

    try:
        source = _pyav_frames(path, start, allow_truncated)
        first = next(source, None)
    except VideoDecodeError:
        if str(path).lower().endswith(".gif"):
            source = _pil_gif_frames(path)
            first = next(source, None)
        else:
            raise
    if first is None:
        raise VideoDecodeError(path, "the video stream has zero frames")

    lo = 0.0 if start is None else float(start)
    hi = math.inf if end is None else float(end)
    turns = _quarter_turns(first[2])  # one display matrix for the whole stream
    _warn_if_upscaled(path, first[2], short_side)
    count = 0
    resized_cache: tuple[int, np.ndarray] | None = None

    def emit(index: int, frame) -> np.ndarray:
        nonlocal resized_cache
        if resized_cache is None or resized_cache[0] != index:
            resized_cache = (index, _to_rgb(frame, short_side, turns))
        return resized_cache[1]

    frames = _chain(first, source)
    timed = _native_times(frames, lo, hi) if fps is None else _resampled_times(frames, lo, hi, fps)
    for index, frame, t_start, t_end in timed:
        yield emit(index, frame), t_start, t_end
        count += 1
        if max_frames is not None and count >= max_frames:
            return
    if count == 0:
        raise VideoDecodeError(
            path, f"no frame in the requested time range start={start}, end={end} (seconds)"
        )


def _native_times(frames, lo: float, hi: float):
    """`(index, frame, t_start, t_end)` of every decoded frame in [lo, hi): a frame is shown from
    its timestamp to the next one's, so each is held until that is known."""
    held = None  # (index, t, duration, frame)
    next_t = None
    for index, (t, dur, frame) in enumerate(frames):
        if t < lo - 1e-6:
            continue
        if t >= hi - 1e-6:
            next_t = t
            break
        if held is not None:
            yield held[0], held[3], held[1], t
        held = (index, t, dur, frame)
    if held is not None:
        last_end = next_t if next_t is not None else held[1] + held[2]
        yield held[0], held[3], held[1], min(last_end, hi)


def _resampled_times(frames, lo: float, hi: float, fps: float):
    """`(index, frame, t_start, t_end)` on the grid lo + k / fps: each grid time takes the
    decoded frame shown then (nearest by the midpoints between timestamps)."""
    step = 1.0 / fps
    k = 0
    target = lo
    prev = None  # (index, t, duration, frame)
    for index, (t, dur, frame) in enumerate(frames):
        if prev is not None:
            mid = 0.5 * (prev[1] + t)
            while target <= mid + 1e-9 and target < hi - 1e-9:
                yield prev[0], prev[3], target, lo + (k + 1) * step
                k += 1
                target = lo + k * step
            if target >= hi - 1e-9:
                return
        prev = (index, t, dur, frame)
    if prev is not None:
        video_end = min(prev[1] + prev[2], hi)
        while target < video_end - 1e-9:
            yield prev[0], prev[3], target, lo + (k + 1) * step
            k += 1
            target = lo + k * step


class UpscaleWarning(UserWarning):
    """Frames much smaller than the smaller side they are resized to (shown for every video)."""


warnings.filterwarnings("always", category=UpscaleWarning)
UPSCALE_WARNING = 2.0  # warn above this factor


def _warn_if_upscaled(path, frame, short_side: int | None) -> None:
    small = min(frame.height, frame.width)
    if short_side is not None and short_side > UPSCALE_WARNING * small:
        warnings.warn(
            f"{os.fspath(path)}: frames of {frame.height}x{frame.width} are upscaled "
            f"{short_side / small:.1f}x to a smaller side of {short_side}; the network sees "
            "little detail (pass a smaller --short_side to keep the size)",
            UpscaleWarning,
            stacklevel=4,
        )


def _chain(first, rest):
    yield first
    yield from rest


def _pyav_frames(path, start, allow_truncated=False):
    """Yield ``(t_seconds, duration_seconds, av.VideoFrame)`` of the first video stream.

    When the stream is decoded to its end and yields clearly fewer frames than the container
    declares (fewer than 90% and more than 2 short), raise `VideoDecodeError` naming both counts,
    unless `allow_truncated`. A consumer that stops early never reaches the check.
    """
    import av

    container = _open(path)
    decoded = 0
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = float(stream.time_base) if stream.time_base is not None else None
        t0 = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        rate = float(stream.average_rate or stream.base_rate or 25.0)
        if start is not None and start > 1.0 and tb:
            # Jump to the key frame before `start` (decoding then resumes from it).
            try:
                container.seek(int((t0 + start - 1.0) / tb), stream=stream, backward=True)
            except av.error.FFmpegError:
                container.seek(0, stream=stream)
        declared = int(stream.frames or 0)
        last_t, dur = None, 0.0
        for frame in container.decode(stream):
            if frame.pts is not None and tb:
                t = frame.pts * tb - t0
            else:
                t = (last_t + 1.0 / rate) if last_t is not None else 0.0
            if frame.duration and tb:
                dur = frame.duration * tb
            else:
                dur = 1.0 / rate
            if last_t is not None and t <= last_t:  # out-of-order/duplicate timestamps
                t = last_t + 1e-6
            last_t = t
            decoded += 1
            yield t, dur, frame
        # After a seek, the frames before `start` were not decoded: count by timestamp instead.
        reached = decoded if start is None or last_t is None else round((last_t + dur) * rate)
        if not allow_truncated and declared > 0 and _is_truncated(reached, declared):
            raise VideoDecodeError(
                path,
                f"truncated: the stream ends after {reached} frames, but the container declares "
                f"{declared} (pass allow_truncated=True, or --allow_truncated, to accept it)",
            )
    except av.error.FFmpegError as e:
        raise VideoDecodeError(
            path, f"corrupted or truncated data after {decoded} decoded frames ({e})"
        ) from e
    finally:
        container.close()


def _is_truncated(decoded: int, declared: int) -> bool:
    """Clearly fewer frames than declared: under 90% and more than 2 frames short."""
    return decoded < 0.9 * declared and declared - decoded > 2


def _pil_gif_frames(path):
    from PIL import Image, ImageSequence

    try:
        img = Image.open(os.fspath(path))
        t = 0.0
        for frame in ImageSequence.Iterator(img):
            dur = (frame.info.get("duration") or 40) / 1000.0
            yield t, dur, frame.convert("RGB")
            t += dur
    except OSError as e:
        raise VideoDecodeError(path, f"not a readable GIF ({e})") from e


def _quarter_turns(frame) -> int:
    """Counter-clockwise quarter turns that make a decoded frame upright: its display matrix's
    rotation (PyAV's `VideoFrame.rotation`, degrees counter-clockwise in [-180, 180]) rounded to
    a multiple of 90; 0 for a frame without one (or a PIL frame)."""
    degrees = getattr(frame, "rotation", 0) or 0
    return int(round(degrees / 90.0)) % 4


def _first_frame_turns(container, stream) -> int:
    """`_quarter_turns` of the stream's first frame (0 when none decodes: the decode says why)."""
    import av

    try:
        for frame in container.decode(stream):
            return _quarter_turns(frame)
    except av.error.FFmpegError:
        pass
    return 0


def _to_rgb(frame, short_side: int | None, turns: int = 0) -> np.ndarray:
    """A decoded frame (PyAV or PIL) -> uint8 [H, W, 3], resized to `short_side`, then turned
    `turns` quarter turns counter-clockwise (upright)."""
    if hasattr(frame, "to_ndarray"):  # av.VideoFrame: convert and resize in swscale
        # The smaller side is the same before and after a quarter turn: resize as stored.
        h, w = resized_shape(frame.height, frame.width, short_side)
        if (h, w) == (frame.height, frame.width):
            out = frame.to_ndarray(format="rgb24")
        else:
            out = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")
    else:
        from PIL import Image

        h, w = resized_shape(frame.height, frame.width, short_side)
        if (h, w) != (frame.height, frame.width):
            frame = frame.resize((w, h), Image.BOX)
        out = np.asarray(frame.convert("RGB"))
    if turns % 4:
        out = np.ascontiguousarray(np.rot90(out, turns % 4))
    return out
