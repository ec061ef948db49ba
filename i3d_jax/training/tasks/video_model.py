"""The I3D of a run's config: the model, its input shape and its initial variables (from scratch,
inflated from 2D Inception-v1, a pretrained source with an optional new head, or an RGB network
for the flow stream by TSN's cross-modality averaging)."""

from __future__ import annotations

import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util

from i3d_jax import graph
from i3d_jax.inception2d import InceptionV1
from i3d_jax.inflate import cross_modality, inflate
from i3d_jax.model import get_preset, small, tiny
from i3d_jax.training import checkpoints
from i3d_jax.weights import common, load_pretrained, workdir

HEAD = "params/Logits"  # what `init.new_head` re-initialises


def build_model(config: ml_collections.ConfigDict, bn_axis_name: str | None = None) -> nn.Module:
    """The configured preset (compute dtype from the config, float32 params): the options of
    `weights.workdir.model_kwargs`, which rebuilds the same model from a run's config.json."""
    factory = get_preset(config.model.preset)
    extra = {}
    if "graph" in getattr(factory, "__dataclass_fields__", {}) or factory in (small, tiny):
        # How the network is computed ("auto": the fastest measured on this backend); remat
        # per Inception block. A stand-in model without a graph: the steps remat the forward.
        extra["graph"] = graph.resolve(config.model.graph).replace(remat=config.model.remat)
    return factory(**extra, **workdir.model_kwargs(config), bn_axis_name=bn_axis_name)


def input_channels(config: ml_collections.ConfigDict) -> int:
    return workdir.input_channels(config)


def input_shape(config: ml_collections.ConfigDict, batch: int = 1) -> tuple[int, ...]:
    """`[B, T, H, W, C]` of a training clip."""
    return workdir.input_shape(config, batch)


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
    "cross_modality": a pretrained RGB source, first kernel averaged over colour (TSN). Says in
    one line what was loaded from where, and whether the head was replaced."""
    fresh = jax.tree.map(np.asarray, jax.jit(lambda r: init_variables(config, model, r))(rng))
    method, new_head, source = config.init.method, config.init.new_head, config.init.source
    head = " (Logits re-initialised: init.new_head=True)" if new_head else ""
    if method == "scratch":
        return fresh
    if method == "inflate":
        v2, target = load_2d(source, config), fresh
        if new_head:
            v2, target = _without_head(v2), _without_head(fresh)
        out = inflate(v2, target, config.init.inflate_method)
        if new_head:
            out["params"]["Logits"] = fresh["params"]["Logits"]
        print(f"init: 2D weights from {source} inflated to 3D "
              f"({config.init.inflate_method}){head}", flush=True)  # fmt: skip
        return out
    loaded, where = _load_3d(source)
    if method == "cross_modality":  # an RGB network for the flow stream (TSN)
        loaded = cross_modality(loaded, input_channels(config))
    try:
        out = common.merge_onto(fresh, loaded, source, keep=(HEAD,) if new_head else ())
    except ValueError as e:
        raise ValueError(_head_hint(str(e), loaded, config)) from e
    what = "RGB weights averaged over colour (cross_modality)" if method == "cross_modality" else ""
    print(f"init: pretrained weights loaded from {where}{' as ' + what if what else ''}{head}",
          flush=True)  # fmt: skip
    return out


def _load_3d(source: str) -> tuple[dict, str]:
    """(numpy variables, where) of a training workdir or Orbax step directory (its best, else
    latest, checkpoint) or any `load_pretrained` source."""
    found = checkpoints.host_variables(source)
    if found is not None:
        return found
    _, loaded = load_pretrained(source)
    return jax.tree.map(np.asarray, dict(loaded)), source


def _head_hint(error: str, loaded: dict, config: ml_collections.ConfigDict) -> str:
    """The merge error, with what to set when only the head's shape differs."""
    flat = traverse_util.flatten_dict(loaded.get("params", {}), sep="/")
    heads = [v.shape[-1] for k, v in flat.items() if k.startswith("Logits/") and k.endswith("bias")]
    if config.init.new_head or "Logits" not in error:
        return error
    classes = f"{heads[0]} classes" if heads else "another class count"
    return (
        f"{error}\nThe source's head (Logits) has {classes}, config.model.num_classes="
        f"{config.model.num_classes}: set --config.init.new_head=True to start a new head"
    )


def _without_head(variables: dict) -> dict:
    out = dict(variables)
    out["params"] = {k: v for k, v in variables["params"].items() if k != "Logits"}
    return out
