"""``python -m i3d_jax.fvd REAL GENERATED [options]``: FVD of two sets, protocol printed beside it.

REAL and GENERATED are directories of videos or ``.npz`` files holding uint8 ``[N, T, H, W, 3]``.
Prints one JSON line (value, protocol, per-set clip and skip counts) and one human line. Unreadable
videos are skipped and listed on stderr unless ``--strict``; too-short videos, sets of fewer than
two clips and bad arguments are errors before the network runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import warnings
from collections.abc import Sequence

from i3d_jax import cli
from i3d_jax.fvd import distance as fvd_lib
from i3d_jax.fvd.clips import RESIZES, SAMPLINGS, load_video_set
from i3d_jax.weights import KINETICS400, detect_format


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    d = fvd_lib.Protocol()
    p = cli.ArgumentParser(prog="python -m i3d_jax.fvd", description=__doc__)
    p.add_argument("real", help="directory of videos or .npz of uint8 [N, T, H, W, 3]")
    p.add_argument("generated", help="same, for the generated set")
    p.add_argument("--weights", default=d.weights, help="I3D weights (protocol: %(default)s)")
    p.add_argument("--num_frames", type=_positive, default=d.num_frames, help="clip length")
    p.add_argument("--frame_stride", type=_positive, default=d.frame_stride, help="subsampling")
    p.add_argument(
        "--sampling",
        choices=SAMPLINGS,
        default=d.sampling,
        help="clip start: first frame, seeded random, or random for real only (StyleGAN-V)",
    )
    p.add_argument("--clips_per_video", type=_positive, default=d.clips_per_video,
                   help="clips taken from each video")  # fmt: skip
    p.add_argument("--num_clips", type=_positive, default=None, help="clips per set (default all)")
    p.add_argument("--seed", type=int, default=d.seed, help="for random clip starts")
    p.add_argument("--resize", choices=RESIZES, default=d.resize,
                   help="tf1: TF1 resize_bilinear (the reference); half-pixel: half-pixel centres")  # fmt: skip
    p.add_argument("--covariance", choices=("N-1", "N"), default=d.covariance,
                   help="covariance divided by N-1 (the reference) or N (StyleGAN-V)")  # fmt: skip
    p.add_argument("--batch_size", type=_positive, default=8, help="clips per forward pass")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable video")
    p.add_argument(
        "--cache_dir", default=None, help="stats cache (default $I3D_JAX_CACHE/fvd_stats)"
    )
    p.add_argument("--no_cache", action="store_true", help="neither read nor write the stats cache")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(_fvd, parse_args(argv))


def _fvd(args: argparse.Namespace) -> int:
    with cli.before_work():
        protocol = fvd_lib.Protocol(
            weights=args.weights,
            num_frames=args.num_frames,
            frame_stride=args.frame_stride,
            sampling=args.sampling,
            clips_per_video=args.clips_per_video,
            num_clips=args.num_clips,
            seed=args.seed,
            resize=args.resize,
            covariance=args.covariance,
        )
        if args.weights != KINETICS400 and not os.path.exists(args.weights):
            raise FileNotFoundError(f"weights not found: {args.weights}")
        detect_format(args.weights)  # an unknown weights format fails before any work
        real, generated = load_video_set(args.real), load_video_set(args.generated)
    cache = None if args.no_cache else (args.cache_dir or fvd_lib.default_cache_dir())
    reports: list[fvd_lib.SetReport] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = fvd_lib.fvd(
            real,
            generated,
            protocol=protocol,
            cache_dir=cache,
            batch_size=args.batch_size,
            strict=args.strict,
            progress=not args.no_progress,
            reports=reports,
        )
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    for r in reports:
        if r.cached:
            print(f"{r.role}: statistics read from the cache {r.cached} (--no_cache recomputes)",
                  file=sys.stderr)  # fmt: skip
        for name, reason in r.skipped.items():
            print(f"warning: {r.role}: skipped {name}: {reason}", file=sys.stderr)
    sets = {
        r.role: {
            "videos": r.videos,
            "clips": r.clips,
            "skipped": len(r.skipped),
            "cached": r.cached,
        }
        for r in reports
    }
    print(
        json.dumps(
            {
                "fvd": value,
                "protocol_name": protocol.name,
                "protocol": dataclasses.asdict(protocol),
                **sets,
            }
        )
    )
    counts = "; ".join(
        f"{r.role}: {r.clips} clips from {r.videos} videos"
        + (f", {len(r.skipped)} skipped" if r.skipped else "")
        for r in reports
    )
    print(f"FVD = {value:.4f}  ({counts}; protocol {protocol.describe()})")
    return 0
