"""Input pipeline throughput per storage format: read + decode + crop + flip of 64-frame clips.

Writes a few mp4 videos of natural-looking moving texture (multi-scale noise panned like a camera)
and takes the release's sample clip (`i3d_jax/samples`, real UCF-101 video, a palette GIF), builds
each into `video_folder` RGB datasets at smaller side 256 in every storage format measured, and
times random 64-frame clips with a random 224x224 crop and a random horizontal flip (the recipe's
training input) from the datasets on disk:

* ``methods``: one reader per row, one thread, the example read from the array_record file
  included: ``jpeg_pil`` (JPEG frames decoded by PIL, then cropped and flipped: the reader before
  segments), ``jpeg_simplejpeg`` (libjpeg-turbo through simplejpeg into a preallocated frame, crop
  and flip in one copy: today's JPEG reader), ``jpeg_pyturbojpeg`` (libjpeg-turbo through
  PyTurboJPEG into a preallocated frame; only where its library loads), and ``h264_g<N>_crf<C>``
  (H.264 segments of N frames, decoded by PyAV from each segment's keyframe: `stored_video`).
  Each row has ``frames_per_second_per_core``, ``bytes_per_frame`` and ``psnr_db`` (of the stored
  frames against the decoded source frames; per source video set);
* ``grain``: the Grain train pipeline (`pipeline.train_dataset`, one read thread, batch 1) on the
  default format and on JPEG;
* ``eval``: the Grain eval pipeline, "whole" protocol (every video looped/trimmed to 250 frames,
  centre crop), on both formats and with the PIL reader.

``frames_per_second_per_core`` is output frames per CPU-second of this process (all threads), so
it does not depend on how busy the machine is; ``clips_per_second`` is per wall-second. The top
level ``frames_per_second_per_core`` and ``bytes_per_frame`` are the Grain train pipeline on the
default format (`stored_video.DEFAULT`). Prints ONE JSON line.

    python benchmarks/input_pipeline.py [--videos 4] [--frames 96] [--clips 24] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


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


# ----------------------------------------------------------------------------- readers


def read_pil(example, indices, crop, flip):
    """The reader before segments: PIL decodes each JPEG, then crop; a flip copies the clip."""
    from i3d_jax.data import schema

    clip = schema.decode_frames([example[schema.VIDEO][i] for i in indices], crop=crop)
    return np.ascontiguousarray(clip[:, :, ::-1]) if flip else clip


def pyturbojpeg_reader():
    """PyTurboJPEG (libjpeg-turbo's TurboJPEG API) into one preallocated frame, or None."""
    try:
        import turbojpeg

        tj = turbojpeg.TurboJPEG()
    except Exception:  # not installed, or no libturbojpeg on this machine
        return None

    def read(example, indices, crop, flip):
        from i3d_jax.data import schema, stored_video

        video = example[schema.VIDEO]
        fw, fh, _, _ = tj.decode_header(video[indices[0]])
        buf = np.empty((fh, fw, 3), np.uint8)
        writer = stored_video._Writer(len(indices), crop, flip)  # crop and flip as ours do
        pixel_format = turbojpeg.TJPF_BGR if flip else turbojpeg.TJPF_RGB
        for k, i in enumerate(indices):
            writer.put(k, tj.decode(video[i], pixel_format=pixel_format, dst=buf))
        return writer.out

    return read


def read_stored(example, indices, crop, flip):
    from i3d_jax.data import stored_video

    return stored_video.read_clip(example, indices, crop, flip)


def time_reader(read, src, clips: int, clip_len: int, crop: int, seed: int) -> dict:
    """Random clips (start, crop, flip) through `read`, the record read included."""
    from i3d_jax.data import stored_video

    rng = np.random.default_rng(seed)
    frames = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(clips):
        ex = src[int(rng.integers(len(src)))]
        n, h, w = stored_video.frame_layout(ex)
        start = int(rng.integers(0, n - clip_len + 1))
        top, left = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        clip = read(
            ex, np.arange(start, start + clip_len), (top, left, crop, crop), rng.random() < 0.5
        )
        assert clip.shape == (clip_len, crop, crop, 3)
        frames += clip_len
    return rates(frames, clips, time.perf_counter() - wall, time.process_time() - cpu)


def rates(frames: int, clips: int, wall: float, cpu: float) -> dict:
    return {
        "frames_per_second_per_core": round(frames / cpu, 1),
        "clips_per_second": round(clips / wall, 3),
        "cpu_seconds": round(cpu, 3),
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
    return rates(clips * clip_len, clips, time.perf_counter() - wall, time.process_time() - cpu)


def time_eval(src, crop: int, max_frames: int, reader=None) -> dict:
    """The eval pipeline ("whole") over every video once; `reader` replaces the frame reader."""
    from i3d_jax.data import pipeline, stored_video

    spec = pipeline.EvalSpec(protocol="whole", crop_size=crop, max_frames=max_frames)
    saved = stored_video.read_clip
    if reader is not None:
        stored_video.read_clip = reader
    try:
        ds = pipeline.eval_dataset(src, spec, 1, process_index=0, process_count=1, num_threads=1,
                                   prefetch=1)  # fmt: skip
        wall, cpu = time.perf_counter(), time.process_time()
        count = sum(1 for _ in ds)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        stored_video.read_clip = saved
    return rates(count * max_frames, count, wall, cpu)


# ----------------------------------------------------------------------------- datasets


def build(folder: pathlib.Path, data_dir: pathlib.Path, fmt) -> tuple[object, float]:
    from i3d_jax.data.video_folder import VideoFolder

    t = time.perf_counter()
    builder = VideoFolder(folder=folder, data_dir=str(data_dir), short_side=256, frame_format=fmt)
    with contextlib.redirect_stdout(sys.stderr):  # TFDS prints; stdout is the JSON line
        builder.download_and_prepare()
    return builder, time.perf_counter() - t


def stored_stats(builder, reference: dict) -> dict:
    """Bytes per stored frame and PSNR (dB) of the stored frames against `reference`
    (video_id -> the source's decoded frames)."""
    from i3d_jax.data import schema, stored_video

    src = builder.as_data_source("train", deserialize_method=schema.RAW_DESERIALIZE)
    size = frames = 0
    sq = 0.0
    for i in range(len(src)):
        ex = src[i]
        n, h, w = stored_video.frame_layout(ex)
        size += sum(len(b) for b in ex[schema.VIDEO])
        frames += n
        got = stored_video.read_clip(ex, np.arange(n), (0, 0, h, w)).astype(np.float64)
        vid = ex[schema.VIDEO_ID]
        sq += float(np.sum((got - reference[vid.decode() if isinstance(vid, bytes) else vid]) ** 2))
    mse = sq / (frames * h * w * 3)
    return {
        "bytes_per_frame": round(size / frames, 1),
        "psnr_db": round(10 * np.log10(255**2 / mse), 2),
    }


def source_frames(folder: pathlib.Path) -> dict:
    from i3d_jax import preprocess

    return {p.stem: preprocess.load_video(p, fps=25.0, short_side=256) for p in folder.rglob("*.*")
            if p.suffix in (".mp4", ".gif")}  # fmt: skip


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, default=4)
    p.add_argument("--frames", type=int, default=96, help="frames per video (>= clip length)")
    p.add_argument("--clips", type=int, default=24)
    p.add_argument("--clip_length", type=int, default=64)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--eval_frames", type=int, default=None,
                   help="'whole' eval: frames per view (default --frames: no looping)")  # fmt: skip
    p.add_argument("--gops", default="16,32", help="H.264 segment lengths measured")
    p.add_argument("--crfs", default="17", help="H.264 crf values measured (first: gops' rows)")
    p.add_argument("--workdir", default=None, help="keep the videos and datasets here")
    args = p.parse_args(argv)
    args.eval_frames = args.eval_frames or args.frames

    import tensorflow_datasets as tfds

    from i3d_jax.data import schema, stored_video
    from i3d_jax.samples import CRICKET

    tfds.disable_progress_bar()
    workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="i3d_input_bench_"))
    sets = {"texture": workdir / "videos", "sample_clip": workdir / "sample_clip"}
    if not sets["texture"].exists():
        write_videos(sets["texture"], args.videos, args.frames)
    clip_dir = sets["sample_clip"] / "train" / "cricket"
    if not clip_dir.exists():
        clip_dir.mkdir(parents=True)
        shutil.copy(CRICKET, clip_dir / CRICKET.name)

    crfs = [int(c) for c in args.crfs.split(",")]
    formats = {"jpeg": stored_video.LEGACY_JPEG}
    for gop in (int(g) for g in args.gops.split(",")):
        fmt = dataclasses.replace(stored_video.DEFAULT, segment_frames=gop, crf=crfs[0])
        formats[f"h264_g{gop}_crf{crfs[0]}"] = fmt
    for crf in crfs[1:]:
        fmt = dataclasses.replace(stored_video.DEFAULT, crf=crf)
        formats[f"h264_g{fmt.segment_frames}_crf{crf}"] = fmt
    default_name = next(k for k, f in formats.items() if f == stored_video.DEFAULT)

    result = {"benchmark": "input_pipeline", "clip_length": args.clip_length, "crop": args.crop,
              "default_format": default_name, "methods": {}}  # fmt: skip
    sources, builds = {}, {}
    for set_name, folder in sets.items():
        reference = source_frames(folder)
        for name, fmt in formats.items():
            builder, seconds = build(folder, workdir / "tfds" / set_name / name, fmt)
            builds[(set_name, name)] = round(seconds, 2)
            stats = stored_stats(builder, reference)
            sources[(set_name, name)] = builder.as_data_source(
                "train", deserialize_method=schema.RAW_DESERIALIZE
            )
            readers = {name: read_stored}
            if name == "jpeg":
                readers = {"jpeg_pil": read_pil, "jpeg_simplejpeg": read_stored}
                turbo = pyturbojpeg_reader()
                if turbo is not None:
                    readers["jpeg_pyturbojpeg"] = turbo
            for method, read in readers.items():
                row = result["methods"].setdefault(method, {})
                row[set_name] = {**stats, "build_seconds": builds[(set_name, name)]}
                if set_name == "texture":  # the speed rows: long enough for 64-frame clips
                    src = sources[(set_name, name)]
                    row.update(time_reader(read, src, args.clips, args.clip_length, args.crop, 0))

    texture = {name: sources[("texture", name)] for name in formats}
    result["grain"] = {
        name: time_grain(texture[name], args.clips, args.clip_length, args.crop, 0)
        for name in (default_name, "jpeg")
    }
    result["eval"] = {
        default_name: time_eval(texture[default_name], args.crop, args.eval_frames),
        "jpeg_simplejpeg": time_eval(texture["jpeg"], args.crop, args.eval_frames),
        "jpeg_pil": time_eval(
            texture["jpeg"],
            args.crop,
            args.eval_frames,
            reader=lambda ex, idx, crop, flip=False: read_pil(ex, idx, crop, flip),
        ),  # fmt: skip
    }
    top = result["grain"][default_name]
    result.update(
        {
            "frames_per_second_per_core": top["frames_per_second_per_core"],
            "bytes_per_frame": result["methods"][default_name]["texture"]["bytes_per_frame"],
            "path": f"grain pipeline.train_dataset (1 read thread, batch 1), {default_name}",
            "num_videos": len(texture[default_name]),
            "cpu_count": os.cpu_count(),
        }
    )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
