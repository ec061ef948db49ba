"""Whole-video classification: a loaded I3D over every frame of a video, chunk by chunk, with
the logits of every time step averaged (the paper's test protocol); class names for the output."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from i3d_jax import clips, graph, labels, preprocess, schedules


def read_labels(
    path: str | None, num_classes: int, weights: str | os.PathLike | None = None
) -> list[str]:
    """Class names: from `path` (a file or a shipped list name), else the weights' own (see the
    module docstring), else `class_<i>`; the count must equal `num_classes`."""
    from i3d_jax.weights import KINETICS400, orbax_dir

    if path is not None:
        return labels.read(path, num_classes)
    if weights is not None and orbax_dir.is_orbax_dir(weights):
        names = orbax_dir.card_label_names(weights)
        if names is not None:
            if len(names) != num_classes:
                raise ValueError(
                    f"{weights}: the model card has {len(names)} class names for {num_classes} "
                    "classes; pass --labels"
                )
            return names
    if str(weights) == KINETICS400:
        return labels.read("kinetics400", num_classes)
    return [f"class_{i}" for i in range(num_classes)]


class Classifier:
    """Runs a loaded model over whole videos, chunk by chunk; returns time-averaged logits."""

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

    def prepare(self, frames: np.ndarray, path) -> np.ndarray:
        h, w = frames.shape[1:3]
        if min(h, w) < self.crop:
            raise preprocess.VideoDecodeError(
                path, f"frames of {h}x{w} are smaller than the {self.crop} crop (set --short_side)"
            )
        if len(frames) < self.min_frames:  # loop short videos up to the minimum clip
            frames = frames[clips.window_indices(len(frames), 0, self.min_frames)]
        box = clips.center_box(h, w, self.crop)
        return preprocess.to_float(clips.crop(frames, box, self.crop))[None]

    def __call__(self, path) -> tuple[np.ndarray, int]:
        """(logits [num_classes] averaged over all time steps, number of frames decoded)."""
        total, steps, frames = 0.0, 0, 0
        chunks = preprocess.iter_video_chunks(
            path, self.chunk, fps=self.fps, short_side=self.short_side
        )
        pending = None
        for chunk in chunks:
            frames += len(chunk)
            # A short tail is merged into the previous chunk instead of run on its own.
            if pending is not None and len(chunk) < self.min_frames:
                chunk = np.concatenate([pending, chunk])
                pending = None
            if pending is not None:
                logits = np.asarray(self._logits(self.variables, self.prepare(pending, path)))
                total, steps = total + logits.sum(0), steps + len(logits)
            pending = chunk
        if pending is None:
            raise preprocess.VideoDecodeError(path, "no frames")
        logits = np.asarray(self._logits(self.variables, self.prepare(pending, path)))
        total, steps = total + logits.sum(0), steps + len(logits)
        return total / steps, frames


def top_k(logits: np.ndarray, labels: Sequence[str], k: int) -> list[dict]:
    probs = np.asarray(jax.nn.softmax(jnp.asarray(logits, jnp.float32)))
    order = np.argsort(-logits)[:k]
    return [
        {"label": labels[i], "index": int(i), "prob": float(probs[i]), "logit": float(logits[i])}
        for i in order
    ]
