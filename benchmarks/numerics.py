"""Numerics of the fast paths on the current device, against the plain float32 model.

    python benchmarks/numerics.py [--variants t2c1,t2c --batch 2 --frames 32 --steps 5]

Random weights with random BatchNorm statistics and a random clip. For each variant (a name
from `i3d_jax.graph.NAMED`) reports, as one JSON line: max |logit difference|
of its inference graph (BatchNorm folded, 1x1x1 convs fused) in float32 and in bfloat16, each
against the plain float32 model; and the training loss curve of the plain float32 step and the
variant's bfloat16 step over a few SGD steps on the same batch (bf16 compute, float32 params,
BN statistics and loss).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from i3d_jax import deploy, model  # noqa: E402
from i3d_jax.graph import NAMED  # noqa: E402


def random_stats(variables: dict, seed: int = 0) -> dict:
    flat = traverse_util.flatten_dict(variables, sep="/")
    rng = np.random.default_rng(seed)
    for name, v in flat.items():
        if name.endswith("/var"):
            flat[name] = rng.uniform(0.5, 2.0, v.shape).astype(np.float32)
        elif name.endswith(("/mean", "batch_norm/bias")):
            flat[name] = rng.normal(0, 0.2, v.shape).astype(np.float32)
    return traverse_util.unflatten_dict(flat, sep="/")


def loss_curve(net, variables, x, y, steps):
    tx = optax.sgd(0.01, momentum=0.9)

    @jax.jit
    def step(state):
        params, stats, opt = state

        def loss_fn(p):
            (logits, _), new = net.apply(
                {"params": p, "batch_stats": stats}, x, train=True, mutable=["batch_stats"]
            )
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            return loss, new["batch_stats"]

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt = tx.update(grads, opt, params)
        return (optax.apply_updates(params, updates), stats, opt), loss

    state = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))
    losses = []
    for _ in range(steps):
        state, loss = step(state)
        losses.append(float(loss))
    return losses


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="release", choices=list(model.PRESETS))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--variants", default="t2c1")
    args = p.parse_args(argv)
    # The float32 reference in true float32 (GPUs otherwise use TF32 for float32 convs).
    jax.config.update("jax_default_matmul_precision", "highest")
    rng = np.random.default_rng(0)
    x = jnp.asarray(
        rng.uniform(-1, 1, (args.batch, args.frames, args.size, args.size, 3)), jnp.float32
    )
    plain = model.PRESETS[args.preset](graph="plain")
    y = jnp.asarray(rng.integers(0, plain.num_classes, args.batch), jnp.int32)
    variables = random_stats(jax.device_get(jax.jit(plain.init)(jax.random.key(0), x)))
    ref = np.asarray(jax.jit(plain.apply)(variables, x)[0])
    out = {
        "benchmark": "numerics",
        "device": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "preset": args.preset,
    }
    out["logit_scale"] = float(np.abs(ref).max())
    out["loss_plain_float32"] = loss_curve(plain, variables, x, y, args.steps)
    for name in args.variants.split(","):
        for dtype in ("float32", "bfloat16"):
            fast = plain.clone(dtype=jnp.dtype(dtype), graph=NAMED[name])
            inf_net, inf_vars = deploy.to_inference(fast, variables)
            got = np.asarray(jax.jit(inf_net.apply)(inf_vars, x)[0])
            out[f"{name}+fold_{dtype}_max_abs_logit_diff"] = float(np.abs(got - ref).max())
        fast_bf16 = plain.clone(dtype=jnp.bfloat16, graph=NAMED[name])
        curve = loss_curve(fast_bf16, variables, x, y, args.steps)
        out[f"loss_{name}_bfloat16"] = curve
        out[f"{name}_bfloat16_max_abs_loss_diff"] = float(
            np.abs(np.subtract(out["loss_plain_float32"], curve)).max()
        )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
