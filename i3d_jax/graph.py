"""How the I3D network is computed, apart from what it computes.

A `Graph` names the ways of computing the same function (tested equal on random weights, gradients
included): 3D convs as 2D convs over time taps, the first conv on space-to-depth blocks, the
max-pool gradient, rematerialisation, and the folded inference form. `"auto"` picks the graph
measured fastest on the backend (`FASTEST`, with the date and the device of each measurement);
it is resolved when the model is constructed, never while tracing.
"""

from __future__ import annotations

import dataclasses

import jax

TIME_TO_CHANNELS = ("none", "conv1", "all")
POOLS = ("xla", "taps", "taps_train")


@dataclasses.dataclass(frozen=True)
class Graph:
    """Options that change how the network is computed, never what it computes.

    Attributes:
      time_to_channels: which 3D convs run as 2D convs with the kernel's time taps folded into
        channels: "none", "conv1" (Conv3d_1a_7x7 only), "all" (1x1x1 convs stay 3D).
      conv1_space_to_depth: Conv3d_1a_7x7 as a stride-1 conv over 2x2x2 blocks (24 channels).
      pool: how max-pools run: "xla" (`reduce_window`, differentiated by `select_and_scatter`),
        "taps" (separable pools over strided slices that keep the argmax and route the gradient
        there; same values, same ties), or "taps_train" ("taps" in training, where the gradient
        is taken, and "xla" in inference, where XLA's forward pool is faster on a GPU).
      remat: rematerialise each Inception block in the backward pass (long clips, less memory).
      fold_bn, fuse_1x1: the inference form made by `i3d_jax.deploy.to_inference`: BatchNorm
        folded into conv biases, each block's three input 1x1x1 convs run as one.
    """

    time_to_channels: str = "none"
    conv1_space_to_depth: bool = False
    pool: str = "xla"
    remat: bool = False
    fold_bn: bool = False
    fuse_1x1: bool = False

    def __post_init__(self):
        if self.time_to_channels not in TIME_TO_CHANNELS:
            raise ValueError(
                f"unknown time_to_channels {self.time_to_channels!r}; expected one of "
                f"{TIME_TO_CHANNELS}"
            )
        if self.pool not in POOLS:
            raise ValueError(f"unknown pool {self.pool!r}; expected one of {POOLS}")
        if self.fuse_1x1 and not self.fold_bn:
            raise ValueError("fuse_1x1 needs fold_bn (the inference form)")

    def replace(self, **changes) -> Graph:
        return dataclasses.replace(self, **changes)


NAMED = {
    "plain": Graph(),  # the release's graph: every conv a 3D conv, XLA's pool gradient
    "s2d": Graph(conv1_space_to_depth=True),
    "t2c1": Graph(time_to_channels="conv1"),
    "t2c1_s2d": Graph(time_to_channels="conv1", conv1_space_to_depth=True),
    "t2c1_s2d_taps": Graph(time_to_channels="conv1", conv1_space_to_depth=True, pool="taps"),
    # Inference is exactly "t2c1_s2d"'s graph, training exactly "t2c1_s2d_taps"'s.
    "t2c1_s2d_taps_train": Graph(
        time_to_channels="conv1", conv1_space_to_depth=True, pool="taps_train"
    ),
    "t2c": Graph(time_to_channels="all"),
    "t2c_taps": Graph(time_to_channels="all", pool="taps"),
    "t2c_s2d_taps": Graph(time_to_channels="all", conv1_space_to_depth=True, pool="taps"),
}
PORTABLE = NAMED["plain"]  # what exports carry: plain 3D convs and pools, any clip length


@dataclasses.dataclass(frozen=True)
class Measurement:
    """Which named graph was fastest on a backend, where and when that was measured."""

    graph: str
    date: str
    device: str
    evidence: str


# The fastest measured graph per backend, for training and inference. Re-measure with
# `benchmarks/gpu_suite.sh` / `benchmarks/throughput.py` and update with the date and device.
FASTEST = {
    "cpu": Measurement(
        "t2c_taps",
        "2026-11-26",
        "2-core x86 CPU, jax 0.10.2",
        "float32 1x16x224x224: inference 3.70 vs plain 1.20 clips/s, training 0.64 vs 0.31",
    ),
    "gpu": Measurement(
        "t2c1_s2d_taps_train",
        "2026-11-27",
        "NVIDIA H200, jax 0.11.2",
        "bf16 8x64x224x224, one process: inference (t2c1_s2d's graph) 810.3 clips/s vs plain "
        "425.6, t2c1_s2d_taps 731.5; training (t2c1_s2d_taps's graph) 252.0 vs plain 124.9, "
        "t2c1_s2d 153.3, t2c_taps 238.6",
    ),
}


def resolve(graph: Graph | str = "auto", backend: str | None = None) -> Graph:
    """A `Graph` from a graph, a name in `NAMED`, or "auto" (the `FASTEST` on `backend`).

    `backend` defaults to `jax.default_backend()`; a backend with no measurement gets `PORTABLE`.
    """
    if isinstance(graph, Graph):
        return graph
    if graph == "auto":
        measured = FASTEST.get(backend or jax.default_backend())
        return NAMED[measured.graph] if measured else PORTABLE
    if graph not in NAMED:
        raise ValueError(f"unknown graph {graph!r}; expected 'auto' or one of {sorted(NAMED)}")
    return NAMED[graph]
