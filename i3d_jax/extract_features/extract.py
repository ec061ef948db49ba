"""The extraction: decode each video in chunks, cut its windows and crops, batch them through the
network (`batcher`), write each finished video's file (`writer`); see `i3d_jax.extract_features`."""

from __future__ import annotations

import json
import os
import pathlib
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
from tqdm import tqdm

from i3d_jax import clips, preprocess
from i3d_jax.extract_features import plan as plan_lib
from i3d_jax.extract_features import writer
from i3d_jax.extract_features.batcher import Batcher, VideoFeatures
from i3d_jax.extract_features.plan import ExtractResult
from i3d_jax.extract_features.settings import (
    CHANNELS,
    CROPS,
    DEFAULT_FLOW_ID,
    ON_MISMATCH,
    ExtractConfig,
    fingerprint,
    settings,
)

SECONDS = "seconds"  # the key of each frame's [start, end) seconds in `stream_inputs`' chunks


def _check(streams: dict[str, tuple[Any, Any]], on_mismatch: str) -> None:
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


def extract(
    videos: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    streams: dict[str, tuple[Any, Any]],
    config: ExtractConfig | None = None,
    weights_id: str | dict[str, str] = "",
    flow_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = lambda m: tqdm.write(m, file=sys.stderr),
    on_mismatch: str = "recompute",
    flow_id: str | None = None,
) -> ExtractResult:
    """Extracts features of `videos` into `out_dir` (see `i3d_jax.extract_features`).

    Args:
      videos: video files.
      out_dir: output directory (created); finished videos with the same settings are skipped.
      streams: `{"rgb": (model, variables)}`, `{"flow": ...}` or both.
      config: windows, crops, endpoint, batching (default `ExtractConfig()`).
      weights_id: recorded in each file and its settings (per stream when a dict).
      flow_fn: uint8 `[T, H, W, 3]` -> pixels `[T-1, H, W, 2]` (default `i3d_jax.flow`'s JAX TV-L1).
      on_mismatch: "recompute" or "refuse" a video whose output has other settings.
      flow_id: names `flow_fn` in the settings (default: the default solver's name).
    """
    _check(streams, on_mismatch)
    config = config or ExtractConfig()
    if flow_fn is None:
        from i3d_jax.flow import compute_flow

        flow_fn, flow_id = compute_flow, flow_id or DEFAULT_FLOW_ID
    names = sorted(streams)
    wanted = settings(config, names, weights_id, flow_id or "custom flow_fn")
    wanted_fp = fingerprint(wanted)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo, result = plan_lib.plan(map(pathlib.Path, videos), out_dir, wanted, wanted_fp,
                                 on_mismatch, log)  # fmt: skip
    per_window = len(streams) * CROPS[config.crops]
    estimate = sum(plan_lib.estimate_windows(p, config, "flow" in streams) for p in todo)
    bar = tqdm(total=estimate * per_window or None, unit="crop", desc="features",
               disable=not progress, file=sys.stderr)  # fmt: skip

    def write(video: VideoFeatures) -> None:
        arrays = writer.feature_arrays(video, config, names, weights_id, wanted, wanted_fp)
        arrays["source"] = json.dumps(result.sources[str(video.path)], sort_keys=True)
        writer.write_atomic(out_dir / result.outputs[str(video.path)], arrays)
        result.written.append(video.path.name)
        video.features.clear()

    batcher = Batcher(streams, config.endpoint, config.pooled, config.batch_size, write, bar.update)
    for path in todo:
        video = VideoFeatures(path)
        try:
            _queue_video(video, config, names, flow_fn, batcher, bar)
        except (preprocess.VideoDecodeError, FileNotFoundError, ValueError) as e:
            batcher.drop(video)
            if path.name in result.recomputed:
                result.recomputed.remove(path.name)
            result.failed.append((path.name, str(e)))
            log(f"skipping {path}: {e}")
            continue
        batcher.finish_video(video)
    batcher.flush()
    bar.close()
    return result


def _queue_video(
    video: VideoFeatures, config: ExtractConfig, streams: list[str], flow_fn, batcher, bar
) -> None:
    """Decodes `video` chunk by chunk and queues every crop of every window it gives."""
    info = preprocess.video_info(video.path)
    video.fps = config.fps or info["fps"]
    video.rotation = info["rotation"]
    if not video.fps > 0:
        raise ValueError("the container states no frame rate; pass --fps")
    windows = clips.Windows(config.window, config.stride)

    def queue(start: int, inputs: dict[str, np.ndarray]) -> None:
        if video.boxes is None:
            h, w = inputs[streams[0]].shape[1:3]
            video.boxes = clips.crop_boxes(h, w, config.crop_size, config.crops)
        index = len(video.stamps)
        # From the first frame's start to the last one's end, of the frames the window shows
        # (a looped window: the whole video, not past its end).
        seconds = inputs[SECONDS]
        video.stamps.append(np.array([[seconds[:, 0].min(), seconds[:, 1].max()]]))
        video.starts.append(start)
        for s in streams:
            video.features.setdefault(s, []).append([None] * len(video.boxes))
            for k, box in enumerate(video.boxes):
                clip = clips.crop(inputs[s], box, config.crop_size, is_flow=s == "flow")
                batcher.add(video, index, s, k, clip)

    status = lambda s: bar.set_postfix_str(f"{video.path.name}: {s}")  # noqa: E731
    for chunk in stream_inputs(video.path, config, streams, flow_fn, status):
        for start, inputs in windows.push(chunk):
            queue(start, inputs)
        bar.set_postfix_str(f"{video.path.name}: {windows.total} frames decoded")
    for start, inputs in windows.finish():
        queue(start, inputs)


def stream_inputs(
    path: pathlib.Path,
    config: ExtractConfig,
    streams: Iterable[str],
    flow_fn: Callable[[np.ndarray], np.ndarray],
    status: Callable[[str], None] | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Consecutive aligned chunks of each stream's input: RGB uint8 `[n, H, W, 3]`, flow float32
    `[n, H, W, 2]` in [-1, 1] (with flow, RGB frame t pairs with the flow from t to t+1), and
    `SECONDS` float64 `[n, 2]`: each frame's [start, end) in the video's seconds (from the decoded
    timestamps, `preprocess.iter_timed_chunks`; flow from t to t+1 has frame t's). `status`
    hears which pairs' flow is being computed (the long part of a flow stream)."""
    streams = set(streams)
    chunks = preprocess.iter_timed_chunks(
        path, config.chunk_frames, fps=config.fps, short_side=config.short_side
    )
    last, pairs = None, 0
    for frames, seconds in chunks:
        if "flow" not in streams:
            yield {"rgb": frames, SECONDS: seconds}
            continue
        if last is None:
            seq, seq_seconds = frames, seconds
        else:
            seq = np.concatenate([last[0][None], frames])
            seq_seconds = np.concatenate([last[1][None], seconds])
        last = frames[-1], seconds[-1]
        if len(seq) < 2:
            continue
        if status is not None:
            status(f"TV-L1 flow of pairs {pairs + 1}-{pairs + len(seq) - 1}")
        pairs += len(seq) - 1
        out = {"flow": preprocess.scale_flow(flow_fn(seq))}
        if "rgb" in streams:
            out["rgb"] = seq[:-1]
        out[SECONDS] = seq_seconds[:-1]
        yield out
    if "flow" in streams and pairs == 0:
        raise ValueError("the flow stream needs at least 2 frames; the video has 1")
