"""Pure jitted steps: the train step (BatchNorm groups through `shard_map`, gradient accumulation)
and the eval step. They know nothing of the model beyond two functions a task provides:

- `forward(variables, batch, train, rng) -> (float32 logits [B, ...], new batch_stats)`;
- `per_example(logits, batch) -> (loss [B], correct [B])` (correct: 1/0, or a fraction).

BatchNorm statistics (`config.bn.group_size`):

- 0 (default): over the global batch. Under `jit` with a sharded batch XLA computes them across
  devices by itself; the model has no `bn_axis_name`.
- k > 0: over groups of k consecutive examples of the global batch, like the release (64 replicas x
  6 clips, statistics per replica). The forward pass runs in `jax.shard_map` over a view of the
  same devices as `(groups, bn)`, the model built with `bn_axis_name="bn"`: a group spanning m
  devices averages its statistics over the `bn` axis (size m); several groups on one device are
  `vmap`ped. Running averages are then averaged over all groups. Requires k to divide the
  per-device batch or be a multiple of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from i3d_jax import sharding

BN_AXIS = "bn"
GROUP_AXES = ("groups", BN_AXIS)
Forward = Callable[[dict, dict, bool, jax.Array], tuple[jax.Array, Any]]
PerExample = Callable[[jax.Array, dict], tuple[jax.Array, jax.Array]]


def bn_axis_name(config: ml_collections.ConfigDict) -> str | None:
    """The model's `bn_axis_name`: "bn" when statistics are per group, else None."""
    return BN_AXIS if config.bn.group_size and not config.bn.frozen else None


def _group_mesh(mesh: Mesh, per_device: int, group_size: int) -> Mesh:
    m = max(group_size // per_device, 1)
    devices = mesh.devices.reshape(-1, m)  # the batch order of P(("data", "fsdp"))
    return Mesh(devices, GROUP_AXES)


def make_loss_fn(
    config: ml_collections.ConfigDict,
    forward: Forward,
    per_example: PerExample,
    mesh: Mesh,
    micro_batch: int,
) -> Callable:
    """(params, batch_stats, batch, rng) -> (mean loss, (new batch_stats, number correct))."""
    train = not config.bn.frozen

    def fwd(params, batch_stats, batch, rng):
        return forward({"params": params, "batch_stats": batch_stats}, batch, train, rng)

    k = config.bn.group_size
    if not k or config.bn.frozen:

        def loss_fn(params, batch_stats, batch, rng):
            logits, new_bs = fwd(params, batch_stats, batch, rng)
            loss, correct = per_example(logits, batch)
            return loss.mean(), (new_bs, correct.sum())

        return loss_fn

    per_device = micro_batch // mesh.devices.size
    spec = P(GROUP_AXES)

    def per_shard(params, batch_stats, batch, rng):
        rng = jax.random.fold_in(rng, jax.lax.axis_index(GROUP_AXES))
        n = jax.tree.leaves(batch)[0].shape[0]
        if k < n:  # several groups on this device: vmap them (the bn axis has size 1 here)
            g = n // k
            groups = jax.tree.map(lambda x: x.reshape(g, k, *x.shape[1:]), batch)
            logits, new_bs = jax.vmap(fwd, in_axes=(None, None, 0, 0))(
                params, batch_stats, groups, jax.random.split(rng, g)
            )
            logits = logits.reshape(n, *logits.shape[2:])
            new_bs = jax.tree.map(lambda s: s.mean(0), new_bs)
        else:
            logits, new_bs = fwd(params, batch_stats, batch, rng)
        # BatchNorm already averaged over `bn`; the running averages of all groups are averaged.
        new_bs = jax.lax.pmean(new_bs, GROUP_AXES[0])
        loss, correct = per_example(logits, batch)
        return loss, correct, new_bs

    sharded = jax.shard_map(
        per_shard,
        mesh=_group_mesh(mesh, per_device, k),
        in_specs=(P(), P(), spec, P()),
        out_specs=(spec, spec, P()),
    )

    def loss_fn(params, batch_stats, batch, rng):
        loss, correct, new_bs = sharded(params, batch_stats, batch, rng)
        return loss.mean(), (new_bs, correct.sum())

    return loss_fn


def make_train_step(
    config: ml_collections.ConfigDict,
    forward: Forward,
    per_example: PerExample,
    mesh: Mesh,
    tx: optax.GradientTransformation,
    lr_fn: optax.Schedule,
    state_shardings: Any,
    compiler_options: dict[str, str] | None = None,
) -> Callable:
    """The jitted `(state, batch) -> (state, metrics)`; the state is donated.

    With `config.grad_accum_steps = A > 1`, micro-batch j takes examples j, j + A, ... (each stays
    spread over all devices; BatchNorm statistics per micro-batch) and the gradients are averaged.
    Metrics: loss, accuracy, learning_rate, l2_grads, l2_params (replicated scalars).
    `compiler_options`: XLA options of the compiled step (`i3d_jax.graph.jit_options`).
    """
    accum = config.grad_accum_steps
    micro = config.batch_size // accum
    loss_fn = make_loss_fn(config, forward, per_example, mesh, micro)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    base_key = jax.random.key(config.seed)
    micro_sharding = NamedSharding(mesh, P(None, sharding.BATCH_AXES))

    def split(x):
        x = x.reshape(micro, accum, *x.shape[1:])
        return jax.lax.with_sharding_constraint(jnp.swapaxes(x, 0, 1), micro_sharding)

    def step_fn(state, batch):
        rng = jax.random.fold_in(base_key, state["step"])
        params = state["params"]
        if accum == 1:
            (loss, (new_bs, correct)), grads = grad_fn(params, state["batch_stats"], batch, rng)
        else:

            def body(carry, xs):
                bs, gsum, lsum, csum = carry
                part, j = xs
                (loss, (bs, correct)), g = grad_fn(params, bs, part, jax.random.fold_in(rng, j))
                return (bs, jax.tree.map(jnp.add, gsum, g), lsum + loss, csum + correct), None

            zeros = jax.tree.map(jnp.zeros_like, params)
            init = (state["batch_stats"], zeros, jnp.zeros((), jnp.float32), jnp.zeros(()))
            (new_bs, gsum, lsum, correct), _ = jax.lax.scan(
                body, init, (jax.tree.map(split, batch), jnp.arange(accum))
            )
            grads = jax.tree.map(lambda g: g / accum, gsum)
            loss = lsum / accum
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        new_params = optax.apply_updates(params, updates)
        new_state = {
            "step": state["step"] + 1,
            "params": new_params,
            "batch_stats": new_bs,
            "opt_state": opt_state,
        }
        metrics = {
            "loss": loss,
            "accuracy": correct / config.batch_size,
            "learning_rate": lr_fn(state["step"]),
            "l2_grads": optax.tree.norm(grads),
            "l2_params": optax.tree.norm(new_params),
        }
        return new_state, metrics

    return jax.jit(
        step_fn,
        in_shardings=(state_shardings, sharding.batch_sharding(mesh)),
        out_shardings=(state_shardings, sharding.replicated(mesh)),
        donate_argnums=0,
        compiler_options=compiler_options,
    )


def make_eval_step(
    forward: Forward,
    mesh: Mesh,
    inputs: tuple[str, ...] = ("video",),
    compiler_options: dict[str, str] | None = None,
) -> Callable:
    """The jitted `(variables, batch) -> {"logits", every batch entry but the inputs}`, replicated."""

    def step(variables, batch):
        logits, _ = forward(variables, batch, False, jax.random.key(0))
        return {"logits": logits, **{k: v for k, v in batch.items() if k not in inputs}}

    return jax.jit(step, out_shardings=sharding.replicated(mesh), compiler_options=compiler_options)
