"""Whole-video classification: a loaded I3D over every frame of a video, with the logits of
every time step averaged (the paper's test protocol), exactly as one pass over the whole video
but in passes of bounded length (`segments`); class names for the output."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from i3d_jax import clips, graph, labels, preprocess, schedules
from i3d_jax.predict import segments


def read_labels(
    path: str | None, num_classes: int, weights: str | os.PathLike | None = None
) -> list[str]:
    """Class names: from `path` (a file or a shipped list name), else the weights' own (a
    converted directory's card, a training workdir's dataset classes from its `data.json`), the
    shipped Kinetics-400 list for `i3d-jax:kinetics400`, else `class_<i>`; the count must equal
    `num_classes`."""
    from i3d_jax.weights import KINETICS400, carried_labels

    if path is not None:
        return labels.read(path, num_classes)
    if weights is not None:
        carried = carried_labels(weights, num_classes)
        if carried is not None:
            return list(carried.names)
    if str(weights) == KINETICS400:
        return labels.read("kinetics400", num_classes)
    return [f"class_{i}" for i in range(num_classes)]


class Classifier:
    """Runs a loaded model over whole videos in passes of bounded length; returns the
    time-averaged logits of one pass over the whole video (`i3d_jax.predict.segments`)."""

    def __init__(self, model, variables, *, fps=25.0, short_side=256, crop=224, chunk=256):
        self.model = model.clone(final_endpoint="Logits")
        self.variables = variables
        self.fps, self.short_side, self.crop, self.chunk = fps, short_side, crop, chunk
        self.min_frames = schedules.min_frames(self.model.schedule)
        if chunk < self.min_frames:
            raise ValueError(
                f"chunk must be at least {self.min_frames} frames (the shortest clip schedule "
                f"{self.model.schedule!r} can classify), got {chunk}"
            )

        @functools.partial(jax.jit, compiler_options=graph.jit_options(self.model, train=False))
        def per_time_logits(v, clip):
            return self.model.apply(v, clip)[1]["Logits_per_time"][0]

        self._logits = per_time_logits

    @property
    def compiled_programs(self) -> int:
        """How many programs the passes compiled so far (one per pass length)."""
        return self._logits._cache_size()

    def __call__(self, path, progress=None) -> tuple[np.ndarray, int]:
        """(logits [num_classes] averaged over all time steps, number of frames decoded).

        `progress`: a tqdm-like bar; its total is set to the frames expected, and it advances
        by the frames decoded."""
        frames = max(preprocess.expected_frames(path, self.fps), 1)
        if progress is not None:
            progress.reset(total=frames)
        total, steps, decoded = self._run(path, frames, progress)
        if decoded != frames:  # the estimate was wrong: again, with the true count
            if progress is not None:
                progress.reset(total=decoded)
            total, steps, decoded = self._run(path, decoded, progress)
        return total / steps, decoded

    def per_time(self, path, progress=None) -> tuple[np.ndarray, int]:
        """(the logits of every time step of one pass over the whole video `[steps, classes]`,
        number of frames decoded); see `__call__`."""
        frames = max(preprocess.expected_frames(path, self.fps), 1)
        if progress is not None:
            progress.reset(total=frames)
        pieces: list[np.ndarray] = []
        _, _, decoded = self._run(path, frames, progress, pieces)
        if decoded != frames:
            if progress is not None:
                progress.reset(total=decoded)
            pieces = []
            _, _, decoded = self._run(path, decoded, progress, pieces)
        return np.concatenate(pieces), decoded

    def _run(
        self, path, frames: int, progress=None, pieces: list | None = None
    ) -> tuple[np.ndarray, int, int]:
        """(sum of per-time logits, time steps, frames decoded) of the passes planned for a
        video of `frames` frames; when the video has another count, the sums are not used.
        `pieces`: a list that gets each pass's kept steps `[n, classes]`, in order."""
        schedule = self.model.schedule
        plan = segments.plan(schedule, max(frames, self.min_frames), self.chunk)
        stride = segments.geometry(schedule, max(frames, self.min_frames)).stride
        window = _FrameWindow(self._chunks(path, progress))
        total, steps = 0.0, 0
        for seg in plan:
            clip = window.frames(seg.start, seg.end)
            if len(clip) < seg.end - seg.start and frames >= self.min_frames:
                return total, max(steps, 1), window.count_all()  # fewer frames than planned
            if len(clip) < self.min_frames:  # loop short videos up to the minimum clip
                clip = clip[clips.window_indices(len(clip), 0, self.min_frames)]
            logits = np.asarray(self._logits(self.variables, preprocess.to_float(clip)[None]))
            skip = seg.start // stride
            kept = logits[seg.keep_from - skip : seg.keep_to - skip]
            total, steps = total + kept.sum(0), steps + len(kept)
            if pieces is not None:
                pieces.append(kept)
        return total, steps, window.count_all()

    def _chunks(self, path, progress=None) -> Iterator[np.ndarray]:
        """The video's centre crops, uint8, in decode chunks."""
        for chunk in preprocess.iter_video_chunks(
            path, self.chunk, fps=self.fps, short_side=self.short_side
        ):
            if progress is not None:
                progress.update(len(chunk))
            h, w = chunk.shape[1:3]
            if min(h, w) < self.crop:
                raise preprocess.VideoDecodeError(
                    path,
                    f"frames of {h}x{w} are smaller than the {self.crop} crop (set --short_side)",
                )
            yield clips.crop(chunk, clips.center_box(h, w, self.crop), self.crop)


class _FrameWindow:
    """The frames [start, end) of a stream of chunks, holding only what later passes need."""

    def __init__(self, chunks: Iterator[np.ndarray]):
        self._chunks, self._held, self._first, self._seen = chunks, [], 0, 0
        self._ended = False

    def frames(self, start: int, end: int) -> np.ndarray:
        """Frames [start, end) (fewer if the stream ends); earlier frames are dropped."""
        while self._seen < end and not self._ended:
            self._pull()
        self._drop_before(start)
        held = np.concatenate(self._held) if self._held else np.zeros((0,), np.uint8)
        return held[: end - start]

    def count_all(self) -> int:
        """The stream's frame count (reads, without holding, what is left)."""
        self._held, self._first = [], self._seen
        while not self._ended:
            self._pull()
            self._held, self._first = [], self._seen
        return self._seen

    def _pull(self) -> None:
        chunk = next(self._chunks, None)
        if chunk is None:
            self._ended = True
            return
        self._held.append(chunk)
        self._seen += len(chunk)

    def _drop_before(self, start: int) -> None:
        while self._held and self._first + len(self._held[0]) <= start:
            self._first += len(self._held.pop(0))
        if self._held and self._first < start:
            self._held[0] = self._held[0][start - self._first :]
            self._first = start


def top_k(logits: np.ndarray, labels: Sequence[str], k: int) -> list[dict]:
    probs = np.asarray(jax.nn.softmax(jnp.asarray(logits, jnp.float32)))
    order = np.argsort(-logits)[:k]
    return [
        {"label": labels[i], "index": int(i), "prob": float(probs[i]), "logit": float(logits[i])}
        for i in order
    ]


def action_spans(
    probs: np.ndarray, labels: Sequence[str], fps: float, threshold: float = 0.5
) -> list[dict]:
    """The actions of a multi-label video: per class with any frame at or above `threshold` in
    `probs` (float `[frames, classes]`, per-frame sigmoid probabilities), its `spans` (each run of
    such frames as `[start, end]` seconds: the times `k / fps` of its first and last frame, the
    closed intervals of `i3d_jax.data.actions`) and `max_prob`; the most confident first."""
    out = []
    for k in range(probs.shape[1]):
        above = probs[:, k] >= threshold
        if not above.any():
            continue
        edges = np.diff(np.concatenate([[0], above.astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
        spans = [[float(a / fps), float(b / fps)] for a, b in zip(starts, ends, strict=True)]
        out.append({"label": labels[k], "index": k, "max_prob": float(probs[:, k].max()),
                    "spans": spans})  # fmt: skip
    return sorted(out, key=lambda a: -a["max_prob"])
