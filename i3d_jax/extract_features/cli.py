"""`python -m i3d_jax.extract_features VIDEO_OR_DIR --weights SOURCE --out DIR [options]`:
sliding-window I3D features, one `.npz` per video (see `i3d_jax.extract_features`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from i3d_jax import cli
from i3d_jax.extract_features import presets
from i3d_jax.extract_features.extract import extract
from i3d_jax.extract_features.plan import list_videos
from i3d_jax.extract_features.settings import (
    CHANNELS,
    CROPS,
    ON_MISMATCH,
    STREAMS,
    ExtractConfig,
    weights_identity,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = cli.ArgumentParser(prog="python -m i3d_jax.extract_features", description=__doc__)
    parser.add_argument("input", help="a video file or a directory of videos")
    parser.add_argument(
        "--weights", help="RGB weights (anything load_pretrained reads, a train.py workdir)"
    )
    parser.add_argument("--flow_weights", help="flow weights (for --stream flow|both)")
    parser.add_argument("--out", required=True, help="output directory (one .npz per video)")
    d = ExtractConfig()  # defaults (None: not given, the preset's or these apply)
    parser.add_argument("--preset", choices=sorted(presets.PRESETS),
                        help="a field's format (i3d_jax.extract_features.presets); flags override it")  # fmt: skip
    parser.add_argument("--endpoint", help=f"network endpoint (default {d.endpoint})")
    parser.add_argument("--window", type=int, help=f"frames per window (default {d.window})")
    parser.add_argument("--stride", type=int, help=f"frames between windows (default {d.stride})")
    parser.add_argument("--fps", type=presets.parse_fps,
                        help=f"frames per second, or 'native' (default {d.fps})")  # fmt: skip
    parser.add_argument("--short_side", type=int, help=f"smaller side (default {d.short_side})")
    parser.add_argument("--crop_size", type=int, help=f"crop side (default {d.crop_size})")
    parser.add_argument("--crops", choices=sorted(CROPS), help=f"crops per window (default {d.crops})")  # fmt: skip
    parser.add_argument("--stream", choices=STREAMS, default="rgb", help="which stream's features")
    parser.add_argument("--pooled", action=argparse.BooleanOptionalAction, default=None,
                        help="average over time and space (default: pooled)")  # fmt: skip
    parser.add_argument("--unpooled", dest="pooled", action="store_false", help="= --no-pooled")
    parser.add_argument("--batch_size", type=int, default=d.batch_size,
                        help="crops per forward pass (memory and speed only)")  # fmt: skip
    parser.add_argument("--on_mismatch", choices=ON_MISMATCH, default="recompute",
                        help="an existing output made with other settings: recompute or refuse")  # fmt: skip
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(_extract, parse_args(argv))


def _extract(args: argparse.Namespace) -> int:
    from i3d_jax.weights import load_pretrained

    with cli.before_work():
        given = {k: getattr(args, k) for k in ("endpoint", "window", "stride", "fps", "short_side",
                                               "crop_size", "crops", "pooled")}  # fmt: skip
        config = ExtractConfig(**presets.resolve(args.preset, given), batch_size=args.batch_size)
        wanted = ["rgb", "flow"] if args.stream == "both" else [args.stream]
        sources = {"rgb": args.weights, "flow": args.flow_weights}
        flags = {"rgb": "--weights", "flow": "--flow_weights"}
        for s in wanted:
            if not sources[s]:
                raise ValueError(f"--stream {args.stream} needs {flags[s]}")
        files = list_videos(args.input)
        streams = {}
        for s in wanted:
            streams[s] = load_pretrained(sources[s])
            channels = streams[s][0].input_channels
            if channels != CHANNELS[s]:
                raise ValueError(
                    f"{flags[s]} {sources[s]} takes {channels} input channels, but the {s} "
                    f"stream needs {CHANNELS[s]} ({'RGB' if s == 'rgb' else 'flow'} weights)"
                )
    ids = {s: weights_identity(sources[s]) for s in wanted}
    result = extract(
        files, args.out, streams, config, ids if len(ids) > 1 else ids[wanted[0]],
        progress=not args.no_progress, on_mismatch=args.on_mismatch,
    )  # fmt: skip
    recomputed = (
        f" ({len(result.recomputed)} recomputed: other settings)" if result.recomputed else ""
    )
    print(
        f"wrote {len(result.written)}{recomputed}, skipped {len(result.skipped)} already done, "
        f"failed {len(result.failed)}"
    )
    for name, why in result.failed:
        print(f"failed: {name}: {why}", file=sys.stderr)
    return cli.EXIT_FAILED if result.failed else 0
