"""Optimizer, learning-rate schedule and train state: the abstract state (shapes only) and the
state created already sharded on the mesh, from any task's variables.

The train state is a plain dict pytree `{"step", "params", "batch_stats", "opt_state"}`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import traverse_util
from jax.sharding import Mesh

from i3d_jax import sharding


def learning_rate_fn(config: ml_collections.ConfigDict) -> optax.Schedule:
    """step -> learning rate: the paper's steps, warmup + cosine, or constant."""
    c, total = config.lr, config.num_train_steps
    if c.schedule == "step":
        main = optax.piecewise_constant_schedule(
            c.base, {int(b) - c.warmup_steps: c.decay_factor for b in c.boundaries}
        )
    elif c.schedule == "cosine":
        main = optax.cosine_decay_schedule(c.base, max(total - c.warmup_steps, 1))
    else:
        main = optax.constant_schedule(c.base)
    if c.warmup_steps <= 0:
        return main
    warm = optax.linear_schedule(c.base / max(c.warmup_steps, 1), c.base, c.warmup_steps)
    return optax.join_schedules([warm, main], [c.warmup_steps])


def decay_mask(params: Any) -> Any:
    """True for conv/dense kernels only: BatchNorm offsets and biases get no weight decay."""
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict({k: k[-1] == "kernel" for k in flat})


def make_optimizer(
    config: ml_collections.ConfigDict,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(optimizer, learning-rate schedule) from `config.optimizer` and `config.lr`."""
    lr = learning_rate_fn(config)
    o = config.optimizer
    parts = []
    if o.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(o.grad_clip_norm))
    if o.weight_decay > 0:
        parts.append(optax.add_decayed_weights(o.weight_decay, mask=decay_mask))
    if o.name == "sgd":
        parts.append(optax.sgd(lr, momentum=o.momentum or None, nesterov=o.nesterov))
    else:
        parts.append(optax.adam(lr))
    return optax.chain(*parts), lr


def new_state(variables: dict, tx: optax.GradientTransformation) -> dict:
    """The train state pytree: step, params, BatchNorm statistics, optimizer state."""
    return {
        "step": jnp.zeros((), jnp.int32),
        "params": variables["params"],
        "batch_stats": variables.get("batch_stats", {}),
        "opt_state": tx.init(variables["params"]),
    }


def abstract_state(
    init_fn: Callable[[jax.Array], dict], tx: optax.GradientTransformation, mesh: Mesh, config
) -> tuple[Any, Any]:
    """(abstract state of `jax.ShapeDtypeStruct`s, its shardings on `mesh`), computing nothing.

    `init_fn(rng) -> variables` is traceable (e.g. `init_variables` bound to a config and model).
    """
    abstract_vars = jax.eval_shape(init_fn, jax.random.key(0, impl="rbg"))
    abstract = jax.eval_shape(lambda v: new_state(v, tx), abstract_vars)
    return abstract, sharding.state_shardings(abstract, mesh, config.mesh.fsdp_min_size)


def create_state(
    init_fn: Callable[[jax.Array], dict],
    host_variables: Callable[[], dict] | None,
    tx: optax.GradientTransformation,
    mesh: Mesh,
    config: ml_collections.ConfigDict,
    rng: jax.Array,
) -> tuple[dict, Any, Any]:
    """(state, shardings, abstract state): the state built already sharded on `mesh`.

    From scratch the variables come from `init_fn(rng)` (replicated, then placed, so values never
    depend on the mesh); otherwise from `host_variables()` (inflation, pretrained weights).
    """
    abstract, shardings = abstract_state(init_fn, tx, mesh, config)
    variables = jax.jit(init_fn)(rng) if host_variables is None else host_variables()
    state = jax.jit(lambda v: new_state(v, tx), out_shardings=shardings)(variables)
    return state, shardings, abstract
