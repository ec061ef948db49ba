"""The real training step fed from disk by the real Grain pipeline, against the same step fed
from memory: clips/s of each and how long the step waits for data.

    python benchmarks/train_from_disk.py --preset tiny --batch 4 --frames 16 --size 56 \
        --short_side 64 --dtype float32 [--workers N] [--steps 100] [--workdir DIR]

Writes `--videos` mp4 files of moving natural texture (`benchmarks/input_pipeline.py`'s
`write_videos`) and builds them into a `video_folder` RGB dataset at `--short_side` (reused from
`--workdir` when there), then builds what the trainer builds (`training.loop.setup` on a config
from `training.defaults`: mesh, sharded state, the jitted `make_train_step`) and times the one
compiled step fed two ways, each batch going to the devices as the trainer sends it
(`sharding.global_batch`, i.e. `make_array_from_process_local_data`, uint8 video made float on
the device), each step issued as `loop._train_steps` issues it (`next()`, then the step, no block
in between, so the next `next()` overlaps the step in flight):

* ``in_memory``: one host batch of the pipeline's keys, shapes and dtypes (uint8 video, int32
  label and index; checked against the pipeline's), sent again every step; run before and after
  from_disk and pooled (A-B-A, so a machine whose speed drifts moves both sides alike;
  ``clips_per_s_runs`` shows the two runs);
* ``from_disk``: `task.train_iterator`, i.e. `pipeline.train_dataset` on the dataset read with
  `pipeline.load_source` (frames still encoded, as stored: ``frame_format``), `--workers` Grain
  worker processes (0: threads in this process).

Warm-up (compilation, worker start-up) is not timed; `from_disk` also first drains the batches
its workers made ahead while starting (`workers x (prefetch + 1)` steps), so the timed window
starts near the steady state. The clock stops after `block_until_ready` of the last step.

Per row: ``clips_per_s`` over the timed steps and ``clips_per_s_late`` over their second half
(a pipeline slower than the step shows as the late rate falling below the whole one while the
buffer drains), ``data_wait_share`` (fraction of the wall time spent in `next()`; with async
dispatch the device may be busy meanwhile) and ``device_idle_share`` (fraction of the wall time
between one step finishing on the device, seen by a thread blocking on its loss, and the next
step's batch being handed to JAX: time the device had nothing to run). ``ratio`` is from_disk /
in_memory clips/s. Prints ONE JSON line; a time limit's SIGTERM (`timeout`) stops the workers and
prints it as it stands, with a note naming what was running (exit status 124).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import queue
import shutil
import sys
import tempfile
import threading
import time

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks._time_limit import printed_on_sigterm  # noqa: E402
from benchmarks.input_pipeline import write_videos  # noqa: E402
from i3d_jax import graph, model, sharding  # noqa: E402
from i3d_jax.data import pipeline, schema  # noqa: E402
from i3d_jax.data.stored_video import frame_layout  # noqa: E402
from i3d_jax.training import defaults, loop  # noqa: E402
from i3d_jax.training.config import DTYPES  # noqa: E402
from i3d_jax.training.tasks import video  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    base = defaults.get_config()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny", choices=sorted(model.PRESETS))
    p.add_argument("--batch", type=int, default=4, help="global batch (clips per step)")
    p.add_argument("--frames", type=int, default=16, help="clip length")
    p.add_argument("--size", type=int, default=56, help="crop side")
    p.add_argument("--short_side", type=int, default=64, help="stored frames' smaller side")
    p.add_argument("--videos", type=int, default=16)
    p.add_argument("--video_frames", type=int, default=48, help="frames per written video")
    p.add_argument("--frame_format", default=None,
                   help="video_folder frame_format (h264 | jpeg); default: the library's")  # fmt: skip
    p.add_argument("--workers", type=int, default=max((os.cpu_count() or 1) - 1, 0),
                   help="Grain worker processes (0: threads in this process)")  # fmt: skip
    p.add_argument("--threads", type=int, default=base.input.num_threads,
                   help="read threads (per worker), config.input.num_threads")  # fmt: skip
    p.add_argument("--prefetch", type=int, default=base.input.prefetch,
                   help="batches read ahead (per worker), config.input.prefetch")  # fmt: skip
    p.add_argument("--steps", type=int, default=100, help="timed steps per row")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compile)")
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    p.add_argument("--graph", default="auto", help="'auto' or a name in i3d_jax.graph.NAMED")
    p.add_argument("--workdir", default=None, help="keep (and reuse) the videos and dataset here")
    args = p.parse_args(argv)
    if args.steps < 2 or args.warmup < 1:
        p.error("--steps must be >= 2 and --warmup >= 1")
    if args.size > args.short_side:
        p.error(f"--size {args.size} is larger than --short_side {args.short_side}")
    return args


def prepare_dataset(args, workdir: pathlib.Path) -> tuple[pathlib.Path, dict]:
    """The videos and `video_folder` dataset for these settings (made unless already there):
    (data_dir, facts of how long writing and building took; None when reused)."""
    from i3d_jax.data import video_folder

    tag = f"{args.videos}x{args.video_frames}"
    videos = workdir / f"videos_{tag}"
    facts = {"write_s": None, "build_s": None}
    if not videos.is_dir():
        tmp = workdir / f"videos_{tag}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        t = time.perf_counter()
        write_videos(tmp, args.videos, args.video_frames)
        facts["write_s"] = round(time.perf_counter() - t, 2)
        tmp.rename(videos)
    data_dir = workdir / f"tfds_{tag}_s{args.short_side}_{args.frame_format or 'default'}"
    kwargs = {"frame_format": args.frame_format} if args.frame_format else {}
    t = time.perf_counter()
    builder = video_folder.VideoFolder(
        folder=videos, data_dir=str(data_dir), short_side=args.short_side, **kwargs
    )
    if not builder.is_prepared():
        with contextlib.redirect_stdout(sys.stderr):  # TFDS prints; stdout is the JSON line
            builder.download_and_prepare()
        facts["build_s"] = round(time.perf_counter() - t, 2)
        frames = args.videos * args.video_frames
        facts["build_frames_per_s"] = round(frames / facts["build_s"], 1)
    else:
        with contextlib.redirect_stdout(sys.stderr):
            builder.download_and_prepare()  # checks the stored source against `videos`
    facts["frame_format"] = (builder.info.metadata or {}).get("frame_format")
    return data_dir, facts


def make_config(args, data_dir: pathlib.Path, num_classes: int):
    """The trainer's config (`training.defaults`, the paper's recipe) at this benchmark's shapes."""
    c = defaults.get_config()
    c.seed = 0
    c.model.preset = args.preset
    c.model.dtype = args.dtype
    c.model.graph = args.graph
    c.model.num_classes = num_classes
    c.dataset.name = "video_folder"
    c.dataset.data_dir = str(data_dir)
    c.dataset.folder = ""  # read only: built above
    c.dataset.eval_split = ""
    c.input.clip_length = args.frames
    c.input.crop_size = args.size
    c.input.num_workers = args.workers
    c.input.num_threads = args.threads
    c.input.prefetch = args.prefetch
    c.batch_size = args.batch
    c.eval.batch_size = args.batch
    c.progress = False
    return c


def stored_bytes_per_frame(src, examples: int = 64) -> tuple[float, list[int]]:
    """(stored `video` bytes / `num_frames` over the first `examples` examples (all of a small
    set, whose order depends on where it was built), stored frame [H, W])."""
    total = frames = 0
    for i in range(min(examples, len(src))):
        ex = src[i]
        total += sum(len(bytes(part)) for part in ex[schema.VIDEO])
        frames += int(ex.get(schema.NUM_FRAMES, len(ex[schema.VIDEO])))
    _, h, w = frame_layout(src[0])
    return total / max(frames, 1), [h, w]


def host_batch_like(batch: int, frames: int, size: int, num_classes: int) -> dict:
    """One host batch of the train pipeline's keys, shapes and dtypes (seeded random content)."""
    rng = np.random.default_rng(0)
    return {
        "video": rng.integers(0, 256, (batch, frames, size, size, 3), dtype=np.uint8),
        "label": rng.integers(0, num_classes, (batch,)).astype(np.int32),
        "index": np.arange(batch, dtype=np.int32),
    }


def layout(batch: dict) -> dict:
    return {k: (tuple(np.shape(v)), str(np.asarray(v).dtype)) for k, v in batch.items()}


class DeviceClock:
    """A thread that blocks on each step's loss and notes when it was ready (device done)."""

    def __init__(self):
        self.done: dict[int, float] = {}
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            k, x = item
            jax.block_until_ready(x)
            self.done[k] = time.perf_counter()

    def watch(self, k: int, x) -> None:
        self._queue.put((k, x))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


def run_steps(s: loop.Setup, state, next_batch, steps: int, warmup: int, check=None):
    """(state, timing): `warmup` untimed steps, then `steps` timed ones, issued as the loop
    issues them; `timing` holds the sums `summarize` pools into a row."""
    metrics, first_batch_s = None, None
    t = time.perf_counter()
    for _ in range(warmup):
        host = next_batch()
        if first_batch_s is None:
            first_batch_s = time.perf_counter() - t
        if check is not None:
            check(host)
        state, metrics = s.step_fn(state, sharding.global_batch(host, s.mesh))
    jax.block_until_ready((state, metrics))
    clock = DeviceClock()
    wait = np.zeros(steps)
    handed = np.zeros(steps)  # when step k's batch was on its way to the devices
    start = time.perf_counter()
    for k in range(steps):
        t0 = time.perf_counter()
        host = next_batch()
        wait[k] = time.perf_counter() - t0
        batch = sharding.global_batch(host, s.mesh)
        handed[k] = time.perf_counter()
        state, metrics = s.step_fn(state, batch)
        clock.watch(k, metrics["loss"])
    jax.block_until_ready(state)
    end = time.perf_counter()
    clock.close()
    done = np.array([clock.done[k] for k in range(steps)])
    previous = np.concatenate([[start], done[:-1]])
    half = steps // 2
    timing = {
        "steps": steps,
        "clips": steps * s.config.batch_size,
        "wall": end - start,
        "late_clips": (steps - half) * s.config.batch_size,
        "late_wall": end - done[half - 1],
        "wait": float(wait.sum()),
        "idle": float(np.maximum(handed - previous, 0.0).sum()),
        "first_batch_s": first_batch_s,
        "final_loss": float(jax.device_get(metrics["loss"])),
    }
    return state, timing


def summarize(*timings: dict) -> dict:
    """One row from the timings of one or more runs (pooled: clips over summed wall time)."""

    def total(key):
        return sum(t[key] for t in timings)

    wall = total("wall")
    row = {
        "clips_per_s": round(total("clips") / wall, 3),
        "clips_per_s_late": round(total("late_clips") / total("late_wall"), 3),
        "ms_per_step": round(1e3 * wall / total("steps"), 2),
        "data_wait_share": round(total("wait") / wall, 4),
        "device_idle_share": round(total("idle") / wall, 4),
        "first_batch_s": round(timings[0]["first_batch_s"], 3),  # worker start-up (from_disk)
        "final_loss": round(timings[-1]["final_loss"], 4),
    }
    if len(timings) > 1:  # the machine's drift between the runs: last / first clips/s
        rates = [t["clips"] / t["wall"] for t in timings]
        row["clips_per_s_runs"] = [round(r, 3) for r in rates]
    return row


def main(argv=None) -> dict:
    args = parse_args(argv)
    result = {
        "benchmark": "train_from_disk",
        "preset": args.preset,
        "dtype": args.dtype,
        "graph": args.graph,
        "graph_resolved": next(
            (n for n, g in graph.NAMED.items() if g == graph.resolve(args.graph)), None
        ),
        "batch": args.batch,
        "shape": [args.frames, args.size, args.size, 3],
        "steps": args.steps,
        "warmup": args.warmup,
        "from_disk_drain_steps": args.workers * (args.prefetch + 1),
        "workers": args.workers,
        "threads": args.threads,
        "prefetch": args.prefetch,
        "device": jax.devices()[0].device_kind,
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
    }
    load_before = round(os.getloadavg()[0], 2)
    now = {"what": "writing and building the dataset"}
    with printed_on_sigterm(result, now, finished="entries"):
        measure(args, result, now)
    result["loadavg_1m"] = [load_before, round(os.getloadavg()[0], 2)]  # before, after
    print(json.dumps(result))
    return result


def measure(args, result: dict, now: dict) -> None:
    """Builds (or reuses) the dataset, then times the rows into `result` as they finish."""
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()
    workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="i3d_train_from_disk_"))
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir, facts = prepare_dataset(args, workdir)
    probe = make_config(args, data_dir, num_classes=1)
    src, info = pipeline.load_source(probe.dataset, probe.dataset.train_split, build=False)
    config = make_config(args, data_dir, num_classes=len(info.label_names))
    data = video.Data(train=src, eval=None, info=info)
    bytes_per_frame, stored_hw = stored_bytes_per_frame(src)
    result["frame_format"] = facts.pop("frame_format")
    result["dataset"] = {
        "videos": len(src),
        "video_frames": args.video_frames,
        "short_side": args.short_side,
        "stored_hw": stored_hw,
        "bytes_per_frame": round(bytes_per_frame, 1),
        **facts,
    }

    now["what"] = "setup (state, step)"
    t = time.perf_counter()
    s = loop.setup(config, data=data)
    result["setup_s"] = round(time.perf_counter() - t, 2)
    state = s.state

    now["what"] = "in_memory (first run, with compilation)"
    per_host = config.batch_size // jax.process_count()
    host = host_batch_like(per_host, args.frames, args.size, config.model.num_classes)
    expected = layout(host)
    t = time.perf_counter()
    state, before = run_steps(s, state, lambda: host, args.steps, args.warmup)
    result["in_memory_first_run_s"] = round(time.perf_counter() - t, 2)
    result["in_memory"] = summarize(before)

    def check(batch: dict) -> None:
        if layout(batch) != expected:
            raise RuntimeError(
                f"the pipeline's batch {layout(batch)} differs from the in-memory batch "
                f"{expected}: the rows would not run the same compiled step"
            )

    now["what"] = "from_disk (worker start-up, drain, timed steps)"
    it = now["iterator"] = s.task.train_iterator(data)
    t = time.perf_counter()
    drain = result["from_disk_drain_steps"]
    state, disk = run_steps(s, state, lambda: next(it), args.steps, args.warmup + drain, check)
    result["from_disk_run_s"] = round(time.perf_counter() - t, 2)
    from_disk = result["from_disk"] = summarize(disk)
    if hasattr(it, "close"):
        it.close()  # the workers stop before memory's second run
    now["iterator"] = None

    # In memory again (A-B-A): a machine whose speed drifts during the runs (a shared CPU) moves
    # both of memory's runs, and the pooled row sits where from_disk ran.
    now["what"] = "in_memory (second run)"
    state, after = run_steps(s, state, lambda: host, args.steps, 1)
    in_memory = result["in_memory"] = summarize(before, after)
    result["ratio"] = round(from_disk["clips_per_s"] / in_memory["clips_per_s"], 4)
    result["ratio_late"] = round(from_disk["clips_per_s_late"] / in_memory["clips_per_s_late"], 4)
    result["data_wait_share"] = from_disk["data_wait_share"]
    result["device_idle_share"] = from_disk["device_idle_share"]


if __name__ == "__main__":
    main()
