"""I3D as an ONNX graph, for ONNX Runtime and TensorRT (`trtexec --onnx=model.onnx --fp16`).

The graph is written node by node from the same data the linen model reads: the layer list of
its pooling schedule (`i3d_jax.schedules.layers`), its channel table and options, and its
variables (`{'params', 'batch_stats'}`). Every operator is a standard ONNX one that ONNX Runtime
and TensorRT run natively: `Conv` (3D, explicit TF SAME padding), `BatchNormalization` (or
none, BatchNorm folded into the conv biases), `Relu`, `MaxPool`, `Concat`, `AveragePool`,
`ReduceMean`, `Transpose`, `Softmax`, `Pad` (edge mode, for `temporal_padding="replicate"`)
and `Cast` (the `fp16` form, whose BatchNorm is always folded). Opset `OPSET` (17), IR version 8.

The input `clip` is float32 `[B, T, H, W, C]` in [-1, 1], as every model of this package takes
it; the graph transposes it to `NCDHW` itself. The output is the chosen endpoint, named after
it: `Logits` `[B, num_classes]`, `Logits_per_time` `[B, T', num_classes]`, `Predictions`, or a
feature map `[B, T', H', W', C']` (float32 in every form).

TF SAME padding depends on a layer's input size, so the clip shape is static by default. A
dynamic batch axis is always exact. A dynamic time axis is exact for clips whose length is a
multiple of the schedule's time stride up to the endpoint (8 for the paper's schedule): then
every layer that strides in time sees a multiple of its stride and its padding is the same for
every such length. `check_options` refuses what the graph cannot represent.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from flax import traverse_util

from i3d_jax import deploy, schedules
from i3d_jax.model import BRANCH_UNITS, InceptionI3d
from i3d_jax.pooling import same_padding

OPSET = 17
IR_VERSION = (
    8  # what opset 17 shipped with (onnx 1.12); TensorRT 8.6+ and ONNX Runtime 1.12+ read it
)
INPUT = "clip"
OUTPUT_ENDPOINTS = (*schedules.ENDPOINTS, "Logits_per_time")
LOGITS_ENDPOINTS = ("Logits", "Logits_per_time", "Predictions")


def time_stride(model: InceptionI3d, endpoint: str = "Logits") -> int:
    """The product of the time strides of the layers up to `endpoint` (8 for "paper")."""
    stride = 1
    for layer in schedules.layers(model.schedule):
        if layer.kind == "logits":
            break
        stride *= layer.stride[0]
        if layer.name == endpoint:
            break
    return stride


def min_clip_frames(model: InceptionI3d, endpoint: str = "Logits") -> int:
    """The shortest clip the endpoint can be computed from (1 below the logits)."""
    if endpoint in LOGITS_ENDPOINTS:
        return schedules.min_frames(model.schedule)
    return 1


def check_options(
    model: Any,
    frames: int,
    size: int,
    endpoint: str = "Logits",
    dynamic_time: bool = False,
) -> None:
    """Raises ValueError, naming the option and what would work, unless the graph can be
    written for this model, clip shape and endpoint."""
    if not isinstance(model, InceptionI3d) or model.ndim != 3:
        raise ValueError("only the 3D I3D network (an InceptionI3d with ndim=3) can be written")
    if model.graph.fuse_1x1:
        raise ValueError("variables with fused 1x1x1 convs cannot be written; export unfused ones")
    if endpoint not in OUTPUT_ENDPOINTS:
        raise ValueError(f"unknown --endpoint {endpoint!r}; expected one of {OUTPUT_ENDPOINTS}")
    if frames < 1 or size < 1:
        raise ValueError(f"--frames and --size must be positive, got {frames} and {size}")
    sched = schedules.get_schedule(model.schedule)
    need = min_clip_frames(model, endpoint)
    if frames < need:
        raise ValueError(
            f"--frames {frames} is too short for pooling schedule {sched.name!r}: {endpoint} "
            f"needs clips of at least {need} frames"
        )
    if endpoint in LOGITS_ENDPOINTS:
        need = schedules.min_spatial(sched, model.global_pool)
        if size < need:
            raise ValueError(
                f"--size {size} is too small for the {sched.logits_pool[1]}x"
                f"{sched.logits_pool[2]} logits pool of this model: need at least {need} "
                "(a model with global_pool=True takes any size)"
            )
    stride = time_stride(model, endpoint)
    if dynamic_time and frames % stride:
        up = -(-frames // stride) * stride
        raise ValueError(
            f"--dynamic_time needs --frames a multiple of {stride} (the time stride of schedule "
            f"{sched.name!r} up to {endpoint}: only then is every padding the same for all "
            f"lengths); got {frames}, e.g. --frames {up}"
        )


def dynamic_frames(model: InceptionI3d, endpoint: str = "Logits") -> tuple[int, int]:
    """(multiple, least): the clip lengths a dynamic-time graph is exact for."""
    stride = time_stride(model, endpoint)
    return stride, max(stride, -(-min_clip_frames(model, endpoint) // stride) * stride)


@dataclasses.dataclass
class _Shape:
    """The running activation shape (T, H, W, C); T is the nominal (static) clip's."""

    t: int
    h: int
    w: int
    c: int


class _Builder:
    """Collects nodes and initializers; names values after the layers that make them."""

    def __init__(self, onnx, dtype: np.dtype):
        self.onnx = onnx
        self.dtype = np.dtype(dtype)
        self.nodes: list = []
        self.initializers: list = []
        self._names: set[str] = set()

    def name(self, base: str) -> str:
        name, i = base, 1
        while name in self._names:
            i += 1
            name = f"{base}:{i}"
        self._names.add(name)
        return name

    def const(self, name: str, array: np.ndarray, dtype: np.dtype | None = None) -> str:
        array = np.ascontiguousarray(np.asarray(array, dtype or self.dtype))
        name = self.name(name)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: Sequence[str], name: str, **attrs) -> str:
        out = self.name(name)
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out


def _flat(tree: Mapping) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(dict(tree), sep="/").items()}


class _Writer:
    """Writes the network's layers into a `_Builder`, tracking the activation shape."""

    def __init__(self, model, variables, builder: _Builder, folded: bool):
        self.model, self.b, self.folded = model, builder, folded
        self.params = _flat(variables["params"])
        self.stats = _flat(variables.get("batch_stats", {}))

    def unit(
        self, x: str, shape: _Shape, name: str, kernel, stride=(1, 1, 1)
    ) -> tuple[str, _Shape]:
        """Conv (TF SAME) -> BatchNorm (or its folded bias) -> ReLU, as `Unit3D` computes it."""
        b, p = self.b, self.params
        w = p[f"{name}/conv_3d/kernel"]
        features = w.shape[-1]
        sizes = (shape.t, shape.h, shape.w)
        pads = [same_padding(n, k, s) for n, k, s in zip(sizes, kernel, stride, strict=True)]
        if self.model.temporal_padding == "replicate" and pads[0] != (0, 0):
            t0, t1 = pads[0]
            widths = b.const(f"{name}/pad_time", [0, 0, t0, 0, 0, 0, 0, t1, 0, 0], np.int64)
            x = b.node("Pad", [x, widths], f"{name}/pad_time", mode="edge")
            pads[0] = (0, 0)
        inputs = [x, b.const(f"{name}/conv_3d/kernel", w.transpose(4, 3, 0, 1, 2))]
        if f"{name}/conv_3d/bias" in p:
            inputs.append(b.const(f"{name}/conv_3d/bias", p[f"{name}/conv_3d/bias"]))
        y = b.node(
            "Conv", inputs, f"{name}/conv_3d", kernel_shape=list(kernel),
            strides=list(stride), pads=[q[0] for q in pads] + [q[1] for q in pads],
        )  # fmt: skip
        if not self.folded:
            unit = f"{name}/batch_norm"
            scale = p.get(f"{unit}/scale", np.ones(features, np.float32))
            y = b.node(
                "BatchNormalization",
                [y, b.const(f"{unit}/scale", scale), b.const(f"{unit}/bias", p[f"{unit}/bias"]),
                 b.const(f"{unit}/mean", self.stats[f"{unit}/mean"]),
                 b.const(f"{unit}/var", self.stats[f"{unit}/var"])],
                unit, epsilon=float(self.model.bn_epsilon),
            )  # fmt: skip
        y = b.node("Relu", [y], f"{name}/relu")
        out = [math.ceil(n / s) for n, s in zip(sizes, stride, strict=True)]
        return y, _Shape(*out, features)

    def max_pool(self, x: str, shape: _Shape, name: str, window, stride) -> tuple[str, _Shape]:
        sizes = (shape.t, shape.h, shape.w)
        pads = [same_padding(n, k, s) for n, k, s in zip(sizes, window, stride, strict=True)]
        y = self.b.node(
            "MaxPool", [x], name, kernel_shape=list(window), strides=list(stride),
            pads=[q[0] for q in pads] + [q[1] for q in pads],
        )  # fmt: skip
        out = [math.ceil(n / s) for n, s in zip(sizes, stride, strict=True)]
        return y, _Shape(*out, shape.c)

    def inception(self, x: str, shape: _Shape, name: str) -> tuple[str, _Shape]:
        outs, width = [], 0
        for branch, units in BRANCH_UNITS:
            y, s = x, shape
            if branch == "Branch_3":
                y, s = self.max_pool(y, s, f"{name}/{branch}/max_pool", (3, 3, 3), (1, 1, 1))
            for unit, _, k in units:
                y, s = self.unit(y, s, f"{name}/{branch}/{unit}", (k, k, k))
            outs.append(y)
            width += s.c
        return self.b.node("Concat", outs, f"{name}/concat", axis=1), dataclasses.replace(
            shape, c=width
        )

    def logits(self, x: str, shape: _Shape, window) -> tuple[str, str, _Shape]:
        """Average pool (VALID), the 1x1x1 logits conv, means over space then time: returns
        (Logits_per_time `[B, T', classes]`, Logits `[B, classes]`, the per-time shape)."""
        b, m = self.b, self.model
        if b.dtype != np.float32:  # logits are float32 in every form, as in the linen model
            x = b.node("Cast", [x], "Logits/cast", to=self.b.onnx.TensorProto.FLOAT)
        if m.global_pool:
            x = b.node("AveragePool", [x], "Logits/avg_pool", kernel_shape=[window[0], 1, 1])
            x = b.node("ReduceMean", [x], "Logits/mean_space_in", axes=[3, 4], keepdims=1)
            t = shape.t - window[0] + 1
        else:
            x = b.node("AveragePool", [x], "Logits/avg_pool", kernel_shape=list(window))
            t = shape.t - window[0] + 1
        name = "Logits/Conv3d_0c_1x1"
        w = self.params[f"{name}/conv_3d/kernel"]
        y = b.node(
            "Conv",
            [x, b.const(f"{name}/conv_3d/kernel", w.transpose(4, 3, 0, 1, 2), np.float32),
             b.const(f"{name}/conv_3d/bias", self.params[f"{name}/conv_3d/bias"], np.float32)],
            f"{name}/conv_3d", kernel_shape=[1, 1, 1],
        )  # fmt: skip
        y = b.node("ReduceMean", [y], "Logits/mean_space", axes=[3, 4], keepdims=0)
        per_time = b.node("Transpose", [y], "Logits/per_time", perm=[0, 2, 1])
        logits = b.node("ReduceMean", [per_time], "Logits/mean_time", axes=[1], keepdims=0)
        return per_time, logits, _Shape(t, 1, 1, w.shape[-1])


def build(
    model: InceptionI3d,
    variables: Mapping,
    frames: int = 64,
    size: int = 224,
    endpoint: str = "Logits",
    dynamic_batch: bool = False,
    dynamic_time: bool = False,
    fold_bn: bool = False,
    fp16: bool = False,
):
    """The `onnx.ModelProto` of `model` with `variables` up to `endpoint`, for clips of
    `[B, frames, size, size, C]` (B = 1 unless `dynamic_batch`; T symbolic with
    `dynamic_time`, see the module docstring). `fold_bn`: BatchNorm folded into the conv
    biases (`i3d_jax.deploy.fold_batchnorm`). `fp16`: float16 weights and activations up to the
    logits head (input and output stay float32), always folded first (in float64, then
    rounded once: half the error of rounding kernels and BatchNorm statistics apart). Raises
    ValueError as `check_options` does."""
    import onnx

    check_options(model, frames, size, endpoint, dynamic_time)
    fold_bn = fold_bn or fp16
    folded = fold_bn or model.graph.fold_bn or "batch_stats" not in variables
    if fold_bn and not model.graph.fold_bn and "batch_stats" in variables:
        variables = deploy.fold_batchnorm(dict(variables), model.bn_epsilon)
    builder = _Builder(onnx, np.float16 if fp16 else np.float32)
    builder.name(INPUT), builder.name(endpoint)  # the graph's input and output
    w = _Writer(model, variables, builder, folded)
    x = builder.node("Transpose", [INPUT], "to_ncdhw", perm=[0, 4, 1, 2, 3])
    if fp16:
        x = builder.node("Cast", [x], "to_float16", to=onnx.TensorProto.FLOAT16)
    shape = _Shape(frames, size, size, model.input_channels)
    out = None
    for layer in schedules.layers(model.schedule):
        if layer.kind == "conv":
            x, shape = w.unit(x, shape, layer.name, layer.kernel, layer.stride)
        elif layer.kind == "pool":
            x, shape = w.max_pool(x, shape, layer.name, layer.kernel, layer.stride)
        elif layer.kind == "inception":
            x, shape = w.inception(x, shape, layer.name)
        else:
            per_time, logits, shape = w.logits(x, shape, layer.kernel)
            out = {"Logits_per_time": per_time, "Logits": logits}.get(endpoint, logits)
            if endpoint == "Predictions":
                out = builder.node("Softmax", [logits], "Predictions/softmax", axis=-1)
            break
        if layer.name == endpoint:
            out = builder.node("Transpose", [x], f"{endpoint}/to_ndhwc", perm=[0, 2, 3, 4, 1])
            if fp16:
                out = builder.node("Cast", [out], f"{endpoint}/float32", to=onnx.TensorProto.FLOAT)
            break
    batch = "batch" if dynamic_batch else 1
    time_in = "frames" if dynamic_time else frames
    time_out = "frames_out" if dynamic_time else shape.t
    if endpoint in ("Logits", "Predictions"):
        out_shape = [batch, model.num_classes]
    elif endpoint == "Logits_per_time":
        out_shape = [batch, time_out, model.num_classes]
    else:
        out_shape = [batch, time_out, shape.h, shape.w, shape.c]
    # The graph's output is a value named after the endpoint (an Identity keeps node names).
    builder.nodes.append(onnx.helper.make_node("Identity", [out], [endpoint], name="output"))
    f32 = onnx.TensorProto.FLOAT
    graph = onnx.helper.make_graph(
        builder.nodes,
        "i3d",
        [onnx.helper.make_tensor_value_info(
            INPUT, f32, [batch, time_in, size, size, model.input_channels])],
        [onnx.helper.make_tensor_value_info(endpoint, f32, out_shape)],
        initializer=builder.initializers,
    )  # fmt: skip
    proto = onnx.helper.make_model(
        graph,
        opset_imports=[onnx.helper.make_opsetid("", OPSET)],
        producer_name="i3d_jax",
        doc_string="I3D (Inflated 3D ConvNet); input clip [B, T, H, W, C] float32 in [-1, 1]",
    )
    proto.ir_version = IR_VERSION
    onnx.checker.check_model(proto)
    return proto


def session(path: str, threads: int | None = None, providers: Sequence[str] | None = None):
    """An `onnxruntime.InferenceSession` of `path` (CPU unless `providers` says otherwise)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(
        str(path), options, providers=list(providers or ["CPUExecutionProvider"])
    )


def check_clip(x: Any, declared: Sequence[Any], frames: tuple[int, int] | None = None) -> None:
    """Raises ValueError unless `x` fits the declared input shape (ints static, strings
    symbolic); with a symbolic T, `frames` = (multiple, least) is the rule T must follow."""
    shape = tuple(np.shape(x))
    want = "[" + ", ".join(str(d) for d in declared) + "]"
    if len(shape) != len(declared) or any(
        isinstance(d, int) and d != n for d, n in zip(declared, shape, strict=False)
    ):
        raise ValueError(f"this ONNX model takes clips of shape {want}; got {shape}")
    if frames and isinstance(declared[1], str):
        multiple, least = frames
        if shape[1] % multiple or shape[1] < least:
            up = max(least, -(-shape[1] // multiple) * multiple)
            raise ValueError(
                f"this ONNX model takes clips of a multiple of {multiple} frames, at least "
                f"{least}; got {shape[1]} frames (loop or trim the clip, e.g. to {up})"
            )
