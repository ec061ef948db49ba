"""Where a training step's device time goes: a per-operation breakdown from `jax.profiler`.

    python benchmarks/profile_step.py --batch 8 --frames 64 --size 224 --dtype bfloat16 \
        [--graph auto] [--steps 3] [--top 25] [--logdir DIR]

Compiles the same SGD step as `benchmarks/throughput.py`, traces `--steps` steps after warm-up,
and attributes each executed HLO operation of the step to a category (conv forward, conv input-
gradient, conv weight-gradient, BatchNorm, pooling and its gradient, concat/copies, optimizer,
other) and a layer (`Conv3d_1a_7x7`, `Mixed_4b`, ...), from the compiled HLO's op names. Prints a
table of the top operations and the totals per category and per layer on stderr, and one JSON
line on stdout. Device time is summed over operations: on CPU, operations running on several
threads at once add up to more than the step's wall time.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import gzip
import json
import pathlib
import re
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks.throughput import make_step, train_state  # noqa: E402
from i3d_jax import model  # noqa: E402
from i3d_jax.graph import NAMED  # noqa: E402

LAYER = re.compile(r"\b(Conv3d_\w+?|MaxPool3d_\w+?|Mixed_\w+?|Logits)(?:/|$)")
# `%name = shape opcode(operands), attributes`; a shape may be a tuple with spaces in it.
INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (.*?) ([a-z][\w\-]*)\((.*)$")
COPIES = ("concatenate", "copy", "transpose", "slice", "pad", "dynamic-slice", "bitcast")
COPIES += ("dynamic-update-slice", "reshape", "broadcast")


def parse_hlo(text: str) -> tuple[dict, dict]:
    """Instructions `name -> {shape, opcode, op_name, target, calls}` and computations' members."""
    instructions, computations, current = {}, collections.defaultdict(list), None
    for line in text.splitlines():
        head = re.match(r"^(?:ENTRY )?%([\w.\-]+) ", line)
        if head and line.rstrip().endswith("{"):
            current = head.group(1)
            continue
        m = INSTRUCTION.match(line)
        if not m:
            continue
        name, shape, opcode, rest = m.groups()
        op_name = re.search(r'op_name="([^"]*)"', rest)
        target = re.search(r'custom_call_target="([^"]*)"', rest)
        calls = re.search(r"calls=%([\w.\-]+)", rest)
        operands = re.findall(r"%([\w.\-]+)", rest.split("),")[0])
        instructions[name] = {
            "shape": shape,
            "opcode": opcode,
            "op_name": op_name.group(1) if op_name else "",
            "target": target.group(1) if target else "",
            "calls": calls.group(1) if calls else "",
            "operands": operands,
        }
        if current:
            computations[current].append(name)
    return instructions, computations


def _members(name: str, instructions: dict, computations: dict, depth: int = 0) -> list[dict]:
    """The instruction and, for a fusion or call, the instructions it runs."""
    inst = instructions.get(name)
    if inst is None:
        return []
    out = [inst]
    if inst["calls"] and depth < 4:
        for sub in computations.get(inst["calls"], []):
            out += _members(sub, instructions, computations, depth + 1)
    return out


def dims(shape: str) -> tuple[int, ...]:
    """Sorted dimensions above 1 of an HLO shape such as `f32[7,7,21,64]` (layouts and unit
    axes differ between passes: XLA:CPU runs 1x1x1 convs as dots)."""
    m = re.search(r"\[([\d,]*)\]", shape)
    return tuple(sorted(int(d) for d in m.group(1).split(",") if d and d != "1")) if m else ()


def is_conv(inst: dict) -> bool:
    if inst["opcode"] == "convolution" or "conv" in inst["target"].lower():
        return True
    # XLA:CPU turns 1x1x1 convolutions into dots; their op names still say so.
    return inst["opcode"] == "dot" and "conv_general_dilated" in inst["op_name"]


def kernel_shapes(instructions: dict) -> set[tuple[int, ...]]:
    """Dimensions of the kernels that forward convolutions read (their second operand)."""
    shapes = set()
    for inst in instructions.values():
        if is_conv(inst) and "transpose(" not in inst["op_name"] and len(inst["operands"]) > 1:
            kernel = instructions.get(inst["operands"][1])
            if kernel:
                shapes.add(dims(kernel["shape"]))
    return shapes


def op_name_of(name: str, instructions: dict, depth: int = 3) -> str:
    """The op name of an instruction, or of its nearest operand that has one (XLA-made ops)."""
    frontier = [name]
    for _ in range(depth + 1):
        nxt = []
        for n in frontier:
            inst = instructions.get(n)
            if inst is None:
                continue
            if inst["op_name"]:
                return inst["op_name"]
            nxt += inst["operands"]
        frontier = nxt
    return ""


def categorize(name: str, instructions: dict, computations: dict, kernels: set[str]) -> str:
    """One of the breakdown's categories for an executed HLO operation."""
    members = _members(name, instructions, computations)
    if not members:
        return "other"
    own = next((m["op_name"] for m in members if m["op_name"]), "")
    op_name = own or op_name_of(name, instructions)
    backward = "transpose(" in op_name
    targets = " ".join(m["target"] for m in members).lower()
    convs = [m for m in members if is_conv(m)]
    if "backwardfilter" in targets:
        return "conv weight-grad"
    if "backwardinput" in targets:
        return "conv input-grad"
    if convs:
        if own and "transpose(" not in own:
            return "conv forward"
        # A backward conv (or one XLA made, with no name) with a kernel-shaped result: dW.
        if dims(convs[0]["shape"]) in kernels:
            return "conv weight-grad"
        return "conv input-grad" if backward else "conv forward"
    if "optimizer" in op_name:
        return "optimizer"
    if "max_pool" in op_name or any(
        m["opcode"] in ("reduce-window", "select-and-scatter") for m in members
    ):
        return "pool grad" if backward else "pool forward"
    if "batch_norm" in op_name or "BatchNorm" in op_name:
        return "batchnorm backward" if backward else "batchnorm forward"
    if all(m["opcode"] in COPIES + ("parameter", "constant", "tuple") for m in members):
        return "concat/copies"
    return "other backward" if backward else "other forward"


def layer_of(name: str, instructions: dict) -> str:
    m = LAYER.search(op_name_of(name, instructions))
    return m.group(1) if m else "-"


def device_events(trace_dir: pathlib.Path, module: str) -> list[tuple[str, float]]:
    """`(hlo_op, microseconds)` of every traced operation of `module` (device lanes if any)."""
    files = sorted(trace_dir.rglob("*.trace.json.gz")) or sorted(trace_dir.rglob("*.json.gz"))
    if not files:
        raise SystemExit(f"error: no trace written under {trace_dir}")
    data = json.load(gzip.open(files[-1]))
    events = data["traceEvents"] if isinstance(data, dict) else data
    procs = {
        e["pid"]: e["args"].get("name", "")
        for e in events
        if e.get("ph") == "M" and e.get("name") == "process_name"
    }
    ops = [
        e
        for e in events
        if e.get("ph") == "X"
        and "hlo_op" in e.get("args", {})
        and e["args"].get("hlo_module", module).startswith(module)
        and not e["name"].startswith("end: ")
    ]
    on_device = [e for e in ops if procs.get(e["pid"], "").startswith("/device:")]
    return [(e["args"]["hlo_op"], float(e["dur"])) for e in (on_device or ops)]


def breakdown(events, instructions, computations, steps: int) -> dict:
    kernels = kernel_shapes(instructions)
    per_op = collections.Counter()
    for op, us in events:
        per_op[op] += us / 1e3 / steps
    rows = [
        {
            "op": op,
            "category": categorize(op, instructions, computations, kernels),
            "layer": layer_of(op, instructions),
            "ms": ms,
        }
        for op, ms in per_op.most_common()
    ]
    by_category, by_layer = collections.Counter(), collections.Counter()
    for r in rows:
        by_category[r["category"]] += r["ms"]
        by_layer[r["layer"]] += r["ms"]
    return {"ops": rows, "by_category": by_category, "by_layer": by_layer}


def print_tables(result: dict, top: int, file=sys.stderr) -> None:
    total = sum(result["by_category"].values()) or 1.0
    print(f"{'category':<22} {'ms/step':>9} {'share':>7}", file=file)
    for cat, ms in result["by_category"].most_common():
        print(f"{cat:<22} {ms:9.2f} {ms / total:7.1%}", file=file)
    print(f"\n{'layer':<18} {'ms/step':>9} {'share':>7}", file=file)
    for layer, ms in result["by_layer"].most_common():
        print(f"{layer:<18} {ms:9.2f} {ms / total:7.1%}", file=file)
    print(f"\n{'top operations':<40} {'category':<20} {'layer':<16} {'ms/step':>8}", file=file)
    for r in result["ops"][:top]:
        print(f"{r['op'][:40]:<40} {r['category']:<20} {r['layer']:<16} {r['ms']:8.3f}", file=file)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="release", choices=list(model.PRESETS))
    p.add_argument("--graph", default="auto", help=f"auto or one of {sorted(NAMED)}")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--logdir", default=None, help="keep the trace here (default: a temp dir)")
    args = p.parse_args(argv)
    if args.graph != "auto" and args.graph not in NAMED:
        p.error(f"unknown --graph {args.graph!r}; expected auto or one of {sorted(NAMED)}")

    net = model.PRESETS[args.preset](dtype=jnp.dtype(args.dtype), graph=args.graph)
    rng = np.random.default_rng(0)
    x = jnp.asarray(
        rng.uniform(-1, 1, (args.batch, args.frames, args.size, args.size, 3)), jnp.float32
    )
    y = jnp.asarray(rng.integers(0, net.num_classes, args.batch), jnp.int32)
    tx = optax.sgd(0.1, momentum=0.9)
    state = train_state(jax.jit(net.init)(jax.random.key(0), x[:1]), tx)

    def train_apply(v, clip):
        (logits, _), new = net.apply(v, clip, train=True, mutable=["batch_stats"])
        return logits, new["batch_stats"]

    options = net.graph.compiler_options(train=True) or None  # e.g. XLA:CPU's conv library
    compiled = make_step(train_apply, tx).lower(state, x, y).compile(compiler_options=options)
    instructions, computations = parse_hlo(compiled.as_text())
    for _ in range(args.warmup):
        state = compiled(state, x, y)
    jax.block_until_ready(state)
    logdir = pathlib.Path(args.logdir or tempfile.mkdtemp(prefix="i3d_profile_"))
    start = time.perf_counter()
    with jax.profiler.trace(str(logdir), create_perfetto_trace=True):
        for _ in range(args.steps):
            state = compiled(state, x, y)
        jax.block_until_ready(state)
    wall_ms = (time.perf_counter() - start) * 1e3 / args.steps
    events = device_events(logdir, "jit_step")
    result = breakdown(events, instructions, computations, args.steps)
    print_tables(result, args.top)
    graph_name = next((k for k, g in NAMED.items() if g == net.graph), str(net.graph))
    print(
        json.dumps(
            {
                "benchmark": "profile_step",
                "date": datetime.date.today().isoformat(),
                "device": jax.devices()[0].device_kind,
                "jax": jax.__version__,
                "preset": args.preset,
                "graph": graph_name,
                "compiler_options": options or {},
                "batch": args.batch,
                "shape": [args.frames, args.size, args.size, 3],
                "dtype": args.dtype,
                "step_ms_traced": round(wall_ms, 2),
                "device_ms_summed": round(sum(result["by_category"].values()), 2),
                "by_category_ms": {k: round(v, 3) for k, v in result["by_category"].most_common()},
                "by_layer_ms": {k: round(v, 3) for k, v in result["by_layer"].most_common()},
                "top_ops": [{**r, "ms": round(r["ms"], 3)} for r in result["ops"][: args.top]],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
