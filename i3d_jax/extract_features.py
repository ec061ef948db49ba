"""Sliding-window I3D features for videos: one `.npz` per video.

    python -m i3d_jax.extract_features VIDEO_OR_DIR --weights SOURCE --out DIR
        [--endpoint Mixed_5c] [--window 64] [--stride 16] [--fps 25] [--short-side 256]
        [--crop-size 224] [--crops center|three|ten] [--stream rgb|flow|both]
        [--flow-weights SOURCE] [--pooled | --unpooled] [--batch-size 8]

Each video is decoded with `i3d_jax.preprocess.load_video` (`fps`, smaller side `short_side`),
turned into the stream's input (RGB: `x / 127.5 - 1`; flow: TV-L1 from `i3d_jax.flow`, clipped to
+-20 px and divided by 20, one frame fewer than RGB) and cut into windows of `window` frames
starting every `stride` frames while the window fits (`start + window <= T`; trailing frames past
the last full window are not covered). A video shorter than one window is looped (frame `i` of
the window is frame `i mod T`) to fill exactly one window, as in the paper's training clips.
With `--stream both`, windows are laid on the flow's `T - 1` frames and used for both streams.

Crops: `center`; `three` (start, centre and end of the longer side, centred on the shorter);
`ten` (four corners and centre, then the same five flipped horizontally; flow's x is negated).

Output `DIR/<video file stem>.npz`:
  `features`       float32 `[num_windows, num_crops, D]` pooled (mean over time and space) or
                   `[num_windows, num_crops, *endpoint_shape]` unpooled; with `--stream both`
                   the pooled RGB and flow features concatenated (`[..., D_rgb + D_flow]`), and
                   `features_rgb` / `features_flow` separately
  `timestamps`     float64 `[num_windows, 2]`: each window's [start, end) in seconds
                   (`frame / fps`; a looped window ends at the video's end)
  `endpoint`, `weights`, `stream`, `preprocessing` (JSON) describe how they were made.

Windows of different videos are batched together. Finished videos are skipped on a rerun (the
output is written to a temporary file and renamed, so a present `.npz` is complete). A file that
cannot be decoded is reported and skipped; the others continue and the exit status is 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import numpy as np

from i3d_jax import preprocess

VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".gif", ".m4v", ".mpg", ".mpeg")
CROPS = {"center": 1, "three": 3, "ten": 10}
STREAMS = ("rgb", "flow", "both")


@dataclasses.dataclass(frozen=True)
class ExtractConfig:
    """How features are extracted (see the module docstring)."""

    endpoint: str = "Mixed_5c"
    window: int = 64
    stride: int = 16
    fps: float = 25.0
    short_side: int = 256
    crop_size: int = 224
    crops: str = "center"
    pooled: bool = True
    batch_size: int = 8

    def __post_init__(self):
        if self.crops not in CROPS:
            raise ValueError(f"unknown crops {self.crops!r}; expected one of {sorted(CROPS)}")
        if self.window < 1 or self.stride < 1 or self.batch_size < 1:
            raise ValueError(
                f"window, stride and batch_size must be >= 1, got {self.window}, {self.stride}, "
                f"{self.batch_size}"
            )


def window_starts(num_frames: int, window: int, stride: int) -> list[int]:
    """Start frames of the windows: `0, stride, ...` while `start + window <= num_frames`; one
    window at 0 (looped) when the video is shorter than `window`."""
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    if num_frames <= window:
        return [0]
    return list(range(0, num_frames - window + 1, stride))


def window_frames(num_frames: int, start: int, window: int) -> np.ndarray:
    """Frame indices of one window (looped modulo `num_frames`)."""
    return (start + np.arange(window)) % num_frames


def timestamps(num_frames: int, starts: Sequence[int], window: int, fps: float) -> np.ndarray:
    """`[len(starts), 2]` [start, end) seconds; a window is clipped to the video's end."""
    s = np.asarray(starts, np.float64)
    return np.stack([s / fps, np.minimum(s + window, num_frames) / fps], axis=-1)


def crop_boxes(h: int, w: int, size: int, mode: str) -> list[tuple[int, int, bool]]:
    """`(top, left, flip)` of each crop of an `h x w` frame."""
    if size > h or size > w:
        raise ValueError(f"frames of {h}x{w} are smaller than the {size}x{size} crop")
    cy, cx = (h - size) // 2, (w - size) // 2
    if mode == "center":
        return [(cy, cx, False)]
    if mode == "three":
        if w >= h:
            return [(cy, 0, False), (cy, cx, False), (cy, w - size, False)]
        return [(0, cx, False), (cy, cx, False), (h - size, cx, False)]
    if mode == "ten":
        five = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size), (cy, cx)]
        return [(t, left, False) for t, left in five] + [(t, left, True) for t, left in five]
    raise ValueError(f"unknown crops {mode!r}; expected one of {sorted(CROPS)}")


def crop_clip(clip: np.ndarray, box: tuple[int, int, bool], size: int, flow: bool) -> np.ndarray:
    """One crop `[T, size, size, C]` of `clip [T, H, W, C]`; a flipped flow crop negates x."""
    top, left, flip = box
    out = clip[:, top : top + size, left : left + size]
    if flip:
        out = out[:, :, ::-1]
        if flow:
            out = out * np.array([-1.0, 1.0], out.dtype)
    return out


def make_apply(model, endpoint: str, pooled: bool) -> Callable:
    """jit `(variables, x [B, T, H, W, C]) -> features [B, ...]` of `endpoint` (pooled: `[B, D]`)."""
    model = model.clone(final_endpoint="Logits" if endpoint == "Logits_per_time" else endpoint)

    @jax.jit
    def apply(variables, x):
        _, endpoints = model.apply(variables, x)
        out = endpoints[endpoint]
        if pooled and out.ndim > 2:
            out = out.reshape(out.shape[0], -1, out.shape[-1]).mean(axis=1)
        return out

    return apply


@dataclasses.dataclass
class _Video:
    name: str
    path: pathlib.Path
    inputs: dict[str, np.ndarray]  # stream -> [T, H, W, C] float in [-1, 1]
    starts: list[int]
    stamps: np.ndarray
    boxes: list[tuple[int, int, bool]]
    features: dict[str, list] = dataclasses.field(default_factory=dict)
    remaining: int = 0


@dataclasses.dataclass
class ExtractResult:
    written: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def output_name(path: pathlib.Path) -> str:
    return path.stem + ".npz"


def list_videos(path: str | os.PathLike) -> list[pathlib.Path]:
    """A video file, or the video files (by suffix) directly inside a directory, sorted."""
    path = pathlib.Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if not files:
            raise ValueError(f"{path}: no video files ({', '.join(VIDEO_SUFFIXES)})")
    elif path.exists():
        files = [path]
    else:
        raise FileNotFoundError(f"not found: {path}")
    names: dict[str, pathlib.Path] = {}
    for f in files:
        other = names.setdefault(output_name(f), f)
        if other != f:
            raise ValueError(f"{other.name} and {f.name} would both write {output_name(f)}")
    return files


def _write_atomic(dest: pathlib.Path, arrays: dict[str, Any]) -> None:
    tmp = dest.with_name(f".{dest.name}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, dest)


def extract(
    videos: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    streams: dict[str, tuple[Any, Any]],
    config: ExtractConfig = ExtractConfig(),
    weights_id: str | dict[str, str] = "",
    flow_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
) -> ExtractResult:
    """Extracts features of `videos` into `out_dir` (see the module docstring).

    Args:
      videos: video files.
      out_dir: output directory (created); finished videos already there are skipped.
      streams: `{"rgb": (model, variables)}`, `{"flow": ...}` or both.
      config: windows, crops, endpoint, batching.
      weights_id: recorded in each file (per stream when a dict).
      flow_fn: uint8 `[T, H, W, 3]` -> pixels `[T-1, H, W, 2]` (default `i3d_jax.flow`'s JAX TV-L1).
    """
    from tqdm import tqdm

    if not streams or set(streams) - {"rgb", "flow"}:
        raise ValueError(f"streams must be a non-empty subset of rgb/flow, got {sorted(streams)}")
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if flow_fn is None:
        from i3d_jax.flow import compute_flow

        flow_fn = compute_flow
    applies = {s: make_apply(m, config.endpoint, config.pooled) for s, (m, _) in streams.items()}
    queues: dict[str, list[tuple[_Video, int, int]]] = {s: [] for s in streams}
    result = ExtractResult()
    size = config.crop_size

    def run_batch(stream: str) -> None:
        items = queues[stream][: config.batch_size]
        del queues[stream][: config.batch_size]
        clips = []
        for video, w, k in items:
            x = video.inputs[stream]
            clip = x[window_frames(len(x), video.starts[w], config.window)]
            clips.append(crop_clip(clip, video.boxes[k], size, stream == "flow"))
        clips += [clips[-1]] * (config.batch_size - len(clips))  # one program per shape
        out = np.asarray(applies[stream](streams[stream][1], np.stack(clips)), np.float32)
        for (video, w, k), f in zip(items, out, strict=False):
            video.features[stream][w][k] = f
            video.remaining -= 1
            if video.remaining == 0:
                finish(video)

    def finish(video: _Video) -> None:
        feats = {s: np.stack([np.stack(c) for c in video.features[s]]) for s in streams}
        arrays: dict[str, Any] = {f"features_{s}": f for s, f in feats.items()}
        if len(feats) == 1:
            arrays = {"features": next(iter(feats.values()))}
        else:
            arrays["features"] = np.concatenate([feats["rgb"], feats["flow"]], axis=-1)
        meta = dict(dataclasses.asdict(config), video=video.path.name, rgb_range=[-1.0, 1.0])
        if "flow" in streams:
            meta["flow"] = "TV-L1 pixels clipped to [-20, 20] / 20; windows on T-1 frames"
        arrays.update(
            timestamps=video.stamps,
            endpoint=config.endpoint,
            weights=json.dumps(weights_id) if isinstance(weights_id, dict) else weights_id,
            stream="both" if len(streams) == 2 else next(iter(streams)),
            preprocessing=json.dumps(meta),
        )
        _write_atomic(out_dir / output_name(video.path), arrays)
        result.written.append(video.path.name)
        video.inputs.clear()

    videos = [pathlib.Path(v) for v in videos]
    for path in tqdm(videos, desc="videos", unit="video", disable=not progress):
        if (out_dir / output_name(path)).is_file():
            result.skipped.append(path.name)
            continue
        try:
            frames = preprocess.load_video(path, fps=config.fps, short_side=config.short_side)
            boxes = crop_boxes(frames.shape[1], frames.shape[2], size, config.crops)
            inputs = {}
            if "flow" in streams:
                if len(frames) < 2:
                    raise ValueError("the flow stream needs at least 2 frames")
                flow = flow_fn(frames)
                inputs["flow"] = preprocess.scale_flow(flow)
            if "rgb" in streams:
                rgb = frames[: len(frames) - 1] if "flow" in streams else frames
                inputs["rgb"] = preprocess.to_float(rgb)
        except (preprocess.VideoDecodeError, FileNotFoundError, ValueError) as e:
            result.failed.append((path.name, str(e)))
            log(f"skipping {path}: {e}")
            continue
        n = len(next(iter(inputs.values())))
        starts = window_starts(n, config.window, config.stride)
        video = _Video(
            path.stem, path, inputs, starts, timestamps(n, starts, config.window, config.fps), boxes
        )
        video.remaining = len(streams) * len(starts) * len(boxes)
        for s in streams:
            video.features[s] = [[None] * len(boxes) for _ in starts]
            queues[s] += [(video, w, k) for w in range(len(starts)) for k in range(len(boxes))]
            while len(queues[s]) >= config.batch_size:
                run_batch(s)
    for s in streams:
        while queues[s]:
            run_batch(s)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m i3d_jax.extract_features", description=__doc__.split("\n")[0]
    )
    parser.add_argument("input", help="a video file or a directory of videos")
    parser.add_argument("--weights", help="RGB weights (anything load_pretrained reads)")
    parser.add_argument("--flow-weights", help="flow weights (for --stream flow|both)")
    parser.add_argument("--out", required=True, help="output directory (one .npz per video)")
    d = ExtractConfig()
    parser.add_argument("--endpoint", default=d.endpoint)
    parser.add_argument("--window", type=int, default=d.window)
    parser.add_argument("--stride", type=int, default=d.stride)
    parser.add_argument("--fps", type=float, default=d.fps)
    parser.add_argument("--short-side", type=int, default=d.short_side)
    parser.add_argument("--crop-size", type=int, default=d.crop_size)
    parser.add_argument("--crops", choices=sorted(CROPS), default=d.crops)
    parser.add_argument("--stream", choices=STREAMS, default="rgb")
    parser.add_argument("--pooled", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--unpooled", dest="pooled", action="store_false")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    from i3d_jax.weights import load_pretrained

    try:
        config = ExtractConfig(
            endpoint=args.endpoint, window=args.window, stride=args.stride, fps=args.fps,
            short_side=args.short_side, crop_size=args.crop_size, crops=args.crops,
            pooled=args.pooled, batch_size=args.batch_size,
        )  # fmt: skip
        wanted = ["rgb", "flow"] if args.stream == "both" else [args.stream]
        sources = {"rgb": args.weights, "flow": args.flow_weights}
        for s in wanted:
            if not sources[s]:
                raise ValueError(
                    f"--stream {args.stream} needs --{'weights' if s == 'rgb' else 'flow-weights'}"
                )
        streams = {s: load_pretrained(sources[s]) for s in wanted}
        files = list_videos(args.input)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ids = {s: str(sources[s]) for s in wanted}
    result = extract(
        files, args.out, streams, config, ids if len(ids) > 1 else ids[wanted[0]],
        progress=not args.no_progress,
    )  # fmt: skip
    print(
        f"wrote {len(result.written)}, skipped {len(result.skipped)} already done, "
        f"failed {len(result.failed)}"
    )
    for name, why in result.failed:
        print(f"failed: {name}: {why}", file=sys.stderr)
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
