"""Dataset-build rates: the RGB `video_folder` build (decode, resize to 256, JPEG, TFDS write)
sequential and on Beam's DirectRunner with 1 and 2 workers (processes and threads), on real H.264 videos of
Kinetics-like size (10 s, 30 fps, 360p and 720p, PyAV/libx264-written); and the flow pre-pass
(`flow_build.flow_videos`, JAX TV-L1) in frame pairs per second on 1 device and on every local
device (8 virtual CPU devices here). Prints one JSON line.

Per video and per core: `videos_per_s` is wall-clock; `cpu_s_per_video` counts the CPU seconds of
this process and its children (Beam's workers, PyAV's decode threads), so `videos_per_core_s =
1 / cpu_s_per_video` is the rate one core sustains; a build on N cores runs at most N times that.
A Beam build has a fixed start-up (worker processes importing the project, the pipeline's
set-up): each Beam row also builds a folder of one video, and `marginal` is the N-video build less
that one, per further video (what a build of many videos pays per video).

    python benchmarks/build.py                        # 3 videos per size (about 4 minutes here)
    python benchmarks/build.py --videos 2 --sizes 360
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import shutil
import sys
import tempfile
import time

# Before JAX starts: 8 virtual CPU devices for the flow part (an accelerator ignores this).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a clone
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))

import numpy as np  # noqa: E402

SIZES = {360: (360, 640), 720: (720, 1280)}


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _scene(t: int, h: int, w: int, seed: int) -> np.ndarray:
    """One frame of a moving scene: a smooth textured background panning, and three moving discs."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // 16 + 2, w // 16 + 2, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    shift = 2 * t
    bg = small[(yy // 16) % small.shape[0], ((xx + shift) // 16) % small.shape[1]]
    frame = 0.6 * bg + 40 * np.sin((xx + 3 * t) / 23.0)[..., None]
    for k in range(3):
        cy = h / 2 + h / 3 * np.sin(t / (9.0 + k) + k)
        cx = w / 2 + w / 3 * np.cos(t / (7.0 + k) + 2 * k)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < (h / 10) ** 2
        frame[disc] = (50 + 60 * k, 200 - 50 * k, 90)
    return np.clip(frame, 0, 255).astype(np.uint8)


def write_videos(root: pathlib.Path, sizes, count: int, seconds: float, fps: int) -> list:
    """`count` videos per size under root/train/<size>p/, H.264 (libx264, crf 23); reused."""
    import av

    paths = []
    for size in sizes:
        h, w = SIZES[size]
        for k in range(count):
            path = root / "train" / f"c{size}p" / f"v{k}.mp4"
            paths.append(path)
            if path.is_file():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.mp4")
            with av.open(str(tmp), "w") as out:
                stream = out.add_stream("libx264", rate=fps)
                stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                stream.options = {"crf": "23", "preset": "veryfast"}
                for t in range(int(seconds * fps)):
                    frame = av.VideoFrame.from_ndarray(_scene(t, h, w, seed=size + k), "rgb24")
                    out.mux(stream.encode(frame))
                out.mux(stream.encode())
            tmp.rename(path)
    return paths


def time_rgb_build(folder, beam_workers: int | None, mode: str = "multi_processing") -> dict:
    """One RGB build of `folder` (smaller side 256, 25 fps) in a fresh data_dir; on Beam's
    DirectRunner with `beam_workers` workers in running `mode`, or sequential (None)."""
    from i3d_jax.data.video_folder import VideoFolder

    data_dir = tempfile.mkdtemp(prefix="bench_build_")
    options = None
    if beam_workers is not None:
        options = (f"runner=DirectRunner,direct_num_workers={beam_workers},"
                   f"direct_running_mode={mode},default_sdk_harness_log_level=WARNING")  # fmt: skip
    try:
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        builder = VideoFolder(folder=folder, data_dir=data_dir, beam_options=options)
        builder.download_and_prepare()
        wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
        videos = builder.info.splits["train"].num_examples
        frames = sum(len(f) for f in _frames_per_video(builder))
        size = sum(p.stat().st_size for p in pathlib.Path(builder.data_dir).glob("*array_record*"))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return {
        "videos": videos,
        "frames": frames,
        "wall_s": round(wall, 2),
        "videos_per_s": round(videos / wall, 3),
        "frames_per_s": round(frames / wall, 1),
        "cpu_s_per_video": round(cpu / videos, 2),
        "videos_per_core_s": round(videos / cpu, 3),
        "frames_per_core_s": round(frames / cpu, 1),
        "bytes_per_frame": round(size / frames),
    }


def _with_marginal(many: dict, one: dict) -> dict:
    """`many`'s row, with the one-video build's wall time and the rates per further video."""
    videos, frames = many["videos"] - one["videos"], many["frames"] - one["frames"]
    wall = many["wall_s"] - one["wall_s"]
    cpu = many["cpu_s_per_video"] * many["videos"] - one["cpu_s_per_video"] * one["videos"]
    many["one_video_wall_s"] = one["wall_s"]
    many["marginal"] = {
        "videos_per_s": round(videos / wall, 3),
        "frames_per_s": round(frames / wall, 1),
        "cpu_s_per_video": round(cpu / videos, 2),
        "videos_per_core_s": round(videos / cpu, 3),
        "frames_per_core_s": round(frames / cpu, 1),
    }
    return many


def _frames_per_video(builder):
    from i3d_jax.data import schema

    src = builder.as_data_source("train", deserialize_method=schema.RAW_DESERIALIZE)
    return [src[i]["video"] for i in range(len(src))]


def time_flow(paths, frames: int, short_side: int, repeats: int) -> dict:
    """Pairs per second of the flow pre-pass on 1 device and on every local device."""
    import jax

    from i3d_jax import preprocess
    from i3d_jax.data import flow_build

    videos = [preprocess.load_video(str(p), short_side=short_side, max_frames=frames)
              for p in paths]  # fmt: skip
    pairs = sum(len(v) - 1 for v in videos)
    settings = flow_build.FlowSettings()
    out = {"pairs": pairs, "frame_size": list(videos[0].shape[1:3]), "preset": "default"}
    results = {}
    for name, devices in (("1_device", jax.local_devices()[:1]), ("all", jax.local_devices())):

        def run(devices=devices):
            return list(flow_build.flow_videos(videos, settings, progress=False, devices=devices))

        t0 = time.perf_counter()
        results[name] = run()  # compiles
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(repeats):
            run()
        wall = (time.perf_counter() - t0) / repeats
        out[name] = {"devices": len(devices), "pairs_per_s": round(pairs / wall, 2),
                     "first_pass_s": round(compile_s, 1)}  # fmt: skip
    out["same_flow"] = all(
        np.array_equal(a, b) for a, b in zip(results["1_device"], results["all"], strict=True)
    )
    out["backend"] = jax.default_backend()
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, default=3, help="videos per size")
    p.add_argument("--sizes", type=int, nargs="+", default=[360, 720], choices=sorted(SIZES))
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Beam worker counts")
    p.add_argument("--modes", nargs="+", default=["multi_processing", "multi_threading"],
                   choices=["multi_processing", "multi_threading", "in_memory"],
                   help="DirectRunner running modes")  # fmt: skip
    p.add_argument("--videos_dir", default=os.path.join(tempfile.gettempdir(), "i3d_bench_videos"))
    p.add_argument("--flow_frames", type=int, default=9, help="frames per video for the flow part")
    p.add_argument("--flow_short_side", type=int, default=64)
    p.add_argument("--flow_repeats", type=int, default=2)
    p.add_argument("--no_flow", action="store_true", help="skip the flow pre-pass part")
    p.add_argument("--no_rgb", action="store_true", help="skip the RGB build part")
    args = p.parse_args(argv)

    row = {"benchmark": "build", "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}
    root = pathlib.Path(args.videos_dir)
    for size in [] if args.no_rgb else args.sizes:
        folder = root / f"{size}p"
        paths = write_videos(folder, [size], args.videos, args.seconds, args.fps)
        one = root / f"{size}p_one" / "train" / paths[0].parent.name / paths[0].name
        if not one.is_file():
            one.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(paths[0], one)
        mb = sum(q.stat().st_size for q in paths) / len(paths) / 1e6
        beam = {}
        for mode in args.modes:
            for n in args.workers:
                many = time_rgb_build(folder, n, mode)
                one_row = time_rgb_build(one.parents[2], n, mode)
                beam[f"beam_{mode}_{n}"] = _with_marginal(many, one_row)
        row[f"rgb_{size}p"] = {
            "source_mb_per_video": round(mb, 2),
            "sequential": time_rgb_build(folder, None),
            **beam,
        }
    if not args.no_flow:
        paths = write_videos(root / f"{args.sizes[0]}p", [args.sizes[0]], args.videos,
                             args.seconds, args.fps)  # fmt: skip
        row["flow_prepass"] = time_flow(paths, args.flow_frames, args.flow_short_side,
                                        args.flow_repeats)  # fmt: skip
    print(json.dumps(row))


if __name__ == "__main__":
    main()
