"""Model, optimizer and train state: initial variables from scratch, 2D inflation or a pretrained
source, the abstract state (shapes only) and the state created already sharded on the mesh.

The train state is a plain dict pytree `{"step", "params", "batch_stats", "opt_state"}`.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import traverse_util
from jax.sharding import Mesh

from i3d_jax import graph, sharding
from i3d_jax.inception2d import InceptionV1
from i3d_jax.inflate import cross_modality, inflate
from i3d_jax.model import get_preset, small, tiny
from i3d_jax.training.config import DTYPES
from i3d_jax.weights import common, load_pretrained

HEAD = "params/Logits"  # what `init.new_head` re-initialises


def build_model(config: ml_collections.ConfigDict, bn_axis_name: str | None = None) -> nn.Module:
    """The configured preset (compute dtype from the config, float32 params)."""
    factory = get_preset(config.model.preset)
    extra = {}
    if "graph" in getattr(factory, "__dataclass_fields__", {}) or factory in (small, tiny):
        # How the network is computed ("auto": the fastest measured on this backend); remat
        # per Inception block. A stand-in model without a graph: the steps remat the forward.
        extra["graph"] = graph.resolve(config.model.graph).replace(remat=config.model.remat)
    return factory(
        **extra,
        num_classes=config.model.num_classes,
        schedule=config.model.schedule,
        input_channels=input_channels(config),
        dropout_rate=config.model.dropout_rate,
        temporal_padding=config.model.temporal_padding,
        bn_momentum=config.model.bn_momentum,
        bn_axis_name=bn_axis_name,
        dtype=DTYPES[config.model.dtype],
        param_dtype=jnp.float32,
    )


def input_channels(config: ml_collections.ConfigDict) -> int:
    return 3 if config.modality == "rgb" else 2


def input_shape(config: ml_collections.ConfigDict, batch: int = 1) -> tuple[int, ...]:
    """`[B, T, H, W, C]` of a training clip."""
    size = config.input.crop_size
    return (batch, config.input.clip_length, size, size, input_channels(config))


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


def init_variables(config: ml_collections.ConfigDict, model: nn.Module, rng: jax.Array) -> dict:
    """`{'params', 'batch_stats'}` from the model's initialisers (traceable: jit / eval_shape)."""
    x = jnp.zeros(input_shape(config), jnp.float32)
    return dict(model.init({"params": rng}, x, train=False))


def load_2d(source: str, config: ml_collections.ConfigDict) -> dict:
    """2D Inception-v1 variables: an .npz ('/'-joined keys), "random[:seed]", or a 2D
    `load_pretrained` source (torchvision GoogLeNet)."""
    if source.startswith("random"):
        seed = int(source.split(":")[1]) if ":" in source else 0
        model3d = build_model(config)
        m2 = InceptionV1(
            num_classes=config.model.num_classes,
            channels=model3d.channels,
            global_pool=model3d.global_pool,
            input_channels=input_channels(config),
        )
        size = config.input.crop_size
        x = jnp.zeros((1, size, size, m2.input_channels))
        key = jax.random.key(seed, impl="rbg")
        return jax.tree.map(np.asarray, dict(jax.jit(lambda r: m2.init(r, x, train=False))(key)))
    path = pathlib.Path(source)
    if path.suffix == ".npz":
        if not path.is_file():
            raise FileNotFoundError(f"config.init.source: 2D weights file {source!r} not found")
        with np.load(path) as z:
            return traverse_util.unflatten_dict({k: z[k] for k in z.files}, sep="/")
    model2d, variables = load_pretrained(source)  # e.g. torchvision GoogLeNet .pth
    if getattr(model2d, "ndim", 3) != 2:
        raise ValueError(f"config.init.source {source!r} holds 3D weights; inflation needs 2D")
    return jax.tree.map(np.asarray, dict(variables))


def initial_variables(config: ml_collections.ConfigDict, model: nn.Module, rng: jax.Array) -> dict:
    """Host (numpy) variables from scratch, 2D inflation, or a pretrained source (new head);
    "cross_modality": a pretrained RGB source, first kernel averaged over colour (TSN)."""
    fresh = jax.tree.map(np.asarray, jax.jit(lambda r: init_variables(config, model, r))(rng))
    method, new_head = config.init.method, config.init.new_head
    if method == "scratch":
        return fresh
    if method == "inflate":
        v2, target = load_2d(config.init.source, config), fresh
        if new_head:
            v2, target = _without_head(v2), _without_head(fresh)
        out = inflate(v2, target, config.init.inflate_method)
        if new_head:
            out["params"]["Logits"] = fresh["params"]["Logits"]
        return out
    _, loaded = load_pretrained(config.init.source)
    loaded = jax.tree.map(np.asarray, dict(loaded))
    if method == "cross_modality":  # an RGB network for the flow stream (TSN)
        loaded = cross_modality(loaded, input_channels(config))
    return common.merge_onto(fresh, loaded, config.init.source, keep=(HEAD,) if new_head else ())


def _without_head(variables: dict) -> dict:
    out = dict(variables)
    out["params"] = {k: v for k, v in variables["params"].items() if k != "Logits"}
    return out


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
