"""`python -m i3d_jax.flow VIDEO --out FLOW.npz`: TV-L1 flow of a whole video, in bounded memory.

The video is decoded in chunks (`i3d_jax.preprocess.iter_video_chunks`, 25 fps and short side
256 by default); each chunk's pairs (with the previous chunk's last frame) go through
`i3d_jax.flow.compute_flow`, a progress bar counts pairs, and the results are appended to raw
files beside the output, which are then wrapped into a deflate-compressed `.npz` without loading
them. Output: `flow` float32 `[T-1, H, W, 2]` pixels (x, y) from frame t to t+1 and `meta`
(JSON: backend, solver parameters, fps, short side, rotation); with `--scaled` also
`flow_scaled`, the network's input (clipped to +-20, divided by 20: `preprocess.scale_flow`).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import pathlib
import shutil
import sys
import zipfile
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from i3d_jax import cli, flow, preprocess

CHUNK_FRAMES = 32


class NpzStreamWriter:
    """Builds a `.npz` (deflate, level 1) whose arrays are appended in pieces along axis 0."""

    def __init__(self, dest: pathlib.Path, names: Sequence[str]):
        self.dest = dest
        self.raw = {n: dest.with_name(f".{dest.name}.{n}.raw") for n in names}
        self.files = {n: open(p, "wb") for n, p in self.raw.items()}  # noqa: SIM115
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.length = {n: 0 for n in names}

    def append(self, name: str, x: np.ndarray) -> None:
        x = np.ascontiguousarray(x, np.float32)
        if self.shapes.setdefault(name, x.shape[1:]) != x.shape[1:]:
            raise ValueError(f"{name}: piece of shape {x.shape} after {self.shapes[name]}")
        self.files[name].write(x.tobytes())
        self.length[name] += len(x)

    def close(self, extra: dict[str, np.ndarray]) -> None:
        """Writes `dest` (atomically: a temporary name, then a rename) and removes the pieces."""
        for f in self.files.values():
            f.close()
        tmp = self.dest.with_name(f".{self.dest.name}.tmp")
        with zipfile.ZipFile(
            tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True, compresslevel=1
        ) as zf:
            for name, raw in self.raw.items():
                shape = (self.length[name], *self.shapes[name])
                with zf.open(f"{name}.npy", "w", force_zip64=True) as out, open(raw, "rb") as src:
                    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
                    np.lib.format.write_array_header_2_0(out, header)
                    shutil.copyfileobj(src, out, 1 << 24)
            for name, value in extra.items():
                buf = io.BytesIO()
                np.save(buf, value)
                zf.writestr(f"{name}.npy", buf.getvalue())
        os.replace(tmp, self.dest)
        self.discard()

    def discard(self) -> None:
        for f in self.files.values():
            f.close()
        for p in self.raw.values():
            p.unlink(missing_ok=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = cli.ArgumentParser(prog="python -m i3d_jax.flow", description=__doc__)
    parser.add_argument("video", help="a video file PyAV can decode")
    parser.add_argument("--out", required=True, help="output .npz (flow, meta)")
    parser.add_argument("--scaled", action="store_true",
                        help="also store flow_scaled (clip to +-20, / 20: the network's input)")  # fmt: skip
    parser.add_argument("--backend", choices=flow.BACKENDS, default="jax",
                        help="jax: the JAX TV-L1 (any device); opencv: OpenCV's Dual TV-L1")  # fmt: skip
    parser.add_argument("--fast", action="store_true", help="fewer iterations (preset 'fast')")
    parser.add_argument("--fps", type=float, default=25.0, help="frames per second decoded")
    parser.add_argument("--short_side", type=int, default=256, help="smaller side resized to")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="frame pairs per solver call (speed only; default 1 on CPU, 8 else)")  # fmt: skip
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if not args.fps > 0:
        parser.error(f"--fps must be > 0, got {args.fps}")
    if args.short_side < 1 or (args.batch_size is not None and args.batch_size < 1):
        parser.error("--short_side and --batch_size must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(_flow, parse_args(argv))


def _flow(args: argparse.Namespace) -> int:
    if args.backend == "opencv" and not flow.opencv_available():
        raise cli.UsageError("--backend opencv needs opencv-contrib-python-headless")
    out = pathlib.Path(args.out)
    if not out.parent.is_dir():
        raise cli.UsageError(f"the folder of --out {out} does not exist")
    params = flow.FAST if args.fast else flow.DEFAULT
    with cli.before_work():
        info = preprocess.video_info(args.video)
    estimate = max(int(round(info["duration"] * args.fps)) - 1, 0) or None
    chunks = preprocess.iter_video_chunks(
        args.video, CHUNK_FRAMES, fps=args.fps, short_side=args.short_side
    )
    writer = NpzStreamWriter(out, ("flow", "flow_scaled") if args.scaled else ("flow",))
    bar = tqdm(total=estimate, unit="pair", desc=f"flow ({args.backend})",
               disable=args.no_progress, file=sys.stderr)  # fmt: skip
    last, frames_seen = None, 0
    try:
        for frames in chunks:
            frames_seen += len(frames)
            seq = frames if last is None else np.concatenate([last[None], frames])
            last = frames[-1]
            if len(seq) < 2:
                continue
            pixels = flow.compute_flow(seq, args.backend, params, args.batch_size, bar.update)
            writer.append("flow", pixels)
            if args.scaled:
                writer.append("flow_scaled", preprocess.scale_flow(pixels))
        if frames_seen < 2:
            raise ValueError(
                f"{args.video} decodes to {frames_seen} frame at {args.fps} fps; optical "
                "flow needs at least 2"
            )
    except BaseException:
        writer.discard()
        raise
    finally:
        bar.close()
    meta = {
        "backend": args.backend,
        "params": dataclasses.asdict(params),
        "fps": args.fps,
        "short_side": args.short_side,
        "rotation": info["rotation"],  # degrees the frames were turned upright by
        "layout": "[T-1, H, W, 2] (x, y) pixels from frame t to t+1",
        "scaled": "clip to [-20, 20], divide by 20",
    }
    shape = (writer.length["flow"], *writer.shapes["flow"])
    writer.close({"meta": np.array(json.dumps(meta))})
    print(f"wrote {args.out}: flow {shape}, backend {args.backend}")
    return 0
