"""Agreement of the JAX TV-L1 with OpenCV's DualTVL1, whole frames and borders; prints one JSON line.

Frames: the release's RGB sample (`../shared/data/v_CricketShot_g04_c01_rgb.gif`, 79 frames of
224x224), in three views, each over its frame pairs (t, t+1):
  224x224        the clip as it is;
  150x350        each frame resized (INTER_AREA) to a non-square size that is not a multiple of 8;
  150x350_tilt4  the same, resized to 154x350 with frame t cropped at rows 4:154 and frame t+1 at
                 0:150: a camera tilt, everything 4 px down, the bottom rows' matches leave the
                 frame (the case of the border blow-up fixed on 2026-12-04).
Per view, both solvers with OpenCV's default parameters (`flow.DEFAULT`): Pearson r of x and of y
over all pixels of all pairs (pixels, not clipped), mean end-point difference, the border band's
(outer 16 px) largest |difference| of a component and 99th percentile of the end-point difference,
pixels with |flow| > 25 px, and the largest |flow|. The 224x224 view also gets the agreement with
the release's flow gif (`benchmarks/flow_agreement.py`: flow clipped to +-20 px).
  python benchmarks/flow_vs_opencv.py [--pairs 78] [--views 224x224,150x350,150x350_tilt4]
      [--opencv-cache DIR]   (OpenCV's flows kept there per view and pair count, for reruns)
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

import cv2
import jax
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import flow_agreement  # noqa: E402
from i3d_jax import flow  # noqa: E402
from i3d_jax.preprocess import FLOW_BOUND  # noqa: E402

VIEWS = ("224x224", "150x350", "150x350_tilt4")
BORDER = 16  # px: the band compared separately
BLOWUP = 25.0  # px: a flow this large is out of reach for this clip (OpenCV stays under 16)


def view_pairs(rgb: np.ndarray, view: str, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first frames, second frames) uint8 `[P, H, W, 3]` of the view's pairs."""
    if view == "224x224":
        return rgb[pairs], rgb[pairs + 1]
    tilt = 4 if view.endswith("_tilt4") else 0

    def resize(f):
        return cv2.resize(f, (350, 150 + tilt), interpolation=cv2.INTER_AREA)

    first = np.stack([resize(rgb[t])[tilt : tilt + 150] for t in pairs])
    second = np.stack([resize(rgb[t + 1])[:150] for t in pairs])
    return first, second


def solve(first: np.ndarray, second: np.ndarray, backend: str, desc: str) -> np.ndarray:
    out = [
        flow.compute_flow(np.stack([a, b]), backend, flow.DEFAULT)[0]
        for a, b in tqdm(zip(first, second, strict=True), desc=desc, total=len(first), leave=False)
    ]
    return np.stack(out)


def compare(ours: np.ndarray, ref: np.ndarray) -> dict:
    """Figures of `ours` against `ref`, both `[P, H, W, 2]` pixels."""
    out = {}
    for c, name in enumerate("xy"):
        a, b = ours[..., c].ravel().astype(np.float64), ref[..., c].ravel().astype(np.float64)
        out[f"r_{name}"] = round(float(np.corrcoef(a, b)[0, 1]), 4)
    diff = np.abs(ours - ref)
    epd = np.sqrt((diff**2).sum(-1))
    band = np.ones(ours.shape[1:3], bool)
    band[BORDER:-BORDER, BORDER:-BORDER] = False
    out["mean_epd"] = round(float(epd.mean()), 4)
    out["border_max_abs_diff"] = round(float(diff[:, band].max()), 2)
    out["border_epd_p99"] = round(float(np.percentile(epd[:, band], 99)), 3)
    out["inner_max_abs_diff"] = round(float(diff[:, ~band].max()), 2)
    out["pixels_over_25px"] = int((np.abs(ours) > BLOWUP).any(-1).sum())
    out["max_abs_flow"] = round(float(np.abs(ours).max()), 2)
    out["opencv_max_abs_flow"] = round(float(np.abs(ref).max()), 2)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=78, help="frame pairs spread over the clip")
    parser.add_argument("--views", default=",".join(VIEWS), help=f"of {list(VIEWS)}")
    parser.add_argument("--opencv-cache", type=pathlib.Path, default=None)
    parser.add_argument("--data", type=pathlib.Path, default=flow_agreement.DATA)
    args = parser.parse_args(argv)
    views = [v for v in args.views.split(",") if v]
    if unknown := sorted(set(views) - set(VIEWS)):
        print(f"error: unknown views {unknown}; expected some of {list(VIEWS)}", file=sys.stderr)
        return 2
    rgb, gif = flow_agreement.load_sample(args.data)
    pairs = flow_agreement.spread_pairs(args.pairs, len(rgb) - 1)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    result = {
        "benchmark": "flow_vs_opencv",
        "commit": commit,
        "clip": f"v_CricketShot_g04_c01, {len(pairs)} pairs",
        "device": str(jax.devices()[0].device_kind),
        "opencv": cv2.__version__,
        "views": {},
    }
    for view in views:
        first, second = view_pairs(rgb, view, pairs)
        cache = args.opencv_cache and args.opencv_cache / f"opencv_{view}_{len(pairs)}.npy"
        if cache and cache.is_file():
            ref = np.load(cache)
        else:
            ref = solve(first, second, "opencv", f"{view} opencv")
            if cache:
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.save(cache, ref)
        t0 = time.perf_counter()
        ours = solve(first, second, "jax", f"{view} jax")
        row = {"jax_s_per_pair": round((time.perf_counter() - t0) / len(pairs), 3)}
        row |= compare(ours, ref)
        if view == "224x224":
            bound = np.clip(ours, -FLOW_BOUND, FLOW_BOUND)
            row["gif"] = flow_agreement.agreement(bound, gif[pairs])
            row["opencv_gif"] = flow_agreement.agreement(
                np.clip(ref, -FLOW_BOUND, FLOW_BOUND), gif[pairs]
            )
        result["views"][view] = row
        print(view, row, file=sys.stderr, flush=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
