"""Frame pairs per second of a flow dataset build: the JAX TV-L1 solver batched across videos
(`i3d_jax.data.flow_build.flow_videos`, as `data.build video_folder --config flow` runs it) vs
OpenCV's reference, on the same videos in the same process; prints one JSON line.

Videos are consecutive windows of `--frames` frames of the release's sample clip
(`i3d_jax/samples/v_CricketShot_g04_c01_rgb.gif`, 224x224) resized to each `--sizes` side, so the
motion is real. The JAX numbers exclude compilation (one warm-up video per size and batch; its
time is reported as `compile_s`; passes repeat for at least `--min-seconds`), the OpenCV ones need
none. `--build` also times the whole CLI
build (decode, flow, PNG, TFDS write) of PyAV-written clips of the last size per solver with the
default batch; it runs after the per-size runs, so the JAX program is already compiled if that
batch was among them (on CPU the default is 1, the default of `--batches` too).

    python benchmarks/flow_build.py                       # CPU defaults: sizes 32 112 224
    python benchmarks/flow_build.py --batches 1 8 16 32   # an accelerator
    python benchmarks/flow_build.py --build --build-videos 4
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pathlib
import sys
import tempfile
import time

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a clone

from i3d_jax import flow  # noqa: E402
from i3d_jax.data import build, flow_build  # noqa: E402
from i3d_jax.samples import CRICKET as GIF  # noqa: E402  (the release's sample clip)


def sample_frames(size: int, count: int, gif: pathlib.Path = GIF) -> np.ndarray:
    """`count` uint8 RGB frames `[count, size, size, 3]` of the sample clip (looped)."""
    from PIL import Image, ImageSequence

    if not gif.is_file():
        raise SystemExit(f"error: sample clip not found: {gif} (pass --gif)")
    with Image.open(gif) as img:
        frames = [
            np.asarray(f.convert("RGB").resize((size, size), Image.BILINEAR))
            for f in ImageSequence.Iterator(img)
        ]
    return np.stack([frames[i % len(frames)] for i in range(count)])


def make_videos(size: int, num_videos: int, frames: int, gif: pathlib.Path) -> list[np.ndarray]:
    """`num_videos` videos of `frames` frames each, consecutive windows of the clip."""
    clip = sample_frames(size, num_videos * frames, gif)
    return [clip[k * frames : (k + 1) * frames] for k in range(num_videos)]


def pairs_per_second(videos, settings: flow_build.FlowSettings, min_seconds: float) -> dict:
    """Warm-up on the first video (compilation), then timed passes over all of them until
    `min_seconds` have passed."""
    t0 = time.perf_counter()
    list(flow_build.flow_videos(videos[:1], settings, progress=False))
    compile_s = time.perf_counter() - t0
    pairs, seconds = 0, 0.0
    while seconds < min_seconds or pairs == 0:
        t0 = time.perf_counter()
        list(flow_build.flow_videos(videos, settings, progress=False))
        seconds += time.perf_counter() - t0
        pairs += sum(len(v) - 1 for v in videos)
    out = {"pairs": pairs, "seconds": round(seconds, 3), "pairs_per_s": round(pairs / seconds, 3)}
    if settings.solver == "jax":
        out["compile_s"] = round(compile_s, 2)
    return out


def time_build(args, solver: str, batch: int | None, root: pathlib.Path) -> dict:
    """The CLI build of the clips in `root` with one solver: wall seconds and pairs/s."""
    data_dir = tempfile.mkdtemp(prefix=f"flow_build_{solver}_", dir=root.parent)
    argv = ["video_folder", "--data_dir", data_dir, "--manual_dir", str(root), "--config", "flow"]
    argv += ["--fps", "none", "--short_side", "none", "--flow_solver", solver]
    argv += ["--flow_preset", args.preset]
    if batch is not None:
        argv += ["--flow_batch", str(batch)]
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        rc = build.main(argv)
    seconds = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"error: the {solver} build failed (exit {rc})")
    splits = json.loads(printed.getvalue().strip().splitlines()[-1])["splits"]
    pairs = sum(splits.values()) * (args.frames - 1)
    return {"pairs": pairs, "seconds": round(seconds, 2), "pairs_per_s": round(pairs / seconds, 3)}


def run_build(args) -> dict:
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
    from videos import write_video

    size = args.sizes[-1]
    with tempfile.TemporaryDirectory(prefix="flow_build_bench_") as tmp:
        root = pathlib.Path(tmp) / "videos"
        for k, video in enumerate(make_videos(size, args.build_videos, args.frames, args.gif)):
            write_video(root / "train" / f"c{k % 2}" / f"v{k}.mp4", video)
        out = {
            "size": size,
            "videos": args.build_videos,
            "jax": time_build(args, "jax", None, root),
        }
        if not args.skip_opencv:
            out["opencv"] = time_build(args, "opencv", None, root)
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 112, 224], help="frame sides")
    p.add_argument("--videos", type=int, default=3, help="videos per size")
    p.add_argument("--frames", type=int, default=5, help="frames per video (pairs = frames - 1)")
    p.add_argument("--batches", type=int, nargs="+", help="JAX pairs per batch (default: auto)")
    p.add_argument("--preset", default="default", choices=sorted(flow.PRESETS))
    p.add_argument("--min-seconds", type=float, default=3.0, help="timed passes last this long")
    p.add_argument("--skip-opencv", action="store_true")
    p.add_argument("--build", action="store_true", help="also time the CLI build per solver")
    p.add_argument("--build-videos", type=int, default=4, help="clips in the --build folder")
    p.add_argument("--gif", type=pathlib.Path, default=GIF, help="the source clip")
    args = p.parse_args(argv)
    batches = args.batches or [None]  # None: flow_build.default_batch_pairs per size
    opencv_missing = not args.skip_opencv and not flow.opencv_available()
    if opencv_missing:  # e.g. the GPU machine: the JAX numbers still come
        print("note: OpenCV's TV-L1 (cv2.optflow) is not installed; skipping it", file=sys.stderr)
        args.skip_opencv = True
    results = {}
    for size in args.sizes:
        videos = make_videos(size, args.videos, args.frames, args.gif)
        row = {}
        for batch in batches:
            settings = flow_build.FlowSettings("jax", args.preset, batch_pairs=batch)
            auto = flow_build.default_batch_pairs(size, size)
            row[f"jax_batch{batch or auto}"] = pairs_per_second(videos, settings, args.min_seconds)
        if not args.skip_opencv:
            opencv = flow_build.FlowSettings("opencv", args.preset)
            row["opencv"] = pairs_per_second(videos, opencv, args.min_seconds)
        results[str(size)] = row
        print(f"{size}x{size}: {json.dumps(row)}", file=sys.stderr)
    record = {
        "benchmark": "flow_build",
        "device": str(jax.devices()[0].device_kind),
        "backend": jax.default_backend(),
        "cpu_count": os.cpu_count(),
        "preset": args.preset,
        "videos_per_size": args.videos,
        "frames_per_video": args.frames,
        "min_seconds": args.min_seconds,
        "results": results,
        "opencv": "not installed" if opencv_missing else "skipped" if args.skip_opencv else "run",
        "command": "python benchmarks/flow_build.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
    }
    if args.build:
        record["build"] = run_build(args)
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
