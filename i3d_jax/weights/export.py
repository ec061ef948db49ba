"""Export a checkpoint for other runtimes, each with a JSON model card.

    python -m i3d_jax.export CHECKPOINT --format safetensors|stablehlo|savedmodel|onnx --out PATH
        [--endpoint Logits] [--size 224] [--bake_weights] [--labels FILE]
        [--frames 64] [--dynamic_batch] [--dynamic_time] [--fold_bn] [--fp16]   (onnx)

CHECKPOINT is anything `i3d_jax.load_pretrained` reads (`i3d-jax:kinetics400`, a converted
directory, .pt/.safetensors, a TF checkpoint, a `train.py` workdir: `RUN` (its best checkpoint,
else its latest), `RUN/best/<step>`, `RUN/checkpoints/<step>`, ...). Every card records the
class names: `--labels` (a file or a shipped list), else those the checkpoint carries (a
workdir's dataset classes from its `data.json`, a converted directory's card), else none.

Formats:
  safetensors  `PATH` (.safetensors): the PyTorch state dict in the piergiaj/pytorch-i3d layout
               (what FVD code such as cd-fvd loads), card beside it as `PATH.model_card.json`.
               Note piergiaj's code builds BatchNorm with eps 1e-5; the card records ours (1e-3).
  stablehlo    directory `PATH/`: `model.jax_exported` (`jax.export` serialization of
               `f(variables, x) -> endpoint`), `variables.safetensors` (our tree, paths joined by
               `/`, our `[T, H, W, in, out]` layout), `model_card.json`. The batch and time
               dims are symbolic: `x` is float32 `[B, 8k, size, size, C]` in [-1, 1] with
               `k >= 2` (time a multiple of the network's temporal stride 8, at least 16
               frames, so every SAME padding is static). With `--bake_weights` the weights are
               constants inside the program and `f(x)` takes only the clip. jax.export
               serialization is versioned but not archival: keep the checkpoint too.
               `load_stablehlo(PATH)` returns a callable.
  savedmodel   directory `PATH/`: a TF SavedModel from `jax2tf` (same symbolic dims) with a
               `serving_default` signature; needs TensorFlow, which is optional.
  onnx         `PATH` (.onnx): an ONNX graph (opset 17) for ONNX Runtime and TensorRT
               (`trtexec --onnx=PATH --fp16`), card beside it as `PATH.model_card.json` and
               inside it (metadata `model_card`). Input `clip`: float32 `[B, T, size, size, C]`
               in [-1, 1], static `[1, --frames, --size, --size, C]` unless `--dynamic_batch`
               (B symbolic) or `--dynamic_time` (T symbolic: exact for clips of a multiple of
               the schedule's time stride, 8 for "paper", so --frames must be one). Output:
               the endpoint, named after it, float32. `--fold_bn`: the inference form
               (BatchNorm folded into conv biases); `--fp16`: float16 weights and compute up
               to the float32 logits head (BatchNorm always folded first). Options the graph
               cannot represent (a clip shorter than the schedule allows, a size below the
               logits pool) are refused before any work. Needs the `onnx` package (optional:
               `pip install -r requirements-onnx.txt`); `load_onnx(PATH)` (ONNX Runtime)
               returns a callable.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from i3d_jax import cli, graph
from i3d_jax import labels as label_lists
from i3d_jax.labels import LabelSet
from i3d_jax.model import InceptionI3d

FORMATS = ("safetensors", "stablehlo", "savedmodel", "onnx")
# Flags of --format onnx only (refused with another format, which would ignore them).
ONNX_FLAGS = ("dynamic_batch", "dynamic_time", "fold_bn", "fp16")
ONNX_NEEDS = (
    "--format onnx needs the onnx package, which is optional and not installed "
    "(pip install -r requirements-onnx.txt, or pip install 'i3d_jax[onnx]')"
)
CARD = "model_card.json"
PROGRAM = "model.jax_exported"
WEIGHTS = "variables.safetensors"
TIME_STRIDE = 8  # conv 1a, pool 4a and pool 5a each halve time


def model_card(
    model: InceptionI3d,
    fmt: str,
    source: str | None,
    labels: LabelSet | None = None,
    **extra,
) -> dict[str, Any]:
    """The JSON card of an export: format, model options, preprocessing, input/output, source,
    the class names (`labels`) when known."""
    from i3d_jax.weights import common, orbax_dir

    card = {
        "format": f"i3d_jax.export/{fmt}",
        "format_version": 1,
        "model": common.model_options(model),
        "preprocessing": dict(orbax_dir.PREPROCESSING),
        "source": source,
        "jax_version": jax.__version__,
    }
    if labels is not None:
        card["labels"] = labels.card()
    card.update(extra)
    return card


def _write_json(path: pathlib.Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def endpoint_fn(model: InceptionI3d, endpoint: str = "Logits") -> Callable:
    """`f(variables, x [B, T, H, W, C]) -> the endpoint's array` (inference mode).

    Exports carry the portable graph (`i3d_jax.graph.PORTABLE`: plain 3D convs and pools): it
    serves every runtime, and the time-tap rewrite is not expressible over a symbolic clip length.
    """
    final = "Logits" if endpoint == "Logits_per_time" else endpoint
    model = model.clone(final_endpoint=final, graph=graph.PORTABLE)

    def f(variables, x):
        _, endpoints = model.apply(variables, x)
        return endpoints[endpoint]

    return f


def input_spec(model: InceptionI3d, size: int) -> jax.ShapeDtypeStruct:
    """float32 `[b, 8k, size, size, C]` with symbolic b and k (k >= 2)."""
    from jax import export

    shape = export.symbolic_shape(
        f"b, {TIME_STRIDE}*k, {size}, {size}, {model.input_channels}", constraints=("k >= 2",)
    )
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def flat_variables(variables: Mapping) -> dict[str, np.ndarray]:
    return {
        k: np.ascontiguousarray(np.asarray(v))
        for k, v in traverse_util.flatten_dict(dict(variables), sep="/").items()
    }


def export_stablehlo(
    model: InceptionI3d,
    variables: Mapping,
    out: str | os.PathLike,
    endpoint: str = "Logits",
    size: int = 224,
    bake_weights: bool = False,
    source: str | None = None,
    labels: LabelSet | None = None,
) -> pathlib.Path:
    """Writes the `stablehlo` directory (see the module docstring); returns its path."""
    from jax import export
    from safetensors.numpy import save_file

    out = check_out("stablehlo", out)
    f = endpoint_fn(model, endpoint)
    weights = flat_variables(variables)
    x_spec = input_spec(model, size)
    if bake_weights:
        const = jax.tree.map(jnp.asarray, dict(variables))
        exported = export.export(jax.jit(lambda x: f(const, x)))(x_spec)
    else:
        v_spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), dict(variables))
        exported = export.export(jax.jit(f))(v_spec, x_spec)
    out.mkdir(parents=True, exist_ok=True)
    (out / PROGRAM).write_bytes(exported.serialize())
    if not bake_weights:
        save_file(weights, os.fspath(out / WEIGHTS))
    card = model_card(
        model,
        "stablehlo",
        source,
        labels,
        endpoint=endpoint,
        program=PROGRAM,
        weights=None if bake_weights else WEIGHTS,
        weights_baked=bake_weights,
        calling_convention_version=exported.calling_convention_version,
        platforms=list(exported.platforms),
        input={
            "shape": f"[B, {TIME_STRIDE}*k, {size}, {size}, {model.input_channels}] (k >= 2)",
            "dtype": "float32",
            "range": [-1.0, 1.0],
        },
        output={"shape": str(exported.out_avals[0].shape), "dtype": "float32"},
        arguments="(x,)"
        if bake_weights
        else "(variables, x); variables from variables.safetensors",
    )
    _write_json(out / CARD, card)
    return out


def check_clip(x: Any, size: Sequence[int]) -> None:
    """Raises ValueError unless `x` is `[B, 8k, H, W, C]` with k >= 2 and `(H, W, C) == size`."""
    shape = tuple(np.shape(x))
    want = f"[B, {TIME_STRIDE}*k, {', '.join(map(str, size))}] with k >= 2"
    if len(shape) != 5 or tuple(shape[2:]) != tuple(size):
        raise ValueError(f"this export takes x of shape {want}; got {shape}")
    t = shape[1]
    if t < 2 * TIME_STRIDE or t % TIME_STRIDE:
        raise ValueError(
            f"this export takes clips of at least {2 * TIME_STRIDE} frames and a multiple of "
            f"{TIME_STRIDE} (x {want}); got {t} frames (loop or trim the clip, e.g. to "
            f"{max(2, -(-t // TIME_STRIDE)) * TIME_STRIDE})"
        )


def load_stablehlo(path: str | os.PathLike) -> Callable[[np.ndarray], jax.Array]:
    """Reloads a `stablehlo` export: returns `fn(x [B, 8k, H, W, C]) -> endpoint`; a clip of
    another shape (e.g. fewer than 16 frames) raises ValueError before the program runs."""
    from jax import export
    from safetensors.numpy import load_file

    path = pathlib.Path(path)
    card = json.loads((path / CARD).read_text())
    exported = export.deserialize(bytearray((path / PROGRAM).read_bytes()))
    size = tuple(int(d) for d in exported.in_avals[-1].shape[2:])
    if card.get("weights_baked"):

        def call_baked(x):
            check_clip(x, size)
            return exported.call(x)

        return call_baked
    variables = traverse_util.unflatten_dict(load_file(os.fspath(path / WEIGHTS)), sep="/")

    def call(x):
        check_clip(x, size)
        return exported.call(variables, x)

    return call


def export_safetensors(
    model: InceptionI3d,
    variables: Mapping,
    out: str | os.PathLike,
    source: str | None = None,
    labels: LabelSet | None = None,
) -> pathlib.Path:
    """Writes the piergiaj-layout `.safetensors` and `<out>.model_card.json` beside it."""
    from i3d_jax.weights.convert import write_safetensors

    out = check_out("safetensors", out)
    write_safetensors(variables, model, out)
    card = model_card(
        model,
        "safetensors",
        source,
        labels,
        layout="piergiaj/pytorch-i3d state dict (Conv3d_1a_7x7.conv3d.weight [out, in, T, H, W])",
        note="piergiaj's PyTorch code uses BatchNorm eps 1e-5; set eps to model.bn_epsilon",
    )
    _write_json(out.with_name(out.name + ".model_card.json"), card)
    return out


def export_savedmodel(
    model: InceptionI3d,
    variables: Mapping,
    out: str | os.PathLike,
    endpoint: str = "Logits",
    size: int = 224,
    source: str | None = None,
    labels: LabelSet | None = None,
) -> pathlib.Path:
    """Writes a TF SavedModel via jax2tf (needs TensorFlow); raises ImportError without it."""
    try:
        import tensorflow as tf
        from jax.experimental import jax2tf
    except ImportError as e:
        raise ImportError(
            "--format savedmodel needs TensorFlow (pip install tensorflow), which is optional "
            "and not installed; --format stablehlo gives a portable program without it"
        ) from e
    out = check_out("savedmodel", out)
    f = endpoint_fn(model, endpoint)
    tf_vars = jax.tree.map(lambda a: tf.Variable(np.asarray(a), trainable=False), dict(variables))
    poly = f"(b, {TIME_STRIDE}*k, {size}, {size}, {model.input_channels})"
    converted = jax2tf.convert(f, polymorphic_shapes=[None, poly], with_gradient=False)
    module = tf.Module()
    module.variables_tree = tf.nest.flatten(tf_vars)
    spec = tf.TensorSpec([None, None, size, size, model.input_channels], tf.float32)
    module.serve = tf.function(lambda x: converted(tf_vars, x), input_signature=[spec])
    tf.saved_model.save(module, os.fspath(out), signatures={"serving_default": module.serve})
    _write_json(out / CARD, model_card(model, "savedmodel", source, labels, endpoint=endpoint))
    return out


def export_onnx(
    model: InceptionI3d,
    variables: Mapping,
    out: str | os.PathLike,
    endpoint: str = "Logits",
    frames: int = 64,
    size: int = 224,
    dynamic_batch: bool = False,
    dynamic_time: bool = False,
    fold_bn: bool = False,
    fp16: bool = False,
    source: str | None = None,
    labels: LabelSet | None = None,
) -> pathlib.Path:
    """Writes the `.onnx` graph (`i3d_jax.weights.onnx_graph.build`) and
    `<out>.model_card.json`; raises ValueError for options the graph cannot represent."""
    import onnx

    from i3d_jax.weights import onnx_graph

    out = check_out("onnx", out)
    onnx_graph.check_options(model, frames, size, endpoint, dynamic_time)
    fold_bn = fold_bn or fp16  # as build() does
    batch = "batch" if dynamic_batch else 1  # the graph's names of its symbolic dims
    time = "frames" if dynamic_time else frames
    input_info = {
        "name": onnx_graph.INPUT,
        "shape": f"[{batch}, {time}, {size}, {size}, {model.input_channels}]",
        "layout": "NTHWC",
        "dtype": "float32",
        "range": [-1.0, 1.0],
    }
    if dynamic_time:
        multiple, least = onnx_graph.dynamic_frames(model, endpoint)
        input_info["frames"] = {"multiple_of": multiple, "at_least": least}
    card = model_card(
        model,
        "onnx",
        source,
        labels,
        endpoint=endpoint,
        opset=onnx_graph.OPSET,
        ir_version=onnx_graph.IR_VERSION,
        onnx_version=onnx.__version__,
        batchnorm="folded into conv biases"
        if fold_bn or model.graph.fold_bn
        else "BatchNormalization nodes",
        compute_dtype="float16 up to the logits head, float32 logits" if fp16 else "float32",
        input=input_info,
        output={"name": endpoint, "dtype": "float32"},
    )
    proto = onnx_graph.build(
        model, variables, frames, size, endpoint, dynamic_batch, dynamic_time, fold_bn, fp16
    )
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    card["output"]["shape"] = "[" + ", ".join(d.dim_param or str(d.dim_value) for d in dims) + "]"
    proto.metadata_props.add(key="model_card", value=json.dumps(card, sort_keys=True))
    tmp = out.with_name(out.name + ".tmp")
    onnx.save_model(proto, os.fspath(tmp))
    tmp.replace(out)
    _write_json(out.with_name(out.name + ".model_card.json"), card)
    return out


def load_onnx(
    path: str | os.PathLike, providers: Sequence[str] | None = None, threads: int | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """Opens an `onnx` export in ONNX Runtime (CPU unless `providers`): returns
    `fn(x [B, T, H, W, C] float32) -> endpoint`; a clip of another shape (or, with a dynamic
    time axis, a length off its rule) raises ValueError before the graph runs."""
    from i3d_jax.weights import onnx_graph

    sess = onnx_graph.session(os.fspath(path), threads, providers)
    declared = list(sess.get_inputs()[0].shape)
    card = json.loads(sess.get_modelmeta().custom_metadata_map.get("model_card", "{}"))
    rule = (card.get("input") or {}).get("frames")
    frames = (rule["multiple_of"], rule["at_least"]) if rule else None

    def call(x):
        onnx_graph.check_clip(x, declared, frames)
        return sess.run(None, {onnx_graph.INPUT: np.asarray(x, np.float32)})[0]

    return call


def check_out(fmt: str, out: str | os.PathLike) -> pathlib.Path:
    """`out` as a path, or ValueError/FileExistsError: a `.safetensors` file for safetensors, a
    new `.onnx` file for onnx, a new or empty directory for the others (nothing already there
    is overwritten)."""
    out = pathlib.Path(out)
    if fmt == "safetensors":
        if out.suffix != ".safetensors":
            raise ValueError(f"--out for safetensors should end in .safetensors, got {out}")
    elif fmt == "onnx":
        if out.suffix != ".onnx":
            raise ValueError(f"--out for onnx should end in .onnx, got {out}")
        if out.exists():
            raise FileExistsError(f"{out} exists; choose a new --out")
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty directory; choose a new --out")
    return out


def load(
    checkpoint: str, labels: str | LabelSet | None = None
) -> tuple[InceptionI3d, dict, LabelSet | None, str]:
    """`(model, variables, labels, source)` of `checkpoint` as an export writes it: loaded with
    `load_pretrained`, I3D checked, `labels` resolved (None: the checkpoint's own), the source
    as the card records it."""
    from i3d_jax.weights import carried_labels, describe_source, load_pretrained
    from i3d_jax.weights.convert import check_i3d

    model, variables = load_pretrained(checkpoint)
    check_i3d(model, checkpoint)
    if labels is None:
        labels = carried_labels(checkpoint, model.num_classes)
    elif not isinstance(labels, LabelSet):
        labels = label_lists.load(labels, model.num_classes)
    return model, variables, labels, describe_source(checkpoint)


def write(
    fmt: str,
    model: InceptionI3d,
    variables: Mapping,
    out: str | os.PathLike,
    endpoint: str = "Logits",
    size: int = 224,
    bake_weights: bool = False,
    source: str | None = None,
    labels: LabelSet | None = None,
    **onnx_options,
) -> pathlib.Path:
    """Writes `model`/`variables` in `fmt` to `out`; `onnx_options` (`frames`,
    `dynamic_batch`, `dynamic_time`, `fold_bn`, `fp16`) go to `export_onnx`."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    if onnx_options and fmt != "onnx":
        raise ValueError(f"{sorted(onnx_options)} are options of the onnx format, not {fmt}")
    if fmt == "safetensors":
        return export_safetensors(model, variables, out, source=source, labels=labels)
    if fmt == "stablehlo":
        return export_stablehlo(
            model, variables, out, endpoint, size, bake_weights, source, labels=labels
        )
    if fmt == "onnx":
        return export_onnx(
            model, variables, out, endpoint, size=size, source=source, labels=labels,
            **onnx_options,
        )  # fmt: skip
    return export_savedmodel(model, variables, out, endpoint, size, source, labels=labels)


def export(
    checkpoint: str,
    fmt: str,
    out: str,
    endpoint: str = "Logits",
    size: int = 224,
    bake_weights: bool = False,
    labels: str | LabelSet | None = None,
    **onnx_options,
) -> pathlib.Path:
    """Loads `checkpoint` with `load_pretrained` and writes it in `fmt` to `out`; `labels` (a
    file or shipped list name, a `LabelSet`; None: the checkpoint's own) go in the card;
    `onnx_options` as `write` takes them."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    model, variables, labels, source = load(checkpoint, labels)
    return write(
        fmt, model, variables, out, endpoint, size, bake_weights, source, labels, **onnx_options
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = cli.ArgumentParser(prog="python -m i3d_jax.export", description=__doc__)
    parser.add_argument(
        "checkpoint", help="weights (anything i3d_jax.load_pretrained reads, a train.py workdir)"
    )
    parser.add_argument("--format", choices=FORMATS, required=True, help="what to write")
    parser.add_argument("--out", required=True, help="output file (safetensors) or new directory")
    parser.add_argument("--endpoint", default="Logits", help="output of the program")
    parser.add_argument("--size", type=int, default=224, help="input height = width")
    parser.add_argument("--bake_weights", action="store_true", help="stablehlo: weights inside")
    parser.add_argument(
        "--labels",
        help="class names for the card: a file (one per line) or a shipped list (kinetics400, "
        "kinetics600); default: the checkpoint's own (a workdir's dataset classes)",
    )
    onnx = parser.add_argument_group("onnx")
    onnx.add_argument("--frames", type=int, default=64, help="onnx: the clip length T of the input")
    onnx.add_argument("--dynamic_batch", action="store_true", help="onnx: a symbolic batch axis")
    onnx.add_argument(
        "--dynamic_time",
        action="store_true",
        help="onnx: a symbolic time axis (clips of a multiple of the schedule's time stride)",
    )
    onnx.add_argument(
        "--fold_bn", action="store_true", help="onnx: BatchNorm folded into the conv biases"
    )
    onnx.add_argument(
        "--fp16",
        action="store_true",
        help="onnx: float16 weights and compute (BatchNorm folded), float32 logits",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(_export, parse_args(argv))


def _export(args: argparse.Namespace) -> int:
    with cli.before_work():
        check_out(args.format, args.out)
        given = [f"--{f}" for f in ONNX_FLAGS if getattr(args, f)]
        if given and args.format != "onnx":
            raise cli.UsageError(f"{', '.join(given)}: options of --format onnx only")
        if args.labels is not None:
            label_lists.resolve(args.labels)  # a missing file is an argument error
        if args.format == "savedmodel" and importlib.util.find_spec("tensorflow") is None:
            raise cli.UsageError(
                "--format savedmodel needs TensorFlow (pip install tensorflow), which is optional "
                "and not installed; --format stablehlo gives a portable program without it"
            )
        if args.format == "onnx" and importlib.util.find_spec("onnx") is None:
            raise cli.UsageError(ONNX_NEEDS)
        model, variables, labels, source = load(args.checkpoint, args.labels)
        onnx_options = {}
        if args.format == "onnx":
            from i3d_jax.weights import onnx_graph

            onnx_graph.check_options(
                model, args.frames, args.size, args.endpoint, args.dynamic_time
            )
            onnx_options = {"frames": args.frames, **{f: getattr(args, f) for f in ONNX_FLAGS}}
    path = write(args.format, model, variables, args.out, args.endpoint, args.size,
                 args.bake_weights, source, labels, **onnx_options)  # fmt: skip
    print(f"wrote {path} ({args.format})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
