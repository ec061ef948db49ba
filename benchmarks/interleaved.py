"""Our graphs against PyTorch on a busy machine: one process, steps interleaved, medians.

    python benchmarks/interleaved.py --variants t2c_taps,t2c_taps_eigen_train --pytorch \
        --batch 1 --frames 16 --size 224 --repeats 7

`benchmarks/throughput.py` times each variant in a block of steps after the last; on a machine
shared with other work, load that comes and goes favours whichever block ran in a quiet spell.
Here every variant (and the PyTorch reference) is compiled and warmed up first, then each repeat
runs one step of every variant in turn, so all see the same load; the medians over repeats are
compared. Our variants compile with their graph's XLA compiler options
(`Graph.compiler_options`), as training and the tools do. One JSON line on stdout.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import resource
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks.throughput import (  # noqa: E402
    find_pytorch_i3d_py,
    load_module,
    make_infer,
    make_step,
    ours,
    train_state,
)
from i3d_jax import model  # noqa: E402
from i3d_jax.graph import NAMED  # noqa: E402


def our_runners(args, name: str, x, labels) -> dict:
    """`{mode: run one step}` for our model computed as graph `name`, compiled and warmed up."""
    net, infer_apply, train_apply = ours(args, name)
    init = jax.jit(net.init)
    runners = {}
    if "train" in args.modes:
        tx = optax.sgd(0.1, momentum=0.9)
        state = [train_state(init(jax.random.key(0), x[:1]), tx)]
        options = net.graph.compiler_options(train=True) or None
        step = make_step(train_apply, tx).lower(state[0], x, labels).compile(options)

        def train():
            state[0] = jax.block_until_ready(step(state[0], x, labels))

        runners["train"] = train
    if "inference" in args.modes:
        variables = init(jax.random.key(0), x[:1])
        options = net.graph.compiler_options(train=False) or None
        infer = make_infer(infer_apply).lower(jnp.float32(0), variables, x).compile(options)
        runners["inference"] = lambda: jax.block_until_ready(infer(jnp.float32(0), variables, x))
    return runners


def pytorch_runners(args, x_np, labels_np) -> dict:
    """`{mode: run one step}` for the piergiaj PyTorch I3D (eager, float32, this CPU)."""
    import torch

    path = find_pytorch_i3d_py(args.pytorch_i3d_py)
    if path is None:
        raise SystemExit("error: --pytorch needs cd-fvd's pytorch_i3d.py (or --pytorch_i3d_py)")
    net = load_module("pytorch_i3d_ref", path).InceptionI3d(num_classes=400, in_channels=3)
    x = torch.from_numpy(x_np).permute(0, 4, 1, 2, 3).contiguous()
    y = torch.from_numpy(labels_np).long()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)

    def train():
        net.train()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer():
        net.eval()
        with torch.no_grad():
            net(x)

    return {k: v for k, v in (("train", train), ("inference", infer)) if k in args.modes}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default="auto", help=f"auto or names from {sorted(NAMED)}")
    p.add_argument("--pytorch", action="store_true", help="also the PyTorch reference")
    p.add_argument("--pytorch_i3d_py", default=None, help="path to cd-fvd's pytorch_i3d.py")
    p.add_argument("--modes", default="train,inference")
    p.add_argument("--preset", default="release", choices=list(model.PRESETS))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    args = p.parse_args(argv)
    args.modes, args.dtype = args.modes.split(","), "float32"
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v != "auto" and v not in NAMED:
            p.error(f"unknown variant {v!r}; expected auto or one of {sorted(NAMED)}")
    if args.repeats < 1 or args.warmup < 0:
        p.error("--repeats must be at least 1 and --warmup at least 0")

    load_at_start = [round(v, 2) for v in os.getloadavg()]
    rng = np.random.default_rng(0)
    x_np = rng.uniform(-1, 1, (args.batch, args.frames, args.size, args.size, 3)).astype("f4")
    classes = model.PRESETS[args.preset]().num_classes
    labels_np = rng.integers(0, classes, args.batch).astype(np.int32)
    x, labels = jnp.asarray(x_np), jnp.asarray(labels_np)
    runners = {}
    for v in variants:
        for mode, run in our_runners(args, v, x, labels).items():
            runners[(mode, f"i3d_jax {v}")] = run
    if args.pytorch:
        for mode, run in pytorch_runners(args, x_np, labels_np).items():
            runners[(mode, "pytorch-i3d eager")] = run
    for run in runners.values():
        for _ in range(args.warmup):
            run()
    seconds = {key: [] for key in runners}
    for r in range(args.repeats):
        for key, run in runners.items():
            start = time.perf_counter()
            run()
            seconds[key].append(time.perf_counter() - start)
        print(f"repeat {r + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    rows = []
    for (mode, impl), s in seconds.items():
        median = statistics.median(s)
        rows.append(
            {
                "mode": mode,
                "impl": impl,
                "clips_per_second": round(args.batch / median, 3),
                "median_ms": round(1e3 * median, 1),
                "all_ms": [round(1e3 * t) for t in s],
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
    result = {
        "benchmark": "interleaved",
        "date": datetime.date.today().isoformat(),
        "device": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "batch": args.batch,
        "shape": [args.frames, args.size, args.size, 3],
        "dtype": "float32",
        "repeats": args.repeats,
        "load_average_at_start": load_at_start,
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "max_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "results": rows,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
