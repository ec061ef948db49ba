"""How the I3D network is computed, apart from what it computes.

A `Graph` names the ways of computing the same function (tested equal on random weights, gradients
included): 3D convs as 2D convs over time taps, the first conv on space-to-depth blocks, the
max-pool gradient, rematerialisation, the folded inference form, and which XLA:CPU library runs
the convolutions (a compiler option: `Graph.compiler_options`, passed to `jax.jit`). `"auto"` picks
the graph measured fastest on the backend (`FASTEST`, with the date and the device of each measurement);
it is resolved when the model is constructed, never while tracing.
"""

from __future__ import annotations

import dataclasses
import functools

import jax

TIME_TO_CHANNELS = ("none", "conv1", "all")
POOLS = ("xla", "taps", "taps_train")
CPU_CONVS = ("ynnpack", "eigen", "eigen_train")
# XLA:CPU's default library fusions (jax 0.10.2) less INDIVIDUAL_CONVOLUTION: convolutions then run
# on Eigen instead of YNNPACK; dots and reductions stay on YNNPACK.
EIGEN_CONVS = {
    "xla_cpu_experimental_ynn_fusion_type": (
        "LIBRARY_FUSION_TYPE_REDUCE,LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"
    )
}


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
      cpu_convs: which library XLA:CPU runs convolutions on, a compiler option of the jitted
        program (see `compiler_options`): "ynnpack" (XLA's default), "eigen" (convolution weight
        gradients measured about 1.8x faster on a 2-core x86 CPU), or "eigen_train" ("eigen" for
        training steps only). No effect on other backends.
      fold_bn, fuse_1x1: the inference form made by `i3d_jax.deploy.to_inference`: BatchNorm
        folded into conv biases, each block's three input 1x1x1 convs run as one.
    """

    time_to_channels: str = "none"
    conv1_space_to_depth: bool = False
    pool: str = "xla"
    remat: bool = False
    fold_bn: bool = False
    fuse_1x1: bool = False
    cpu_convs: str = "ynnpack"

    def __post_init__(self):
        if self.time_to_channels not in TIME_TO_CHANNELS:
            raise ValueError(
                f"unknown time_to_channels {self.time_to_channels!r}; expected one of "
                f"{TIME_TO_CHANNELS}"
            )
        if self.pool not in POOLS:
            raise ValueError(f"unknown pool {self.pool!r}; expected one of {POOLS}")
        if self.cpu_convs not in CPU_CONVS:
            raise ValueError(f"unknown cpu_convs {self.cpu_convs!r}; expected one of {CPU_CONVS}")
        if self.fuse_1x1 and not self.fold_bn:
            raise ValueError("fuse_1x1 needs fold_bn (the inference form)")

    def replace(self, **changes) -> Graph:
        return dataclasses.replace(self, **changes)

    def compiler_options(self, train: bool, backend: str | None = None) -> dict[str, str]:
        """XLA compiler options for a jitted program that runs this graph (`jax.jit(...,
        compiler_options=...)`): a training step if `train`, else inference. Empty unless the
        backend (default `jax.default_backend()`) is "cpu" and this XLA knows the options."""
        wanted = self.cpu_convs == "eigen" or (self.cpu_convs == "eigen_train" and train)
        if not wanted or (backend or jax.default_backend()) != "cpu":
            return {}
        return dict(EIGEN_CONVS) if _cpu_accepts(tuple(EIGEN_CONVS.items())) else {}


@functools.cache
def _cpu_accepts(options: tuple[tuple[str, str], ...]) -> bool:
    """Whether this jaxlib's XLA:CPU compiles with `options` (flag names change between XLAs)."""
    try:
        jax.jit(lambda x: x + 1).lower(jax.ShapeDtypeStruct((2,), "float32")).compile(
            compiler_options=dict(options)
        )
    except Exception:  # noqa: BLE001 - an unknown option or value: run with XLA's defaults
        return False
    return True


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
    # The same network as "t2c_taps"; XLA:CPU runs its convolutions on Eigen, not YNNPACK.
    "t2c_taps_eigen": Graph(time_to_channels="all", pool="taps", cpu_convs="eigen"),
    "t2c_taps_eigen_train": Graph(time_to_channels="all", pool="taps", cpu_convs="eigen_train"),
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
# `benchmarks/gpu_suite.sh` / `benchmarks/throughput.py` (on a shared CPU, `benchmarks/interleaved.py`)
# and update with the date and device.
FASTEST = {
    "cpu": Measurement(
        "t2c_taps_eigen",
        "2026-11-27",
        "2-core x86 CPU (AMD EPYC, AVX-512), jax 0.10.2, torch 2.13, load average 1.5",
        "float32 1x16x224x224, benchmarks/interleaved.py, one process, medians of 7 interleaved "
        "repeats: training 1.39 clips/s vs t2c_taps (YNNPACK convs) 1.06 and PyTorch eager 1.19; "
        "inference 4.23 vs 4.00 and PyTorch 2.84",
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


def jit_options(model, train: bool) -> dict[str, str] | None:
    """`jax.jit(..., compiler_options=)` for a program that runs `model` (None: XLA's defaults).

    A model without a `graph` (a temporal head, a test stand-in) gets XLA's defaults."""
    graph = getattr(model, "graph", None)
    return (graph.compiler_options(train) or None) if isinstance(graph, Graph) else None


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
