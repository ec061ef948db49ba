"""Input pipeline throughput: read + decode + crop 64-frame clips from a `video_folder` dataset.

Writes a few mp4 videos of natural-looking moving texture (multi-scale noise panned like a camera),
builds them into a `video_folder` RGB dataset at smaller side 256 (JPEG frames, as in training), then
times random 64-frame clips with a random 224x224 crop:

* ``decode_frames``: `schema.data_source` + `schema.decode_frames(frames[s:s+64], crop=...)`, one
  thread (what one input core does);
* ``grain``: `i3d_jax.data.pipeline.train_dataset` (the Grain train pipeline), if it exists, with
  one read thread, batch 1.

``frames_per_second_per_core`` is decoded frames per CPU-second of this process (all threads), so it
does not depend on how busy the machine is; ``clips_per_second`` is clips per wall-second. The top-
level numbers are from the Grain pipeline when it ran, otherwise from ``decode_frames`` (``"path"``
says which). Prints ONE JSON line.

    python benchmarks/input_pipeline.py [--videos 4] [--frames 96] [--clips 24] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import tempfile
import time

import numpy as np


def natural_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """uint8 [h, w, 3] with a roughly 1/f spectrum (sum of upsampled noise octaves)."""
    from PIL import Image

    acc = np.zeros((h, w, 3), np.float32)
    for octave in range(1, 7):
        gh, gw = max(2, h >> (7 - octave)), max(2, w >> (7 - octave))
        noise = rng.uniform(0, 255, (gh, gw, 3)).astype(np.uint8)
        up = np.asarray(Image.fromarray(noise).resize((w, h), Image.BICUBIC), np.float32)
        acc += (up - 128.0) / (1.6**octave)
    acc = 128 + acc * (70.0 / (acc.std() + 1e-6))
    return np.clip(acc, 0, 255).astype(np.uint8)


def write_videos(root: pathlib.Path, num_videos: int, num_frames: int, seed: int = 0) -> None:
    import av

    codec = next(c for c in ("libx264", "mpeg4") if c in av.codecs_available)
    rng = np.random.default_rng(seed)
    h, w = 256, 340
    for v in range(num_videos):
        tex = natural_texture(rng, h + 2 * num_frames, w + 3 * num_frames)
        path = root / "train" / f"class{v % 2}" / f"video{v}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(path), "w") as container:
            stream = container.add_stream(codec, rate=25)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            for t in range(num_frames):
                frame = tex[2 * t : 2 * t + h, 3 * t : 3 * t + w]
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)


def time_decode_frames(src, clips: int, clip_len: int, crop: int, seed: int) -> dict:
    from i3d_jax.data import schema

    rng = np.random.default_rng(seed)
    frames = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(clips):
        ex = src[int(rng.integers(len(src)))]
        video = ex[schema.VIDEO]
        start = int(rng.integers(0, len(video) - clip_len + 1))
        first = schema.decode_frames(video[start : start + 1])
        h, w = first.shape[1:3]
        top, left = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        clip = schema.decode_frames(video[start : start + clip_len], crop=(top, left, crop, crop))
        assert clip.shape == (clip_len, crop, crop, 3)
        frames += clip_len + 1
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "frames_per_second_per_core": frames / cpu,
        "clips_per_second": clips / wall,
        "cpu_seconds": cpu,
        "wall_seconds": wall,
    }


def time_grain(src, clips: int, clip_len: int, crop: int, seed: int) -> dict:
    from i3d_jax.data import pipeline

    spec = pipeline.TrainSpec(clip_length=clip_len, crop_size=crop, flip=True)
    ds = pipeline.train_dataset(
        src, spec, 1, seed, process_index=0, process_count=1, num_threads=1, prefetch=1
    )
    it = iter(ds)
    next(it)  # start-up (threads, first element) is not throughput
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(clips):
        batch = next(it)
        assert batch["video"].shape == (1, clip_len, crop, crop, 3)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "frames_per_second_per_core": clips * clip_len / cpu,
        "clips_per_second": clips / wall,
        "cpu_seconds": cpu,
        "wall_seconds": wall,
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, default=4)
    p.add_argument("--frames", type=int, default=96, help="frames per video (>= clip length)")
    p.add_argument("--clips", type=int, default=24)
    p.add_argument("--clip_length", type=int, default=64)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--workdir", default=None, help="keep the videos and dataset here")
    args = p.parse_args(argv)

    import tensorflow_datasets as tfds

    from i3d_jax.data import schema
    from i3d_jax.data.video_folder import VideoFolder

    tfds.disable_progress_bar()
    workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="i3d_input_bench_"))
    videos = workdir / "videos"
    if not videos.exists():
        write_videos(videos, args.videos, args.frames)
    t = time.perf_counter()
    builder = VideoFolder(folder=videos, data_dir=str(workdir / "tfds"), short_side=256)
    builder.download_and_prepare()
    build_s = time.perf_counter() - t
    src = schema.data_source(builder, "train")
    ex = src[0]
    jpeg_kb = float(np.mean([len(b) for b in ex[schema.VIDEO]]) / 1024)
    frame_shape = list(schema.decode_frames(ex[schema.VIDEO][:1]).shape[1:])

    result = {"benchmark": "input_pipeline", "clip_length": args.clip_length, "crop": args.crop}
    result["decode_frames"] = time_decode_frames(src, args.clips, args.clip_length, args.crop, 0)
    try:
        from i3d_jax.data import pipeline

        has_pipeline = hasattr(pipeline, "train_dataset")
    except ImportError:
        has_pipeline = False
    if has_pipeline:
        src_raw = builder.as_data_source("train", deserialize_method=schema.RAW_DESERIALIZE)
        result["grain"] = time_grain(src_raw, args.clips, args.clip_length, args.crop, 0)
        primary, path = result["grain"], "grain pipeline.train_dataset (1 read thread, batch 1)"
    else:
        primary, path = result["decode_frames"], "schema.decode_frames (no Grain pipeline found)"
    result.update(
        {
            "frames_per_second_per_core": round(primary["frames_per_second_per_core"], 1),
            "clips_per_second": round(primary["clips_per_second"], 3),
            "path": path,
            "stored_frame_hw": frame_shape[:2],
            "jpeg_kib_per_frame": round(jpeg_kb, 1),
            "num_videos": len(src),
            "build_seconds": round(build_s, 2),
            "cpu_count": os.cpu_count(),
        }
    )
    for key in ("decode_frames", "grain"):
        if key in result:
            result[key] = {k: round(v, 3) for k, v in result[key].items()}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
