"""Sliding-window I3D features for videos: one `.npz` per video.

    python -m i3d_jax.extract_features VIDEO_OR_DIR --weights SOURCE --out DIR
        [--preset actionformer_thumos14|activitynet|video_features] [--endpoint Mixed_5c] [--window 64] [--stride 16] [--fps 25|native] [--short-side 256]
        [--crop-size 224] [--crops center|three|ten] [--stream rgb|flow|both]
        [--flow-weights SOURCE] [--pooled | --unpooled] [--batch-size 4]
        [--on-mismatch recompute|refuse]

A preset (`i3d_jax.feature_presets`, exact numbers there and in the README) sets the window,
stride, fps, crops, endpoint and size of a field's format; flags given explicitly override it.
Each video is decoded in chunks with `i3d_jax.preprocess.iter_video_chunks` (`fps`, smaller side
`short_side`), turned into the stream's input (RGB: `x / 127.5 - 1`; flow: TV-L1 from
`i3d_jax.flow`, clipped to +-20 px and divided by 20, one frame fewer than RGB) and cut into
windows of `window` frames starting every `stride` frames while the window fits (`start + window
<= T`; trailing frames past the last full window are not covered). A video shorter than one
window is looped (frame `i` of the window is frame `i mod T`) to fill exactly one window, as in
the paper's training clips. With `--stream both`, windows are laid on the flow's `T - 1` frames
and used for both streams. Geometry (windows, crops, flips) is `i3d_jax.clips`.

Memory does not grow with the video's length: only the frames of the current windows are kept
(RGB as uint8), each crop is converted to float when its batch is built.

Crops: `center`; `three` (start, centre and end of the longer side, centred on the shorter);
`ten` (four corners and centre, then the same five flipped horizontally; flow's x is negated).

Output `DIR/<video file stem>.npz`:
  `features`       float32 `[num_windows, num_crops, D]` pooled (mean over time and space) or
                   `[num_windows, num_crops, *endpoint_shape]` unpooled; with `--stream both`
                   the pooled RGB and flow features concatenated (`[..., D_rgb + D_flow]`), and
                   `features_rgb` / `features_flow` separately
  `timestamps`     float64 `[num_windows, 2]`: each window's [start, end) in seconds
                   (`frame / fps`; a looped window ends at the video's end)
  `times`          float64 `[num_windows]`: each window's centre, `(start + window / 2) / fps`
                   seconds (`fps`: the video's own rate with `--fps native`)
  `settings`       JSON of everything that changes the numbers (weights, endpoint, window,
                   stride, fps, short side, crop size, crops, pooling, stream, flow method, and
                   the preset's name) and `settings_fingerprint` (SHA-256 of all but the preset);
  `endpoint`, `weights`, `stream`, `preprocessing` (JSON) as before.

Windows of different videos are batched together. A rerun skips a video whose `.npz` exists
with the same settings fingerprint (the output is written to a temporary file and renamed, so a
present `.npz` is complete); one made with other settings is recomputed (`--on-mismatch
recompute`, the default, naming what changed) or refused (`--on-mismatch refuse`). A file that
cannot be decoded is reported and skipped; the others continue and the exit status is 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import jax
import numpy as np
from tqdm import tqdm

from i3d_jax import clips, feature_presets, graph, preprocess, schedules

VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".gif", ".m4v", ".mpg", ".mpeg")
CROPS = clips.CROP_SETS
STREAMS = ("rgb", "flow", "both")
ON_MISMATCH = ("recompute", "refuse")
CHANNELS = {"rgb": 3, "flow": 2}
DEFAULT_FLOW_ID = "i3d_jax.flow.compute_flow (TV-L1, JAX backend, default parameters)"
SETTINGS_VERSION = 2


@dataclasses.dataclass(frozen=True)
class ExtractConfig:
    """How features are extracted (see the module docstring)."""

    endpoint: str = "Mixed_5c"
    window: int = 64
    stride: int = 16
    fps: float | None = 25.0  # None: the video's native frames (no resampling)
    short_side: int = 256
    crop_size: int = 224
    crops: str = "center"
    pooled: bool = True
    batch_size: int = 4  # 4 x 64 frames at 224: about 2.5 GiB on CPU, like predict
    chunk_frames: int = 32  # frames decoded at a time (memory, not results)
    preset: str = ""  # the i3d_jax.feature_presets name these settings came from (recorded)

    def __post_init__(self):
        if self.crops not in CROPS:
            raise ValueError(f"unknown crops {self.crops!r}; expected one of {sorted(CROPS)}")
        for name in ("window", "stride", "batch_size", "crop_size", "chunk_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"fps must be > 0 (or None: native), got {self.fps}")
        if self.preset and self.preset not in feature_presets.PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; expected one of {sorted(feature_presets.PRESETS)}")  # fmt: skip
        if self.short_side < self.crop_size:
            raise ValueError(
                f"short_side {self.short_side} is smaller than crop_size {self.crop_size}: "
                "every frame would be too small to crop"
            )
        names = (*schedules.ENDPOINTS, "Logits_per_time")
        if self.endpoint not in names:
            raise ValueError(f"unknown endpoint {self.endpoint!r}; expected one of {names}")


def settings(
    config: ExtractConfig,
    streams: Iterable[str],
    weights_id: str | dict[str, str],
    flow_id: str = DEFAULT_FLOW_ID,
) -> dict[str, Any]:
    """Everything that changes the features (not batching or chunking), as a JSON-able dict."""
    streams = sorted(streams)
    out = dataclasses.asdict(config)
    del out["batch_size"], out["chunk_frames"]
    out.update(
        version=SETTINGS_VERSION,
        stream="both" if len(streams) == 2 else streams[0],
        weights=weights_id,
        flow=flow_id if "flow" in streams else None,
    )
    return out


def fingerprint(settings_: dict[str, Any]) -> str:
    """16 hex digits of the SHA-256 of the settings' canonical JSON (without the preset name)."""
    settings_ = {k: v for k, v in settings_.items() if k != "preset"}
    blob = json.dumps(settings_, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def stored_settings(path: pathlib.Path) -> tuple[str, dict[str, Any]]:
    """(fingerprint, settings) of an existing output; ("", {}) for one without (older files)."""
    try:
        with np.load(path) as z:
            if "settings_fingerprint" not in z.files:
                return "", {}
            return str(z["settings_fingerprint"]), json.loads(str(z["settings"]))
    except (OSError, ValueError, KeyError):
        return "", {}


def settings_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    """`key old -> new` for every differing setting (or a note that the file has none)."""
    if not old:
        return "the file records no settings (made by an older version)"
    keys = sorted(set(old) | set(new))
    return ", ".join(
        f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)
    )


def weights_identity(source: str | os.PathLike) -> str:
    """The weights' name, with size and modification time when it is a local file/directory."""
    path = pathlib.Path(source)
    if not path.exists():
        return str(source)
    stat = (path / "model_card.json" if path.is_dir() else path).stat()
    return f"{path.resolve()} ({stat.st_size} bytes, mtime_ns {stat.st_mtime_ns})"


def make_apply(model, endpoint: str, pooled: bool) -> Callable:
    """jit `(variables, x [B, T, H, W, C]) -> features [B, ...]` of `endpoint` (pooled: `[B, D]`)."""
    model = model.clone(final_endpoint="Logits" if endpoint == "Logits_per_time" else endpoint)

    @functools.partial(jax.jit, compiler_options=graph.jit_options(model, train=False))
    def apply(variables, x):
        _, endpoints = model.apply(variables, x)
        out = endpoints[endpoint]
        if pooled and out.ndim > 2:
            out = out.reshape(out.shape[0], -1, out.shape[-1]).mean(axis=1)
        return out

    return apply


@dataclasses.dataclass
class ExtractResult:
    written: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    recomputed: list[str] = dataclasses.field(default_factory=list)
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


def stream_inputs(
    path: pathlib.Path,
    config: ExtractConfig,
    streams: Iterable[str],
    flow_fn: Callable[[np.ndarray], np.ndarray],
) -> Iterator[dict[str, np.ndarray]]:
    """Consecutive aligned chunks of each stream's input: RGB uint8 `[n, H, W, 3]`, flow float32
    `[n, H, W, 2]` in [-1, 1] (with flow, RGB frame t pairs with the flow from t to t+1)."""
    streams = set(streams)
    chunks = preprocess.iter_video_chunks(
        path, config.chunk_frames, fps=config.fps, short_side=config.short_side
    )
    last, pairs = None, 0
    for frames in chunks:
        if "flow" not in streams:
            yield {"rgb": frames}
            continue
        seq = frames if last is None else np.concatenate([last[None], frames])
        last = frames[-1]
        if len(seq) < 2:
            continue
        pairs += len(seq) - 1
        out = {"flow": preprocess.scale_flow(flow_fn(seq))}
        if "rgb" in streams:
            out["rgb"] = seq[:-1]
        yield out
    if "flow" in streams and pairs == 0:
        raise ValueError("the flow stream needs at least 2 frames; the video has 1")


@dataclasses.dataclass
class _Video:
    path: pathlib.Path
    fps: float = 0.0  # config.fps, or the video's native rate
    starts: list[int] = dataclasses.field(default_factory=list)
    boxes: list[clips.CropBox] | None = None
    stamps: list[np.ndarray] = dataclasses.field(default_factory=list)
    features: dict[str, list[list]] = dataclasses.field(default_factory=dict)
    pending: int = 0  # crops queued and not yet computed
    decoded: bool = False
    failed: bool = False


def _estimate_windows(path: pathlib.Path, config: ExtractConfig, flow: bool) -> int:
    try:
        info = preprocess.video_info(path)
    except (ValueError, FileNotFoundError):
        return 0
    frames = int(round(info["duration"] * (config.fps or info["fps"]))) - int(flow)
    return len(clips.window_starts(frames, config.window, config.stride)) if frames > 0 else 0


def extract(
    videos: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    streams: dict[str, tuple[Any, Any]],
    config: ExtractConfig = ExtractConfig(),
    weights_id: str | dict[str, str] = "",
    flow_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = lambda m: tqdm.write(m, file=sys.stderr),
    on_mismatch: str = "recompute",
    flow_id: str | None = None,
) -> ExtractResult:
    """Extracts features of `videos` into `out_dir` (see the module docstring).

    Args:
      videos: video files.
      out_dir: output directory (created); finished videos with the same settings are skipped.
      streams: `{"rgb": (model, variables)}`, `{"flow": ...}` or both.
      config: windows, crops, endpoint, batching.
      weights_id: recorded in each file and its settings (per stream when a dict).
      flow_fn: uint8 `[T, H, W, 3]` -> pixels `[T-1, H, W, 2]` (default `i3d_jax.flow`'s JAX TV-L1).
      on_mismatch: "recompute" or "refuse" a video whose output has other settings.
      flow_id: names `flow_fn` in the settings (default: the default solver's name).
    """
    if not streams or set(streams) - {"rgb", "flow"}:
        raise ValueError(f"streams must be a non-empty subset of rgb/flow, got {sorted(streams)}")
    if on_mismatch not in ON_MISMATCH:
        raise ValueError(f"on_mismatch must be one of {ON_MISMATCH}, got {on_mismatch!r}")
    for s, (m, _) in streams.items():
        if m.input_channels != CHANNELS[s]:
            raise ValueError(
                f"the {s} stream needs a model with {CHANNELS[s]} input channels; these weights "
                f"take {m.input_channels} ({'flow' if m.input_channels == 2 else 'RGB'} weights)"
            )
    if flow_fn is None:
        from i3d_jax.flow import compute_flow

        flow_fn, flow_id = compute_flow, flow_id or DEFAULT_FLOW_ID
    wanted = settings(config, streams, weights_id, flow_id or "custom flow_fn")
    wanted_fp = fingerprint(wanted)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    applies = {s: make_apply(m, config.endpoint, config.pooled) for s, (m, _) in streams.items()}
    queues: dict[str, list[tuple[_Video, int, int, np.ndarray]]] = {s: [] for s in streams}
    result = ExtractResult()
    size = config.crop_size

    todo = []
    for path in map(pathlib.Path, videos):
        dest = out_dir / output_name(path)
        if dest.is_file():
            fp, old = stored_settings(dest)
            if fp == wanted_fp:
                result.skipped.append(path.name)
                continue
            why = f"{dest} was made with other settings: {settings_diff(old, wanted)}"
            if on_mismatch == "refuse":
                result.failed.append((path.name, why + " (--on-mismatch recompute overwrites it)"))
                log(f"refusing {path}: {why}")
                continue
            log(f"recomputing {path}: {why}")
            result.recomputed.append(path.name)
        todo.append(path)
    per_window = len(streams) * CROPS[config.crops]
    total = sum(_estimate_windows(p, config, "flow" in streams) for p in todo) * per_window
    bar = tqdm(total=total or None, unit="crop", desc="features", disable=not progress,
               file=sys.stderr)  # fmt: skip

    def run_batch(stream: str) -> None:
        items = queues[stream][: config.batch_size]
        del queues[stream][: config.batch_size]
        x = [preprocess.to_float(clip) for *_, clip in items]
        x += [x[-1]] * (config.batch_size - len(x))  # one program per shape
        out = np.asarray(applies[stream](streams[stream][1], np.stack(x)), np.float32)
        for (video, w, k, _), f in zip(items, out, strict=False):
            video.features[stream][w][k] = f
            video.pending -= 1
            if video.pending == 0 and video.decoded:
                finish(video)
        bar.update(len(items))

    def finish(video: _Video) -> None:
        feats = {s: np.stack([np.stack(c) for c in video.features[s]]) for s in streams}
        arrays: dict[str, Any] = {f"features_{s}": f for s, f in feats.items()}
        if len(feats) == 1:
            arrays = {"features": next(iter(feats.values()))}
        else:
            arrays["features"] = np.concatenate([feats["rgb"], feats["flow"]], axis=-1)
        meta = dict(dataclasses.asdict(config), video=video.path.name, rgb_range=[-1.0, 1.0],
                    video_fps=video.fps)  # fmt: skip
        if "flow" in streams:
            meta["flow"] = "TV-L1 pixels clipped to [-20, 20] / 20; windows on T-1 frames"
        arrays.update(
            timestamps=np.concatenate(video.stamps),
            times=(np.asarray(video.starts, np.float64) + config.window / 2) / video.fps,
            endpoint=config.endpoint,
            weights=json.dumps(weights_id) if isinstance(weights_id, dict) else weights_id,
            stream="both" if len(streams) == 2 else next(iter(streams)),
            preprocessing=json.dumps(meta),
            settings=json.dumps(wanted, sort_keys=True),
            settings_fingerprint=wanted_fp,
        )
        _write_atomic(out_dir / output_name(video.path), arrays)
        result.written.append(video.path.name)
        video.features.clear()

    def add_window(video: _Video, start: int, inputs: dict[str, np.ndarray], n: int) -> None:
        if video.boxes is None:
            h, w = next(iter(inputs.values())).shape[1:3]
            video.boxes = clips.crop_boxes(h, w, size, config.crops)
        w_index = len(video.stamps)
        video.stamps.append(clips.window_seconds(n, [start], config.window, video.fps))
        video.starts.append(start)
        for s in streams:
            video.features.setdefault(s, []).append([None] * len(video.boxes))
            for k, box in enumerate(video.boxes):
                clip = clips.crop(inputs[s], box, size, is_flow=s == "flow")
                queues[s].append((video, w_index, k, np.ascontiguousarray(clip)))
                video.pending += 1
            while len(queues[s]) >= config.batch_size:
                run_batch(s)

    for path in todo:
        video = _Video(path)
        windows = clips.Windows(config.window, config.stride)
        try:
            video.fps = config.fps or preprocess.video_info(path)["fps"]
            if not video.fps > 0:
                raise ValueError("the container states no frame rate; pass --fps")
            for chunk in stream_inputs(path, config, streams, flow_fn):
                for start, inputs in windows.push(chunk):
                    add_window(video, start, inputs, windows.total)
                bar.set_postfix_str(f"{path.name}: {windows.total} frames decoded")
            for start, inputs in windows.finish():
                add_window(video, start, inputs, windows.total)
        except (preprocess.VideoDecodeError, FileNotFoundError, ValueError) as e:
            video.failed = True
            for s in streams:
                queues[s] = [item for item in queues[s] if item[0] is not video]
            if path.name in result.recomputed:
                result.recomputed.remove(path.name)
            result.failed.append((path.name, str(e)))
            log(f"skipping {path}: {e}")
            continue
        video.decoded = True
        if video.pending == 0:
            finish(video)
    for s in streams:
        while queues[s]:
            run_batch(s)
    bar.close()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m i3d_jax.extract_features", description=__doc__.split("\n")[0]
    )
    parser.add_argument("input", help="a video file or a directory of videos")
    parser.add_argument("--weights", help="RGB weights (anything load_pretrained reads)")
    parser.add_argument("--flow-weights", help="flow weights (for --stream flow|both)")
    parser.add_argument("--out", required=True, help="output directory (one .npz per video)")
    d = ExtractConfig()  # defaults (None: not given, the preset's or these apply)
    parser.add_argument("--preset", choices=sorted(feature_presets.PRESETS),
                        help="a field's format (i3d_jax.feature_presets); flags override it")  # fmt: skip
    parser.add_argument("--endpoint", help=f"default {d.endpoint}")
    parser.add_argument("--window", type=int, help=f"default {d.window}")
    parser.add_argument("--stride", type=int, help=f"default {d.stride}")
    parser.add_argument("--fps", type=feature_presets.parse_fps, help=f"default {d.fps}; native")
    parser.add_argument("--short-side", type=int, help=f"default {d.short_side}")
    parser.add_argument("--crop-size", type=int, help=f"default {d.crop_size}")
    parser.add_argument("--crops", choices=sorted(CROPS), help=f"default {d.crops}")
    parser.add_argument("--stream", choices=STREAMS, default="rgb")
    parser.add_argument("--pooled", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--unpooled", dest="pooled", action="store_false")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--on-mismatch", choices=ON_MISMATCH, default="recompute",
                        help="an existing output made with other settings: recompute or refuse")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    from i3d_jax.weights import load_pretrained

    try:
        given = {k: getattr(args, k) for k in ("endpoint", "window", "stride", "fps", "short_side",
                                               "crop_size", "crops", "pooled")}  # fmt: skip
        config = ExtractConfig(
            **feature_presets.resolve(args.preset, given), batch_size=args.batch_size
        )
        wanted = ["rgb", "flow"] if args.stream == "both" else [args.stream]
        sources = {"rgb": args.weights, "flow": args.flow_weights}
        for s in wanted:
            if not sources[s]:
                raise ValueError(
                    f"--stream {args.stream} needs --{'weights' if s == 'rgb' else 'flow-weights'}"
                )
        files = list_videos(args.input)
        streams = {}
        for s in wanted:
            streams[s] = load_pretrained(sources[s])
            channels = streams[s][0].input_channels
            if channels != CHANNELS[s]:
                flag = "--weights" if s == "rgb" else "--flow-weights"
                raise ValueError(
                    f"{flag} {sources[s]} takes {channels} input channels, but the {s} stream "
                    f"needs {CHANNELS[s]} ({'RGB' if s == 'rgb' else 'flow'} weights)"
                )
    except (ValueError, FileNotFoundError, RuntimeError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ids = {s: weights_identity(sources[s]) for s in wanted}
    result = extract(
        files, args.out, streams, config, ids if len(ids) > 1 else ids[wanted[0]],
        progress=not args.no_progress, on_mismatch=args.on_mismatch,
    )  # fmt: skip
    recomputed = (
        f" ({len(result.recomputed)} recomputed: other settings)" if result.recomputed else ""
    )
    print(
        f"wrote {len(result.written)}{recomputed}, skipped {len(result.skipped)} already done, "
        f"failed {len(result.failed)}"
    )
    for name, why in result.failed:
        print(f"failed: {name}: {why}", file=sys.stderr)
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
