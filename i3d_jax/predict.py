"""Classify videos: top-K classes per video with probabilities and logits.

    python -m i3d_jax.predict VIDEO... --weights i3d-jax:kinetics400 \
        [--labels kinetics400|FILE] [--top 5] [--json] [--chunk 256]
    python -m i3d_jax.predict VIDEO... --head HEAD_WORKDIR [--weights W] [--flow-weights W]

With `--head`, the videos are classified by a temporal head trained with `train.py` over I3D
window features (`i3d_jax.predict_head`): features are extracted over each whole video exactly
as the head's training features were (settings read from its data; the weights too unless
given), the head runs over the sequence; class names are its training classes. `--fps`,
`--short_side`, `--crop` and `--chunk` are the network path's: with `--head` the head's recorded
settings decide.

Class names: `--labels` (a file, one name per line, or a shipped list `kinetics400` /
`kinetics600`); by default the names stored in a converted directory's model card
(`python -m i3d_jax.convert --labels`), the shipped Kinetics-400 list for `i3d-jax:kinetics400`,
else `class_<i>`. Arguments, weights and labels are checked before any video is decoded; a bad
one prints `error: ...` and exits with status 2.

Each video goes through the input contract of `i3d_jax.preprocess` (25 fps, smaller side 256,
centre 224 crop, [-1, 1]) and the network runs fully convolutionally over its whole length, the
paper's test protocol: the logits of every time step are averaged. Videos longer than `--chunk`
frames are decoded and run in consecutive chunks (never the whole video in memory); the per-time
logits of all chunks are averaged, weighted by time steps, which differs from one pass only at
the chunk borders. Videos shorter than the schedule's minimum clip are looped up to it.

An unreadable or empty video prints an error for that file and the others still run; the exit
status is 1 if any video failed.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from i3d_jax import clips, graph, labels, predict_head, preprocess, schedules


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m i3d_jax.predict", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("videos", nargs="+", help="video files (any FFmpeg format, or GIF)")
    parser.add_argument("--weights", help="i3d-jax:kinetics400 or a weights path")
    parser.add_argument("--head", help="a temporal head's workdir (train.py, task=features)")
    parser.add_argument("--flow-weights", help="--head: the flow stream's weights")
    parser.add_argument(
        "--labels", default=None, help="kinetics400, kinetics600 or a file of class names"
    )
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="one JSON object per video")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--short_side", type=int, default=256)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--chunk", type=int, default=256, help="frames per forward pass")
    args = parser.parse_args(argv)
    for name, low in (("top", 1), ("chunk", 1), ("crop", 1), ("short_side", 1)):
        if getattr(args, name) < low:
            parser.error(f"--{name} must be >= {low}, got {getattr(args, name)}")
    if not args.fps > 0:
        parser.error(f"--fps must be > 0, got {args.fps}")
    if not args.weights and not args.head:
        parser.error("--weights is required (or --head)")
    if args.short_side < args.crop:
        parser.error(f"--short_side {args.short_side} is smaller than --crop {args.crop}")

    from i3d_jax.weights import load_pretrained

    if args.head:
        return _main_head(args)
    try:
        model, variables = load_pretrained(args.weights)
        names = read_labels(args.labels, model.num_classes, args.weights)
        classify = Classifier(
            model, variables, fps=args.fps, short_side=args.short_side, crop=args.crop,
            chunk=args.chunk,
        )  # fmt: skip
    except (ValueError, FileNotFoundError, RuntimeError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = 0
    bar = tqdm(args.videos, unit="video", disable=len(args.videos) < 2, file=sys.stderr)
    for path in bar:
        try:
            logits, frames = classify(path)
        except (OSError, ValueError) as err:  # VideoDecodeError is a ValueError
            failed += 1
            tqdm.write(f"error: {path}: {err}", file=sys.stderr)
            continue
        report(path, logits, names, args, frames=frames)
    if failed:
        print(f"{failed} of {len(args.videos)} videos failed", file=sys.stderr)
    return 1 if failed else 0


def report(path, logits: np.ndarray, names: Sequence[str], args, **counts: int) -> None:
    """Prints a video's top classes (a JSON line with `--json`)."""
    top = top_k(logits, names, args.top)
    if args.json:
        record = {"video": str(path), **counts, "top": top,
                  "logits_norm": float(np.linalg.norm(logits))}  # fmt: skip
        tqdm.write(json.dumps(record), file=sys.stdout)
    else:
        what = ", ".join(f"{v} {k}" for k, v in counts.items())
        tqdm.write(f"{path} ({what})", file=sys.stdout)
        for t in top:
            tqdm.write(f"  {t['prob']:.4f}  {t['logit']:8.3f}  {t['label']}", file=sys.stdout)


def _main_head(args) -> int:
    """`--head`: features over whole videos, then the head (see `i3d_jax.predict_head`)."""
    try:
        run = predict_head.load_run(args.head)
        names = run.label_names
        if args.labels is not None:
            names = labels.read(args.labels, run.config.model.num_classes)
        classify = predict_head.HeadClassifier(run, args.weights, args.flow_weights)
    except (ValueError, FileNotFoundError, RuntimeError, ImportError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    results = classify(args.videos, progress=len(args.videos) > 1)
    failed = 0
    for path, res in results.items():
        if isinstance(res, str):
            failed += 1
            print(f"error: {path}: {res}", file=sys.stderr)
            continue
        report(path, res[0], names, args, windows=res[1])
    if failed:
        print(f"{failed} of {len(args.videos)} videos failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
