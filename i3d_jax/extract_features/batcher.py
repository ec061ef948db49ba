"""Crops of many videos run through the network in fixed-size batches, per stream."""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from i3d_jax import clips, graph, preprocess


@dataclasses.dataclass
class VideoFeatures:
    """One video's windows as they are computed: starts, times, crop boxes, features."""

    path: pathlib.Path
    fps: float = 0.0  # config.fps, or the video's native (average) rate
    rotation: int = 0  # degrees counter-clockwise the decoder turned the frames upright
    starts: list[int] = dataclasses.field(default_factory=list)
    boxes: list[clips.CropBox] | None = None
    stamps: list[np.ndarray] = dataclasses.field(default_factory=list)  # [1, 2] seconds a window
    features: dict[str, list[list]] = dataclasses.field(default_factory=dict)
    pending: int = 0  # crops queued and not yet computed
    decoded: bool = False  # every window queued: done once `pending` reaches 0

    @property
    def done(self) -> bool:
        return self.decoded and self.pending == 0


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


class Batcher:
    """Owns one queue of crops per stream; a full queue runs one batch (always `batch_size`
    rows: one compiled program per stream), and a video whose last crop is computed goes to
    `on_done`."""

    def __init__(
        self,
        streams: dict[str, tuple[Any, Any]],
        endpoint: str,
        pooled: bool,
        batch_size: int,
        on_done: Callable[[VideoFeatures], None],
        on_batch: Callable[[int], None] = lambda n: None,
    ):
        self.variables = {s: v for s, (_, v) in streams.items()}
        self.applies = {s: make_apply(m, endpoint, pooled) for s, (m, _) in streams.items()}
        self.batch_size, self.on_done, self.on_batch = batch_size, on_done, on_batch
        self.queues: dict[str, list[tuple[VideoFeatures, int, int, np.ndarray]]] = {
            s: [] for s in streams
        }

    def add(self, video: VideoFeatures, window: int, stream: str, crop: int, clip: np.ndarray):
        """Queues one crop (uint8 or float `[T, S, S, C]`) of a window of `video`."""
        self.queues[stream].append((video, window, crop, np.ascontiguousarray(clip)))
        video.pending += 1
        while len(self.queues[stream]) >= self.batch_size:
            self._run(stream)

    def finish_video(self, video: VideoFeatures) -> None:
        """Every window of `video` is queued: it is done when its queued crops are."""
        video.decoded = True
        if video.done:
            self.on_done(video)

    def drop(self, video: VideoFeatures) -> None:
        """Forgets a video's queued crops (it failed to decode)."""
        for s, queue in self.queues.items():
            self.queues[s] = [item for item in queue if item[0] is not video]

    def flush(self) -> None:
        for s in self.queues:
            while self.queues[s]:
                self._run(s)

    def _run(self, stream: str) -> None:
        items = self.queues[stream][: self.batch_size]
        del self.queues[stream][: self.batch_size]
        x = [preprocess.to_float(clip) for *_, clip in items]
        x += [x[-1]] * (self.batch_size - len(x))  # one program per shape
        out = np.asarray(self.applies[stream](self.variables[stream], np.stack(x)), np.float32)
        for (video, w, k, _), f in zip(items, out, strict=False):
            video.features[stream][w][k] = f
            video.pending -= 1
            if video.done:
                self.on_done(video)
        self.on_batch(len(items))
