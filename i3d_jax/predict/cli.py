"""Classify videos: top-K classes per video with probabilities and logits.

    python -m i3d_jax.predict VIDEO... --weights i3d-jax:kinetics400 \
        [--labels kinetics400|FILE] [--top 5] [--json] [--chunk 256]
    python -m i3d_jax.predict VIDEO... --weights RUN    # a train.py workdir (fine-tuned I3D)
    python -m i3d_jax.predict VIDEO... --head HEAD_WORKDIR [--weights W] [--flow_weights W]

With `--head`, the videos are classified by a temporal head trained with `train.py` over I3D
window features (`i3d_jax.predict.head`): features are extracted over each whole video exactly
as the head's training features were (settings read from its data; the weights too unless
given), the head runs over the sequence; class names are its training classes. `--fps`,
`--short_side`, `--crop` and `--chunk` are the network path's: with `--head` the head's recorded
settings decide.

`--weights` is anything `i3d_jax.load_pretrained` reads, a training run included: `RUN` (the
workdir of an I3D `train.py` run: its best checkpoint, else its latest), `RUN/best/<step>` or
`RUN/checkpoints/<step>`; the network is the run's model, rebuilt from its `config.json`.

Class names: `--labels` (a file, one name per line, or a shipped list `kinetics400` /
`kinetics600`); by default the names stored in a converted directory's model card
(`python -m i3d_jax.convert --labels`), a workdir's dataset classes (its `data.json`), the
shipped Kinetics-400 list for `i3d-jax:kinetics400`, else `class_<i>`. Arguments, weights and labels are checked before any video is decoded; a bad
one prints `error: ...` and exits with status 2.

Each video goes through the input contract of `i3d_jax.preprocess` (25 fps, smaller side 256,
centre 224 crop, [-1, 1]) and the network runs fully convolutionally over its whole length, the
paper's test protocol: the logits of every time step are averaged. Long videos are decoded and
run in passes of `--chunk` frames plus the receptive field's margins (never the whole video in
memory) that give exactly the one pass's logits (`i3d_jax.predict.segments`): `--chunk` changes
memory and speed, never the result. Videos shorter than the schedule's minimum clip are looped
up to it.

A multi-label run (`--weights RUN` of `config.task = "multilabel"`, e.g. configs/charades_rgb.py)
prints, per video, the actions whose per-frame probability (sigmoid of the per-frame logits,
upsampled over time as in training) reaches `--threshold`, the most confident first, each with
its maximum probability and time spans in seconds (first and last frame above the threshold);
`--top` does not apply. Charades descriptions: `--labels Charades_v1_classes.txt`.

An unreadable or empty video prints an error for that file and the others still run; the exit
status is 1 if any video failed.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from i3d_jax import cli, labels, preprocess
from i3d_jax.predict.classify import Classifier, action_spans, read_labels, top_k


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = cli.ArgumentParser(prog="python -m i3d_jax.predict", description=__doc__)
    parser.add_argument("videos", nargs="+",
                        help="video files (any FFmpeg format, or GIF) or folders of them")  # fmt: skip
    parser.add_argument(
        "--weights", help="i3d-jax:kinetics400, a weights path or a train.py workdir"
    )
    parser.add_argument("--head", help="a temporal head's workdir (train.py, task=features)")
    parser.add_argument("--flow_weights", help="--head: the flow stream's weights")
    parser.add_argument(
        "--labels", default=None, help="kinetics400, kinetics600 or a file of class names"
    )
    parser.add_argument("--top", type=int, default=5, help="classes printed per video")
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="multi-label runs: the per-frame probability an action's frames reach",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per video")
    parser.add_argument("--fps", type=float, default=25.0, help="frames per second decoded")
    parser.add_argument("--short_side", type=int, default=256, help="smaller side resized to")
    parser.add_argument("--crop", type=int, default=224, help="centre crop size")
    parser.add_argument(
        "--chunk",
        type=int,
        default=256,
        help="frames kept per forward pass (memory only: the result is that of one pass)",
    )
    args = parser.parse_args(argv)
    for name, low in (("top", 1), ("chunk", 1), ("crop", 1), ("short_side", 1)):
        if getattr(args, name) < low:
            parser.error(f"--{name} must be >= {low}, got {getattr(args, name)}")
    if not args.fps > 0:
        parser.error(f"--fps must be > 0, got {args.fps}")
    if not 0 < args.threshold < 1:
        parser.error(f"--threshold must be a probability in (0, 1), got {args.threshold}")
    if not args.weights and not args.head:
        parser.error("--weights is required (or --head)")
    if args.short_side < args.crop:
        parser.error(f"--short_side {args.short_side} is smaller than --crop {args.crop}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return cli.run(_predict_head if args.head else _predict, args)


def expand_folders(paths: Sequence[str]) -> list[str]:
    """Each folder replaced by its video files (sorted); files, even missing ones, kept (a
    missing file is reported with the others' results)."""
    out = []
    for p in paths:
        if pathlib.Path(p).is_dir():
            with cli.before_work():
                out += [str(f) for f in preprocess.list_videos(p)]
        else:
            out.append(p)
    return out


def _predict(args: argparse.Namespace) -> int:
    from i3d_jax.weights import load_pretrained
    from i3d_jax.weights.workdir import MULTILABEL_TASK, task_of

    args.videos = expand_folders(args.videos)
    with cli.before_work():
        multilabel = task_of(args.weights) == MULTILABEL_TASK
        model, variables = load_pretrained(args.weights)
        names = read_labels(args.labels, model.num_classes, args.weights)
        classify = Classifier(
            model, variables, fps=args.fps, short_side=args.short_side, crop=args.crop,
            chunk=args.chunk,
        )  # fmt: skip
    failed = 0
    bar = tqdm(args.videos, unit="video", disable=len(args.videos) < 2, file=sys.stderr)
    for path in bar:
        # A bar of the video's frames, removed before its result prints.
        with tqdm(unit="frame", leave=False, file=sys.stderr, desc=pathlib.Path(path).name,
                  position=1 if len(args.videos) > 1 else 0) as frames_bar:  # fmt: skip
            try:
                run = classify.per_time if multilabel else classify
                logits, frames = run(path, frames_bar)
            except (OSError, ValueError) as err:  # VideoDecodeError is a ValueError
                logits, frames = None, err
        if logits is None:
            failed += 1
            tqdm.write(f"error: {path}: {frames}", file=sys.stderr)
            continue
        if multilabel:
            report_actions(path, frame_probs(logits, frames, classify.min_frames), names, args)
        else:
            report(path, logits, names, args, frames=frames)
    return _failures(failed, len(args.videos))


def _failures(failed: int, total: int) -> int:
    if failed:
        print(f"{failed} of {total} videos failed", file=sys.stderr)
    return cli.EXIT_FAILED if failed else 0


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


def frame_probs(per_time: np.ndarray, frames: int, min_frames: int) -> np.ndarray:
    """Per-frame probabilities `[frames, classes]` of a whole video's per-time logits: upsampled
    over time as the multi-label task trains them (over the looped clip of a video shorter than
    the network's minimum), then the sigmoid."""
    import jax
    import jax.numpy as jnp

    from i3d_jax.training.tasks.multilabel import upsample_time

    up = upsample_time(jnp.asarray(per_time, jnp.float32)[None], max(frames, min_frames))
    return np.asarray(jax.nn.sigmoid(up[0, :frames]))


def report_actions(path, probs: np.ndarray, names: Sequence[str], args) -> None:
    """Prints a multi-label video's actions above `args.threshold` (a JSON line with `--json`)."""
    found = action_spans(probs, names, args.fps, args.threshold)
    if args.json:
        record = {"video": str(path), "frames": len(probs), "threshold": args.threshold,
                  "actions": found}  # fmt: skip
        tqdm.write(json.dumps(record), file=sys.stdout)
        return
    tqdm.write(f"{path} ({len(probs)} frames; actions at probability >= {args.threshold})",
               file=sys.stdout)  # fmt: skip
    for a in found:
        spans = ", ".join(f"{s:.2f}-{e:.2f} s" for s, e in a["spans"])
        tqdm.write(f"  {a['max_prob']:.4f}  {a['label']}  {spans}", file=sys.stdout)
    if not found:
        tqdm.write("  (none)", file=sys.stdout)


def _predict_head(args: argparse.Namespace) -> int:
    """`--head`: features over whole videos, then the head (see `i3d_jax.predict.head`)."""
    from i3d_jax.predict import head

    args.videos = expand_folders(args.videos)
    with cli.before_work():
        run = head.load_run(args.head)
        names = run.label_names
        if args.labels is not None:
            names = labels.read(args.labels, run.config.model.num_classes)
        classify = head.HeadClassifier(run, args.weights, args.flow_weights)
    results = classify(args.videos, progress=len(args.videos) > 1)
    failed = 0
    for path, res in results.items():
        if isinstance(res, str):
            failed += 1
            print(f"error: {path}: {res}", file=sys.stderr)
            continue
        report(path, res[0], names, args, windows=res[1])
    return _failures(failed, len(args.videos))
