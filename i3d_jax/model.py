"""The inflated Inception-v1 (I3D) of Carreira & Zisserman (2017) in Flax linen.

Inputs are `[B, T, H, W, C]` float (RGB in [-1, 1] with C=3, or flow in [-1, 1] with C=2); the
network is NDHWC throughout. Parameter paths mirror the release's variable names, e.g.
`Mixed_4b/Branch_1/Conv3d_0b_3x3/conv_3d/kernel` and `.../batch_norm/{bias,mean,var}`, so every
weight format maps onto it name for name.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from i3d_jax import schedules
from i3d_jax.conv import Conv, space_to_depth, time_to_channels  # noqa: F401 (re-exported)
from i3d_jax.graph import Graph, resolve
from i3d_jax.pooling import max_pool_same, same_padding
from i3d_jax.schedules import ENDPOINTS, RELEASE_CHANNELS, PoolingSchedule

Dtype = Any

# (branch, unit name, index into the channel tuple, kernel) of one Inception block.
BRANCH_UNITS = (
    ("Branch_0", (("Conv3d_0a_1x1", 0, 1),)),
    ("Branch_1", (("Conv3d_0a_1x1", 1, 1), ("Conv3d_0b_3x3", 2, 3))),
    ("Branch_2", (("Conv3d_0a_1x1", 3, 1), ("Conv3d_0b_3x3", 4, 3))),
    ("Branch_3", (("Conv3d_0b_1x1", 5, 1),)),
)


def pool_method(pool: str, train: bool) -> str:
    """The `max_pool_same` method for a `Graph.pool` choice in training or inference."""
    return "taps" if pool == "taps" or (pool == "taps_train" and train) else "xla"


class Unit3D(nn.Module):
    """Conv (no bias, TF SAME padding) -> BatchNorm (offset, optional scale) -> ReLU.

    With `temporal_padding="replicate"` the time axis is padded by repeating the border frames
    instead of zeros, which makes a clip of one repeated image a fixed point at every frame.
    `fold_bn=True` is the inference form: BatchNorm folded into a conv bias
    (`i3d_jax.deploy.fold_batchnorm` makes its params). Works for any number of spatial dims:
    the 2D source network uses it with 2D kernels.
    """

    features: int
    kernel: Sequence[int] = (1, 1, 1)
    stride: Sequence[int] | None = None  # None: 1 on every axis
    use_batch_norm: bool = True
    use_bias: bool = False
    activation: bool = True
    bn_scale: bool = False
    bn_momentum: float = 0.999
    bn_epsilon: float = 1e-3
    bn_axis_name: str | None = None
    temporal_padding: str = "zeros"
    space_to_depth: bool = False
    time_to_channels: bool = False
    fold_bn: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        spatial = x.shape[1:-1]
        stride = tuple(self.stride) if self.stride is not None else (1,) * len(self.kernel)
        pads = [same_padding(n, k, s) for n, k, s in zip(spatial, self.kernel, stride, strict=True)]
        if self.temporal_padding == "replicate" and len(spatial) == 3 and pads[0] != (0, 0):
            x = jnp.pad(x, ((0, 0), pads[0], (0, 0), (0, 0), (0, 0)), mode="edge")
            pads[0] = (0, 0)
        batch_norm = self.use_batch_norm and not self.fold_bn
        x = Conv(
            self.features,
            tuple(self.kernel),
            stride,
            pads,
            use_bias=self.use_bias or (self.use_batch_norm and self.fold_bn),
            space_to_depth=self.space_to_depth,
            time_to_channels=self.time_to_channels,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="conv_3d",
        )(x)
        if batch_norm:
            x = nn.BatchNorm(
                use_running_average=not train,
                momentum=self.bn_momentum,
                epsilon=self.bn_epsilon,
                use_scale=self.bn_scale,
                use_bias=True,
                axis_name=self.bn_axis_name,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name="batch_norm",
            )(x)
        if self.activation:
            x = nn.relu(x)
        return x


class Branch(nn.Module):
    """One Inception branch: an optional 3x3x3 max-pool, then its units in order."""

    units: Sequence[tuple[str, int, int]]  # (name, features, kernel size)
    pool_first: bool
    unit: functools.partial
    ndim: int = 3
    pool: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.pool_first:
            x = max_pool_same(x, (3,) * self.ndim, (1,) * self.ndim, pool_method(self.pool, train))
        for name, features, k in self.units:
            x = self.unit(features=features, kernel=(k,) * self.ndim, name=name)(x, train)
        return x


class InceptionBlock(nn.Module):
    """Four parallel branches (1x1; 1x1->3x3; 1x1->3x3; pool->1x1), concatenated on channels.

    `fuse_1x1=True` (inference form, with `fold_bn`) runs the three 1x1x1 convs that read the
    block's input as one conv named `Fused_1x1` (see `i3d_jax.deploy`).
    """

    channels: Sequence[int]
    unit: functools.partial
    ndim: int = 3
    fuse_1x1: bool = False
    pool: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.fuse_1x1:
            return self.fused(x, train)
        outs = []
        for branch, units in BRANCH_UNITS:
            spec = tuple((name, self.channels[i], k) for name, i, k in units)
            block = Branch(
                units=spec, pool_first=branch == "Branch_3", unit=self.unit, ndim=self.ndim,
                pool=self.pool, name=branch,
            )  # fmt: skip
            outs.append(block(x, train))
        return jnp.concatenate(outs, axis=-1)

    def fused(self, x: jax.Array, train: bool) -> jax.Array:
        c = self.channels
        one = (1,) * self.ndim
        three = (3,) * self.ndim
        y = self.unit(features=c[0] + c[1] + c[3], kernel=one, name="Fused_1x1")(x, train)
        b0, b1, b2 = jnp.split(y, [c[0], c[0] + c[1]], axis=-1)
        b1 = self.unit(features=c[2], kernel=three, name="Branch_1_Conv3d_0b_3x3")(b1, train)
        b2 = self.unit(features=c[4], kernel=three, name="Branch_2_Conv3d_0b_3x3")(b2, train)
        b3 = max_pool_same(x, three, one, pool_method(self.pool, train))
        b3 = self.unit(features=c[5], kernel=one, name="Branch_3_Conv3d_0b_1x1")(b3, train)
        return jnp.concatenate([b0, b1, b2, b3], axis=-1)


def scale_channels(table: dict, divisor: int, minimum: int = 2) -> dict:
    """A narrower channel table (every width divided, at least `minimum`), for small presets."""

    def scale(c: int) -> int:
        return max(minimum, c // divisor)

    return {
        k: (tuple(scale(c) for c in v) if isinstance(v, tuple) else scale(v))
        for k, v in table.items()
    }


def _channel_items(table: dict) -> tuple:
    return tuple(sorted(table.items()))


class InceptionI3d(nn.Module):
    """Inflated Inception-v1.

    Attributes:
      num_classes: width of the logits layer.
      schedule: a `PoolingSchedule` or its name (see `i3d_jax.schedules.SCHEDULES`).
      channels: the channel table as sorted `(endpoint, widths)` pairs (`RELEASE_CHANNELS`).
      input_channels: 3 for RGB, 2 for flow; checked on every call.
      dropout_rate: dropout before the logits layer when `train=True` (a rate, not keep_prob).
      final_endpoint: the last endpoint built (one of `ENDPOINTS`).
      global_pool: average over all spatial positions before the logits instead of the
        release's 7x7 VALID window, so any spatial size works.
      bn_scale, bn_momentum, bn_epsilon: BatchNorm options (release: no scale, 0.999, 1e-3).
      bn_axis_name: mesh/shard_map axis over which batch statistics are averaged.
      temporal_padding: "zeros" (release) or "replicate" (exact boring-video fixed point).
      dtype, param_dtype: compute and parameter dtypes; logits are always float32.
      ndim: 3 for I3D; 2 builds the 2D Inception-v1 source network with the same names.
      graph: how the network is computed, never what: an `i3d_jax.graph.Graph`, a name in
        `i3d_jax.graph.NAMED`, or "auto" (default: the graph measured fastest on the default
        backend, `i3d_jax.graph.FASTEST`). Names and "auto" become a `Graph` when the module is
        constructed, so `model.graph` is always the concrete choice.

    Returns `(output, endpoints)`: the output of `final_endpoint` and a dict of every endpoint
    up to it. `Logits` is `[B, num_classes]` (averaged over time), `Logits_per_time` is
    `[B, T', num_classes]`, `Predictions` is the softmax of `Logits`.
    """

    num_classes: int = 400
    schedule: PoolingSchedule | str = "paper"
    channels: tuple = _channel_items(RELEASE_CHANNELS)
    input_channels: int = 3
    dropout_rate: float = 0.0
    final_endpoint: str = "Logits"
    global_pool: bool = False
    bn_scale: bool = False
    bn_momentum: float = 0.999
    bn_epsilon: float = 1e-3
    bn_axis_name: str | None = None
    temporal_padding: str = "zeros"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    ndim: int = 3
    graph: Graph | str = "auto"

    def __post_init__(self):
        # Resolved at construction (a linen module is a frozen dataclass), never while tracing.
        object.__setattr__(self, "graph", resolve(self.graph))
        super().__post_init__()

    def check_input(self, x: jax.Array) -> None:
        """Raises ValueError for a wrong rank, channel count, or a too-short/too-small clip."""
        sched = schedules.get_schedule(self.schedule)
        layout = "[B, T, H, W, C]" if self.ndim == 3 else "[B, H, W, C]"
        if x.ndim != self.ndim + 2:
            raise ValueError(
                f"expected input of rank {self.ndim + 2} {layout} with C={self.input_channels}, "
                f"got shape {tuple(x.shape)}"
            )
        if x.shape[-1] != self.input_channels:
            raise ValueError(
                f"expected {self.input_channels} input channels {layout}, got shape "
                f"{tuple(x.shape)}"
            )
        if self.final_endpoint not in ENDPOINTS:
            raise ValueError(
                f"unknown final_endpoint {self.final_endpoint!r}; expected one of {ENDPOINTS}"
            )
        if self.ndim == 3 and self.final_endpoint in ("Logits", "Predictions"):
            need = schedules.min_frames(sched)
            if x.shape[1] < need:
                raise ValueError(
                    f"clip of {x.shape[1]} frames is too short for pooling schedule "
                    f"{sched.name!r}: need at least {need} frames"
                )
        if self.final_endpoint in ("Logits", "Predictions"):
            need = schedules.min_spatial(sched, self.global_pool)
            if min(x.shape[-3:-1]) < need:
                raise ValueError(
                    f"spatial size {tuple(x.shape[-3:-1])} is too small for the {sched.logits_pool[1]}x"
                    f"{sched.logits_pool[2]} logits pool: need at least {need} (or global_pool=True)"
                )

    def unit(self) -> functools.partial:
        return functools.partial(
            Unit3D,
            bn_scale=self.bn_scale,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            bn_axis_name=self.bn_axis_name,
            temporal_padding=self.temporal_padding,
            time_to_channels=self.graph.time_to_channels == "all",
            fold_bn=self.graph.fold_bn,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, dict[str, jax.Array]]:
        self.check_input(x)
        sched = schedules.get_schedule(self.schedule)
        table = dict(self.channels)
        unit = self.unit()
        nd = self.ndim
        graph = self.graph

        def dims(t: Sequence[int]) -> tuple[int, ...]:
            return tuple(t)[3 - nd :]

        x = x.astype(self.dtype)
        endpoints: dict[str, jax.Array] = {}
        for layer in schedules.layers(sched):
            if layer.kind == "conv":
                first = layer.name == ENDPOINTS[0]
                x = unit(
                    features=table[layer.name],
                    kernel=dims(layer.kernel),
                    stride=dims(layer.stride),
                    space_to_depth=first and graph.conv1_space_to_depth,
                    time_to_channels=graph.time_to_channels == "all"
                    or (first and graph.time_to_channels == "conv1"),
                    name=layer.name,
                )(x, train)
            elif layer.kind == "pool":
                pool = pool_method(graph.pool, train)
                x = max_pool_same(x, dims(layer.kernel), dims(layer.stride), pool)
            elif layer.kind == "inception":
                block = (
                    nn.remat(InceptionBlock, static_argnums=(2,)) if graph.remat else InceptionBlock
                )
                x = block(
                    channels=table[layer.name], unit=unit, ndim=nd, fuse_1x1=graph.fuse_1x1,
                    pool=graph.pool, name=layer.name,
                )(x, train)  # fmt: skip
            else:
                logits = self.logits_head(x, dims(layer.kernel), unit, train)
                endpoints["Logits_per_time"] = logits
                x = logits.mean(axis=1) if nd == 3 else logits
            endpoints[layer.name] = x
            if layer.name == self.final_endpoint:
                return x, endpoints
        endpoints["Predictions"] = jax.nn.softmax(x)
        return endpoints["Predictions"], endpoints

    def logits_head(self, x: jax.Array, window, unit, train: bool) -> jax.Array:
        """Average pool (VALID), dropout, 1x1 conv with bias; spatial positions averaged."""
        spatial_axes = tuple(range(x.ndim - 3, x.ndim - 1))
        if self.global_pool:
            if self.ndim == 3:
                x = nn.avg_pool(x, (window[0], 1, 1), padding="VALID")
            x = x.mean(axis=spatial_axes, keepdims=True)
        else:
            x = nn.avg_pool(x, tuple(window), padding="VALID")
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        head_unit = functools.partial(
            unit,
            features=self.num_classes,
            use_batch_norm=False,
            use_bias=True,
            activation=False,
            dtype=jnp.float32,
        )
        logits = LogitsHead(unit=head_unit, name="Logits")(x.astype(jnp.float32))
        # Spatial positions (1x1 at the release's input size) are averaged: fully convolutional.
        return logits.mean(axis=spatial_axes)


class LogitsHead(nn.Module):
    """Holds the logits conv under the release's name `Logits/Conv3d_0c_1x1`."""

    unit: functools.partial

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return self.unit(kernel=(1,) * (x.ndim - 2), name="Conv3d_0c_1x1")(x)


def tiny(**kwargs) -> InceptionI3d:
    """A narrow I3D (channels / 16) with global pooling: for tests on small clips."""
    defaults = dict(
        num_classes=10,
        channels=_channel_items(scale_channels(RELEASE_CHANNELS, 16)),
        global_pool=True,
    )
    return InceptionI3d(**{**defaults, **kwargs})


def small(**kwargs) -> InceptionI3d:
    """A quarter-width I3D with global pooling: the CPU demo's network."""
    defaults = dict(channels=_channel_items(scale_channels(RELEASE_CHANNELS, 4)), global_pool=True)
    return InceptionI3d(**{**defaults, **kwargs})


# name -> factory(**options) -> a linen module taking `[B, T, H, W, C]` and returning
# `(output, endpoints)` with `endpoints["Logits"]`; configs name one (`config.model.preset`).
PRESETS: dict[str, Any] = {"release": InceptionI3d, "small": small, "tiny": tiny}


def register_preset(name: str, factory: Any) -> None:
    """Makes `factory` available as `config.model.preset=name` (e.g. a stand-in model in tests).

    Registering the same factory again is a no-op; another factory under a taken name is an error.
    """
    if PRESETS.get(name, factory) is not factory:
        raise ValueError(f"model preset {name!r} is already registered to {PRESETS[name]!r}")
    PRESETS[name] = factory


def preset_global_pool(name: str) -> bool | None:
    """Whether a built-in preset averages over space before the logits (`small`, `tiny`: any
    spatial size) or not (`release`: its logits pool sets a minimum size); None for a
    registered preset."""
    factory = PRESETS.get(name)
    if factory is InceptionI3d:
        return False
    return True if factory in (small, tiny) else None


def get_preset(name: str) -> Any:
    """The factory registered as `name`; ValueError naming the registered presets otherwise."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]
