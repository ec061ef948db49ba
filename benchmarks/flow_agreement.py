"""Agreement of our TV-L1 flow with the release's flow sample; prints one JSON line.

Input: the release's RGB sample `../shared/data/v_CricketShot_g04_c01_rgb.gif` (79 frames, already
at the release's preprocessing: 25 fps, short side 256, centre 224x224 crop; a GIF, so colours are
palette-quantised). Reference: `v_CricketShot_g04_c01_flow.gif`, the release's TV-L1 flow of the
same clip drawn as x in red, y in green, 127 = zero (79 frames; its frame t is compared with our
flow from frame t to t+1, the alignment that correlates best). Our flow is computed on the 224
crop (the release computed it before cropping, so the borders can differ), clipped to +-20 px.

Per setting: Pearson correlation of x and of y with the gif (minus 127), and the least-squares
scale `s` of `s * ours_px ~= gif - 127` (gif units per pixel; the fit of ours onto theirs, so
noise pulls it under the true gain) and the ratio of standard deviations (the gain if the two
differed only by a scale).
  python benchmarks/flow_agreement.py [--pairs 16] [--settings default,fast,...] [--full NAME]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

import jax
import numpy as np
from PIL import Image, ImageSequence
from tqdm import tqdm

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from i3d_jax import flow  # noqa: E402
from i3d_jax.preprocess import FLOW_BOUND  # noqa: E402

DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
ZERO = 127.0  # the gif's value for zero flow
# The small grid of solver settings: OpenCV's defaults and one change at a time.
GRID = {
    "default": flow.DEFAULT,
    "fast": flow.FAST,
    "no_median": dataclasses.replace(flow.DEFAULT, median_filtering=1),
    "nscales3": dataclasses.replace(flow.DEFAULT, nscales=3),
    "scale0.5": dataclasses.replace(flow.DEFAULT, scale_step=0.5),
    "warps10": dataclasses.replace(flow.DEFAULT, warps=10),
    "lam0.05": dataclasses.replace(flow.DEFAULT, lam=0.05),
    "lam0.3": dataclasses.replace(flow.DEFAULT, lam=0.3),
    "theta0.5": dataclasses.replace(flow.DEFAULT, theta=0.5),
    "eps0.001": dataclasses.replace(flow.DEFAULT, epsilon=0.001),
}


def load_gif(path: pathlib.Path) -> np.ndarray:
    """All frames of a GIF as uint8 RGB `[T, H, W, 3]`."""
    with Image.open(path) as gif:
        return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(gif)])


def load_sample(data: pathlib.Path = DATA) -> tuple[np.ndarray, np.ndarray]:
    """(RGB frames uint8 `[79, 224, 224, 3]`, reference flow `[79, 224, 224, 2]` in gif units
    minus 127: x then y)."""
    rgb = load_gif(data / "v_CricketShot_g04_c01_rgb.gif")
    ref = load_gif(data / "v_CricketShot_g04_c01_flow.gif")[..., :2].astype(np.float32) - ZERO
    if rgb.shape[:3] != ref.shape[:3]:
        raise ValueError(f"RGB sample {rgb.shape} and flow sample {ref.shape} differ in size")
    return rgb, ref


def spread_pairs(n: int, total: int) -> np.ndarray:
    """`n` frame-pair indices spread evenly over `total` pairs."""
    return np.unique(np.linspace(0, total - 1, min(n, total)).round().astype(int))


def flow_of_pairs(rgb: np.ndarray, pairs: np.ndarray, backend: str, params) -> np.ndarray:
    """Flow (pixels, clipped to +-20) from frame t to t+1 for each t in `pairs`."""
    out = []
    for t in tqdm(pairs, desc=f"{backend} flow", unit="pair", leave=False):
        out.append(flow.compute_flow(rgb[t : t + 2], backend, params)[0])
    return np.clip(np.stack(out), -FLOW_BOUND, FLOW_BOUND)


def agreement(ours: np.ndarray, ref: np.ndarray) -> dict:
    """Per component: Pearson r, least-squares gain of ours onto ref, std ratio."""
    out = {}
    for c, name in enumerate("xy"):
        a, b = ours[..., c].ravel().astype(np.float64), ref[..., c].ravel().astype(np.float64)
        out[f"r_{name}"] = round(float(np.corrcoef(a, b)[0, 1]), 4)
        out[f"scale_{name}"] = round(float(a @ b / (a @ a)), 3)
        out[f"std_ratio_{name}"] = round(float(b.std() / a.std()), 3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=16, help="frame pairs for the grid")
    parser.add_argument("--settings", default=",".join(GRID), help=f"of {sorted(GRID)}")
    parser.add_argument("--full", default="", help="a setting also run on all 78 pairs")
    parser.add_argument("--opencv", action="store_true", help="also OpenCV's defaults")
    parser.add_argument("--data", type=pathlib.Path, default=DATA)
    args = parser.parse_args(argv)
    names = [s for s in args.settings.split(",") if s]
    unknown = [s for s in [*names, *([args.full] if args.full else [])] if s not in GRID]
    if unknown:
        print(
            f"error: unknown settings {unknown}; expected some of {sorted(GRID)}", file=sys.stderr
        )
        return 2
    rgb, ref = load_sample(args.data)
    total = len(rgb) - 1
    pairs = spread_pairs(args.pairs, total)
    result = {
        "benchmark": "flow_agreement",
        "clip": f"v_CricketShot_g04_c01 {rgb.shape[1]}x{rgb.shape[2]}, {len(rgb)} frames",
        "pairs": [int(p) for p in pairs],
        "device": str(jax.devices()[0].device_kind),
        "grid": {},
    }
    runs = [("jax", n, GRID[n], pairs) for n in names]
    if args.opencv:
        runs.append(("opencv", "default", flow.DEFAULT, pairs))
    if args.full:
        runs.append(("jax", args.full, GRID[args.full], np.arange(total)))
        if args.opencv:
            runs.append(("opencv", "default", flow.DEFAULT, np.arange(total)))
    for backend, name, params, idx in runs:
        t0 = time.perf_counter()
        ours = flow_of_pairs(rgb, idx, backend, params)
        row = agreement(ours, ref[idx])
        row["wall_s"] = round(time.perf_counter() - t0, 1)  # with the compile
        key = f"{backend}:{name}" + (
            ":full" if len(idx) == total and len(idx) != len(pairs) else ""
        )
        result["grid"][key] = row
        print(key, row, file=sys.stderr, flush=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
