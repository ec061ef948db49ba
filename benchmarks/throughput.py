"""I3D throughput: inference and training-step clips/s, TFLOP/s and MFU, and the longest clip.

    python benchmarks/throughput.py --batch 8 --frames 64 --size 224 --dtype bfloat16 \
        [--variants plain,t2c1,t2c1+fold] [--compare [--torch_compile]] [--peak_tflops 989] \
        [--max_clip --memory_gb 40]

Measures our model on whatever devices JAX sees (one device: the batch is not sharded) and,
with `--compare`, in the same process: the `i3d-jax` PyPI package's Flax I3D (its `i3d.py`
loaded under another module name, since its import name clashes with ours) and the PyTorch
reference in the piergiaj layout (`pytorch_i3d.py` from the `cd-fvd` package) when torch is
installed: eager and, with `--torch_compile`, under `torch.compile(mode=--torch_compile_mode)`
(default "max-autotune": Inductor autotuning and, on CUDA, CUDA graphs). Random weights and
inputs; steady state after warm-up; one JSON line on stdout.

Every row has `tflops` (achieved) and `mfu` (`tflops / --peak_tflops`; null without a peak).
The FLOPs per clip are XLA's cost analysis of the *unoptimised* HLO of our `plain` graph
(forward for inference; forward, backward and SGD update for training), lowered on the CPU
backend (GPU plugins do not analyse unoptimised HLO, and compiled GPU convs are opaque). Every
row, peers included, computes the same function, so all are charged the same useful FLOPs.
Compilation is timed apart (`compile_seconds`: XLA's compile, or the first torch.compile'd
call, which traces, autotunes and runs once) and never counts in clips/s.

Variants of ours (`--variants`, comma-separated): a graph name from `i3d_jax.graph.NAMED`
(the same function computed another way) or `auto` (the default graph on this backend),
optionally with `+fold` (inference with BatchNorm folded and each block's input 1x1x1 convs
fused, `i3d_jax.deploy.to_inference`; inference only).

A time limit that ends the run with SIGTERM (`timeout`) still prints the JSON line, with the
rows that finished and a note of what was running; each row is also echoed to stderr as it
finishes. `--torch_compile_budget_s` bounds the compiles of the compiled peer (both modes
together); when it runs out, that peer's remaining rows are skipped with a note.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import math
import pathlib
import platform
import signal
import sys
import tarfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks._time_limit import printed_on_sigterm  # noqa: E402
from i3d_jax import deploy, model, schedules  # noqa: E402
from i3d_jax.graph import NAMED  # noqa: E402

CACHE = pathlib.Path.home() / ".cache" / "i3d_jax"
# What the run is doing now: named in the JSON line when a time limit stops it.
NOW = {"what": "starting"}


def load_module(name: str, path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def find_i3d_jax_py(explicit: str | None) -> pathlib.Path | None:
    """The `i3d-jax` package's i3d.py: given, or extracted from the cached sdist."""
    if explicit:
        return pathlib.Path(explicit)
    target = CACHE / "i3d_jax-0.0.1" / "i3d_jax" / "i3d.py"
    sdist = CACHE / "i3d_jax-0.0.1.tar.gz"
    if not target.exists() and sdist.exists():
        with tarfile.open(sdist) as tar:
            tar.extract("i3d_jax-0.0.1/i3d_jax/i3d.py", CACHE, filter="data")
    return target if target.exists() else None


def find_pytorch_i3d_py(explicit: str | None) -> pathlib.Path | None:
    if explicit:
        return pathlib.Path(explicit)
    spec = importlib.util.find_spec("cdfvd")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = pathlib.Path(spec.submodule_search_locations[0]) / "third_party/i3d/pytorch_i3d.py"
    return path if path.exists() else None


def timed(fn, args, steps: int, warmup: int) -> float:
    """Seconds per call in steady state (`fn` returns what it updates, fed back as args[0])."""
    state = args[0]
    for _ in range(warmup):
        state = fn(state, *args[1:])
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(steps):
        state = fn(state, *args[1:])
    jax.block_until_ready(state)
    return (time.perf_counter() - start) / steps


def flops_of(lowered) -> float | None:
    """FLOPs of the HLO before backend rewriting (compiled GPU convs are opaque custom calls).

    `Lowered.cost_analysis()` analyses the unoptimised HLO; PJRT plugins (the CUDA one) raise
    NotImplementedError for it, hence `plain_flops` lowers on the CPU backend.
    """
    try:
        cost = lowered.cost_analysis()
    except Exception:  # noqa: BLE001 - not every backend reports costs
        return None
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    return float(cost["flops"]) if cost and "flops" in cost else None


def significant(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def row(name, mode, seconds, batch, flops, peak, **extra):
    """One result: clips/s, achieved TFLOP/s and MFU (null without `flops` or `peak`), and
    `extra` fields (`compile_seconds`, ...); echoed to stderr at once, so a run cut short still
    shows what it had."""
    tflops = flops / seconds / 1e12 if flops else None
    out = {
        "impl": name,
        "mode": mode,
        "clips_per_second": round(batch / seconds, 2),
        "ms": round(1e3 * seconds, 2),
        "gflop_per_clip": significant(flops / batch / 1e9) if flops else None,
        "tflops": significant(tflops) if tflops else None,
        "mfu": significant(tflops / peak) if tflops and peak else None,
        **extra,
    }
    print(json.dumps(out), file=sys.stderr, flush=True)
    return out


def softmax_xent(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), labels
    ).mean()


def make_infer(infer_apply):
    @jax.jit
    def infer(acc, v, clip):
        return acc + infer_apply(v, clip).astype(jnp.float32).sum()

    return infer


def make_step(train_apply, tx):
    def step(state, clip, y):
        params, stats, opt = state

        def loss_fn(p):
            logits, new = train_apply({"params": p, "batch_stats": stats}, clip)
            # Flax computes BN statistics in float32: keep the state's dtype (bf16 casts).
            new = jax.tree.map(lambda n, o: n.astype(o.dtype), new, stats)
            return softmax_xent(logits, y), new

        (_, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        with jax.named_scope("optimizer"):  # names the ops in benchmarks/profile_step.py
            updates, opt = tx.update(grads, opt, params)
            return optax.apply_updates(params, updates), stats, opt

    return jax.jit(step, donate_argnums=0)


def train_state(variables, tx):
    return variables["params"], variables["batch_stats"], tx.init(variables["params"])


def measure_flax(
    args, label, infer_apply, train_apply, variables, x, labels, rows, flops=None, options=None
):
    """Times `infer_apply(variables, clip) -> logits` and an SGD step over `train_apply`.

    `train_apply(variables, clip) -> (logits, new_batch_stats)` runs BatchNorm in training mode.
    `flops` (per mode) overrides the graph's own count: a rewritten graph (zero-padded kernels)
    or a peer is charged the plain model's useful FLOPs. `options` (per mode): XLA compiler
    options, as `Graph.compiler_options` gives them. XLA's compile is timed apart.
    """
    flops, options = flops or {}, options or {}
    if "inference" in args.modes:
        NOW["what"] = f"{label} inference"
        inputs = (jnp.float32(0), variables["inference"], x)
        start = time.perf_counter()
        lowered = make_infer(infer_apply).lower(*inputs)
        compiled = lowered.compile(compiler_options=options.get("inference") or None)
        compile_s = round(time.perf_counter() - start, 2)
        sec = timed(compiled, inputs, args.steps, args.warmup)
        count = flops.get("inference") or flops_of(lowered)
        rows.append(
            row(
                label,
                "inference",
                sec,
                args.batch,
                count,
                args.peak_tflops,
                compile_seconds=compile_s,
            )
        )
    if "train" in args.modes:
        NOW["what"] = f"{label} train"
        tx = optax.sgd(0.1, momentum=0.9)
        state = train_state(variables["train"], tx)
        start = time.perf_counter()
        lowered = make_step(train_apply, tx).lower(state, x, labels)
        compiled = lowered.compile(compiler_options=options.get("train") or None)
        compile_s = round(time.perf_counter() - start, 2)
        sec = timed(compiled, (state, x, labels), args.steps, args.warmup)
        count = flops.get("train") or flops_of(lowered)
        rows.append(
            row(label, "train", sec, args.batch, count, args.peak_tflops, compile_seconds=compile_s)
        )


def ours(args, graph: str):
    """Our model computed as `graph` and its apply functions for inference and training."""
    net = model.PRESETS[args.preset](dtype=jnp.dtype(args.dtype), graph=graph)

    def train_apply(v, clip):
        (logits, _), new = net.apply(v, clip, train=True, mutable=["batch_stats"])
        return logits, new["batch_stats"]

    return net, (lambda v, c: net.apply(v, c)[0]), train_apply


def on_cpu(tree):
    """Abstract values of `tree` placed on the CPU backend (the default device if none)."""
    try:
        sharding = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
    except RuntimeError:  # JAX_PLATFORMS without cpu
        sharding = None
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree)


def plain_flops(args, x, labels, preset: str | None = None, **options) -> dict:
    """FLOPs of the plain model's inference and training step: XLA's cost analysis of the
    unoptimised HLO, lowered (not compiled) on the CPU backend. `preset`, `options`: another
    network than `args.preset` (the peers' release network, e.g. with `global_pool=True`)."""
    factory = model.PRESETS[preset or args.preset]
    net = factory(dtype=jnp.dtype(args.dtype), graph="plain", **options)

    def train_apply(v, clip):
        (logits, _), new = net.apply(v, clip, train=True, mutable=["batch_stats"])
        return logits, new["batch_stats"]

    variables = on_cpu(jax.eval_shape(net.init, jax.random.key(0), x[:1]))
    x, labels = on_cpu(x), on_cpu(labels)
    infer_apply = lambda v, c: net.apply(v, c)[0]  # noqa: E731
    tx = optax.sgd(0.1, momentum=0.9)
    state = on_cpu(jax.eval_shape(lambda v: train_state(v, tx), variables))
    return {
        "inference": flops_of(make_infer(infer_apply).lower(on_cpu(jnp.float32(0)), variables, x)),
        "train": flops_of(make_step(train_apply, tx).lower(state, x, labels)),
    }


def peer_global_pool(size: int) -> bool:
    """Whether the release network needs a global spatial pool at `size` (its 7x7 logits pool
    does not fit: a dry run on small clips)."""
    return size < schedules.min_spatial(model.InceptionI3d.schedule)


def bench_ours(args, variant: str, x, labels, rows, flops):
    name, _, fold = variant.partition("+")
    if (name not in NAMED and name != "auto") or fold not in ("", "fold"):
        raise SystemExit(
            f"unknown variant {variant!r}; expected auto or one of {list(NAMED)} [+fold]"
        )
    net, infer_apply, train_apply = ours(args, name)
    resolved = [k for k, g in NAMED.items() if g == net.graph]
    shown = f" = {resolved[0]}" if name == "auto" and resolved else ""
    variables = jax.jit(net.init)(jax.random.key(0), x[:1])
    inf_vars = variables
    if fold:
        inf_net, inf_vars = deploy.to_inference(net, jax.device_get(variables))
        inf_vars = jax.device_put(inf_vars)
        infer_apply = lambda v, c: inf_net.apply(v, c)[0]  # noqa: E731
        # Folding changes only inference; the training step is the base variant's.
        args = argparse.Namespace(**{**vars(args), "modes": ["inference"]})
    measure_flax(
        args,
        f"i3d_jax ({variant}{shown}, {args.dtype})",
        infer_apply,
        train_apply,
        {"inference": inf_vars, "train": variables},
        x,
        labels,
        rows,
        flops,
        {mode: net.graph.compiler_options(mode == "train") for mode in ("inference", "train")},
    )


def bench_i3d_jax_package(args, path, x, labels, rows, flops):
    ref = load_module("i3d_jax_pypi_ref", path)
    net = ref.InceptionI3d(num_classes=400)
    variables = jax.jit(lambda k, c: net.init(k, c, is_training=False))(jax.random.key(0), x[:1])
    cast = jnp.dtype(args.dtype) != jnp.float32
    label = f"i3d-jax PyPI ({'params and input cast to ' + args.dtype if cast else 'float32'})"
    if cast:
        variables = jax.tree.map(lambda a: a.astype(args.dtype), variables)
        x = x.astype(args.dtype)

    def train_apply(v, clip):
        (logits, _), new = net.apply(v, clip, is_training=True, mutable=["batch_stats"])
        return logits, new["batch_stats"]

    measure_flax(
        args,
        label,
        lambda v, c: net.apply(v, c, is_training=False)[0],
        train_apply,
        {"inference": variables, "train": variables},
        x,
        labels,
        rows,
        flops,
    )


class CompileBudgetSpent(Exception):
    """The compiled peer's compile budget (`--torch_compile_budget_s`) ran out."""


@contextlib.contextmanager
def alarm_after(seconds: float | None):
    """Raises `CompileBudgetSpent` in the main thread once `seconds` have passed (None: never)."""
    if not seconds or seconds <= 0:
        if seconds is not None:
            raise CompileBudgetSpent("no compile budget left")
        yield
        return

    def on_alarm(signum, frame):
        raise CompileBudgetSpent(f"compile budget spent after {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def bench_pytorch(args, path, x_np, labels_np, rows, flops, notes):
    """The piergiaj reference: eager, then (`--torch_compile`) under `torch.compile`.

    bf16: autocast to bfloat16 and `channels_last_3d` (module and input). Training step: zero
    grads, forward + cross-entropy, backward, eager SGD momentum step (the same in both rows).
    Compiled: `torch.compile(module, mode=--torch_compile_mode)`; its first call per mode (trace,
    Inductor compile and autotuning, one run) is `compile_seconds`, then at least 2 warm-up calls
    (CUDA graph trees warm up once and record on the next call) before the timed ones. Each
    compiled call starts with `torch.compiler.cudagraph_mark_step_begin()`, so a step never
    reads outputs of the previous step's CUDA graphs; the input batch is an ordinary tensor
    (CUDA graphs copy it into their static buffer on each replay, as a new batch would be);
    parameters and BatchNorm buffers are static inputs, updated in place. A clip smaller than
    the release network's 7x7 logits pool (a CPU dry run) gets a global spatial pool instead,
    as our `tiny` preset does.
    """
    import torch
    from torch._dynamo.utils import counters
    from torch._inductor import list_mode_options

    ref = load_module("pytorch_i3d_ref", path)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = ref.InceptionI3d(num_classes=400, in_channels=3)
    if peer_global_pool(args.size):
        net.avg_pool = torch.nn.Sequential(
            torch.nn.AvgPool3d((2, 1, 1), stride=1), torch.nn.AdaptiveAvgPool3d((None, 1, 1))
        )
    net = net.to(device)
    x = torch.from_numpy(x_np).permute(0, 4, 1, 2, 3).contiguous().to(device)
    y = torch.from_numpy(labels_np).long().to(device)
    bf16 = args.dtype == "bfloat16"
    if bf16:
        net = net.to(memory_format=torch.channels_last_3d)
        x = x.to(memory_format=torch.channels_last_3d)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    precision = "bf16 autocast, channels_last_3d" if bf16 else "float32"
    pool = ", global pool" if peer_global_pool(args.size) else ""

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def steps(fn, n):
        for _ in range(n):
            fn()
        sync()

    def step_fns(module, compiled):
        def begin():
            if compiled and device == "cuda":
                torch.compiler.cudagraph_mark_step_begin()

        def infer():
            begin()
            module.eval()
            with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                module(x)

        def train():
            opt.zero_grad(set_to_none=True)  # no reference to the last step's graph outputs
            begin()
            module.train()
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                loss = torch.nn.functional.cross_entropy(module(x).float(), y)
            loss.backward()
            opt.step()

        return {"inference": infer, "train": train}

    def measure(fn, warmup):
        steps(fn, warmup)
        start = time.perf_counter()
        steps(fn, args.steps)
        return (time.perf_counter() - start) / args.steps

    label = f"piergiaj pytorch-i3d (eager, {precision}{pool})"
    for mode, fn in step_fns(net, False).items():
        if mode in args.modes:
            NOW["what"] = f"{label} {mode}"
            sec = measure(fn, args.warmup)
            rows.append(row(label, mode, sec, args.batch, flops.get(mode), args.peak_tflops))
    if not args.torch_compile:
        return

    mode_name = args.torch_compile_mode
    options = list_mode_options(mode_name)
    if device != "cuda":
        graphs = "n/a on CPU"
    elif not options.get("triton.cudagraphs"):
        graphs = "off in this mode"
    else:
        graphs = "on"
    label = f"piergiaj pytorch-i3d (torch.compile {mode_name}, {precision}{pool})"
    compiled = torch.compile(net, mode=mode_name)
    budget = args.torch_compile_budget_s
    budget_end = None if budget is None else time.monotonic() + budget
    for mode, fn in step_fns(compiled, True).items():
        if mode not in args.modes:
            continue
        NOW["what"] = f"{label} {mode}: compiling"
        skips = counters["inductor"]["cudagraph_skips"]
        start = time.perf_counter()
        try:
            with alarm_after(None if budget_end is None else budget_end - time.monotonic()):
                steps(fn, 1)
        except Exception as e:  # noqa: BLE001 - Dynamo wraps what the alarm raises
            spent = isinstance(e, CompileBudgetSpent) or "CompileBudgetSpent" in repr(e)
            why = (
                f"its compile budget ({budget:g} s, both modes) ran out"
                if spent
                else f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            )
            notes.append(
                f"{label} {mode} not measured: {why}, after "
                f"{time.perf_counter() - start:.0f} s of compiling"
            )
            return
        compile_s = round(time.perf_counter() - start, 2)
        NOW["what"] = f"{label} {mode}"
        sec = measure(fn, max(args.warmup, 2))
        used = graphs
        if graphs == "on" and counters["inductor"]["cudagraph_skips"] > skips:
            used = "skipped (Inductor logged why)"
        rows.append(
            row(
                label,
                mode,
                sec,
                args.batch,
                flops.get(mode),
                args.peak_tflops,
                compile_seconds=compile_s,
                torch_compile_mode=mode_name,
                cuda_graphs=used,
            )
        )


def train_bytes(frames: int, size: int, remat: bool, dtype) -> int:
    """Peak device bytes XLA plans for one batch-1 training step (compile only, no run)."""
    net = model.InceptionI3d(dtype=dtype, graph=NAMED["plain"].replace(remat=remat))
    clip = jax.ShapeDtypeStruct((1, frames, size, size, 3), jnp.float32)
    variables = jax.eval_shape(
        net.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 16, size, size, 3), jnp.float32)
    )

    def step(v, c):
        def loss_fn(p):
            (logits, _), new = net.apply(
                {"params": p, "batch_stats": v["batch_stats"]},
                c,
                train=True,
                mutable=["batch_stats"],
            )
            return logits.sum(), new

        return jax.grad(loss_fn, has_aux=True)(v["params"])

    mem = jax.jit(step).lower(variables, clip).compile().memory_analysis()
    return int(
        mem.temp_size_in_bytes
        + mem.argument_size_in_bytes
        + mem.output_size_in_bytes
        - mem.alias_size_in_bytes
    )


def longest_clip(size: int, budget_gb: float, remat: bool, dtype) -> dict:
    """Largest multiple of 8 frames whose batch-1 training step fits in `budget_gb`."""
    budget = budget_gb * 2**30
    lo, hi = 64, 128
    b_lo, b_hi = train_bytes(lo, size, remat, dtype), train_bytes(hi, size, remat, dtype)
    per_frame = (b_hi - b_lo) / (hi - lo)
    guess = max(8, int((budget - b_lo) / per_frame + lo) // 8 * 8)
    probes = 2
    while True:  # memory is linear in T: step down from the linear estimate until it fits
        need = train_bytes(guess, size, remat, dtype)
        probes += 1
        if need <= budget or guess <= 8:
            break
        guess -= 8 * max(1, math.ceil((need - budget) / per_frame / 8))
    return {
        "remat": remat,
        "frames": guess,
        "gb": round(need / 2**30, 2),
        "gb_per_frame": round(per_frame / 2**30, 4),
        "compiles": probes,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="release", choices=list(model.PRESETS))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    p.add_argument("--modes", default="inference,train")
    p.add_argument("--variants", default="plain,t2c1,t2c1+fold")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--peak_tflops", type=float, default=None, help="dense peak of the device")
    p.add_argument("--compare", action="store_true", help="also time i3d-jax (PyPI) and PyTorch")
    p.add_argument("--compare_dtypes", default=None, help="dtypes for the peers (default --dtype)")
    p.add_argument("--peers", default="i3d_jax_package,pytorch", help="which peers --compare runs")
    p.add_argument("--torch_compile", action="store_true", help="also the compiled PyTorch peer")
    p.add_argument(
        "--torch_compile_mode",
        default="max-autotune",
        help="torch.compile mode (max-autotune: autotuning, and CUDA graphs on CUDA)",
    )
    p.add_argument(
        "--torch_compile_budget_s",
        type=float,
        default=None,
        help="seconds for the compiled peer's compiles, both modes together (default: no limit)",
    )
    p.add_argument("--i3d_jax_py", default=None, help="path to the i3d-jax package's i3d.py")
    p.add_argument("--pytorch_i3d_py", default=None, help="path to cd-fvd's pytorch_i3d.py")
    p.add_argument("--max_clip", action="store_true", help="longest batch-1 training clip")
    p.add_argument("--memory_gb", type=float, default=16.0)
    args = p.parse_args(argv)
    args.modes = args.modes.split(",")

    rng = np.random.default_rng(0)
    x_np = rng.uniform(-1, 1, (args.batch, args.frames, args.size, args.size, 3)).astype(np.float32)
    classes = model.PRESETS[args.preset]().num_classes
    labels_np = rng.integers(0, classes, args.batch).astype(np.int32)
    x, labels = jnp.asarray(x_np), jnp.asarray(labels_np)
    rows: list[dict] = []
    notes: list[str] = []
    result = {
        "benchmark": "throughput",
        "date": datetime.date.today().isoformat(),
        "device": jax.devices()[0].device_kind,
        "num_devices": jax.device_count(),
        "jax": jax.__version__,
        "python": platform.python_version(),
        "preset": args.preset,
        "batch": args.batch,
        "shape": [args.frames, args.size, args.size, 3],
        "dtype": args.dtype,
        "peak_tflops": args.peak_tflops,
        "flops_source": "XLA cost analysis of the unoptimised HLO of the plain graph (CPU)",
        "results": rows,
        "notes": notes,
    }
    if importlib.util.find_spec("torch"):
        import torch

        result["torch"] = torch.__version__
    with printed_on_sigterm(result, NOW):
        measure_all(args, x, labels, x_np, labels_np, result)
    if not notes:
        del result["notes"]
    print(json.dumps(result))
    return 0


def measure_all(args, x, labels, x_np, labels_np, result: dict) -> None:
    """Our variants, then the peers, then the longest clip, into `result` as they finish."""
    rows, notes = result["results"], result["notes"]
    variants = [v for v in args.variants.split(",") if v]
    NOW["what"] = "counting FLOPs"
    flops = plain_flops(args, x, labels) if variants else {}
    for variant in variants:
        bench_ours(args, variant, x, labels, rows, flops)
    if args.compare:
        # The peers are the release network; a smaller preset (a dry run) is not their function.
        peer_flops = flops
        if args.preset != "release" or not variants:
            NOW["what"] = "counting the release network's FLOPs"
            pool = peer_global_pool(args.size)
            peer_flops = plain_flops(args, x, labels, "release", global_pool=pool)
            if args.preset != "release":
                notes.append(
                    f"peers run the release network{' with a global spatial pool' if pool else ''}"
                    f" (charged its FLOPs), ours the {args.preset!r} preset: not comparable rows"
                )
        for dt in (args.compare_dtypes or args.dtype).split(","):
            sub = argparse.Namespace(**{**vars(args), "dtype": dt})
            if "i3d_jax_package" in args.peers:
                path = find_i3d_jax_py(args.i3d_jax_py)
                if path:
                    try:
                        bench_i3d_jax_package(sub, path, x, labels, rows, peer_flops)
                    except Exception as e:  # noqa: BLE001 - a peer's failure loses no rows
                        notes.append(f"i3d-jax package ({dt}) failed: {type(e).__name__}: {e}")
                else:
                    notes.append("i3d-jax package not found (no cached sdist, no --i3d_jax_py)")
            if "pytorch" in args.peers:
                torch_path = find_pytorch_i3d_py(args.pytorch_i3d_py)
                if torch_path and importlib.util.find_spec("torch"):
                    try:
                        bench_pytorch(sub, torch_path, x_np, labels_np, rows, peer_flops, notes)
                    except Exception as e:  # noqa: BLE001 - a peer's failure loses no rows
                        notes.append(f"PyTorch reference ({dt}) failed: {type(e).__name__}: {e}")
                else:
                    notes.append(
                        "PyTorch reference not run (torch or cd-fvd's pytorch_i3d.py missing)"
                    )
    if args.max_clip:
        NOW["what"] = "longest training clip"
        dt = jnp.dtype(args.dtype)
        result["longest_train_clip"] = {
            "memory_gb": args.memory_gb,
            "size": args.size,
            "results": [longest_clip(args.size, args.memory_gb, r, dt) for r in (False, True)],
        }


if __name__ == "__main__":
    sys.exit(main())
