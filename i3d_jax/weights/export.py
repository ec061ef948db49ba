"""Export a checkpoint for other runtimes, each with a JSON model card.

    python -m i3d_jax.export CHECKPOINT --format safetensors|stablehlo|savedmodel --out PATH
        [--endpoint Logits] [--size 224] [--bake_weights] [--labels FILE]

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

FORMATS = ("safetensors", "stablehlo", "savedmodel")
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


def check_out(fmt: str, out: str | os.PathLike) -> pathlib.Path:
    """`out` as a path, or ValueError/FileExistsError: a `.safetensors` file for safetensors, a
    new or empty directory for the others (nothing already there is overwritten)."""
    out = pathlib.Path(out)
    if fmt == "safetensors":
        if out.suffix != ".safetensors":
            raise ValueError(f"--out for safetensors should end in .safetensors, got {out}")
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty directory; choose a new --out")
    return out


def export(
    checkpoint: str,
    fmt: str,
    out: str,
    endpoint: str = "Logits",
    size: int = 224,
    bake_weights: bool = False,
    labels: str | LabelSet | None = None,
) -> pathlib.Path:
    """Loads `checkpoint` with `load_pretrained` and writes it in `fmt` to `out`; `labels` (a
    file or shipped list name, a `LabelSet`; None: the checkpoint's own) go in the card."""
    from i3d_jax.weights import carried_labels, describe_source, load_pretrained
    from i3d_jax.weights.convert import check_i3d

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    model, variables = load_pretrained(checkpoint)
    check_i3d(model, checkpoint)
    if labels is None:
        labels = carried_labels(checkpoint, model.num_classes)
    elif not isinstance(labels, LabelSet):
        labels = label_lists.load(labels, model.num_classes)
    source = describe_source(checkpoint)
    if fmt == "safetensors":
        return export_safetensors(model, variables, out, source=source, labels=labels)
    if fmt == "stablehlo":
        return export_stablehlo(
            model, variables, out, endpoint, size, bake_weights, source, labels=labels
        )
    return export_savedmodel(model, variables, out, endpoint, size, source, labels=labels)


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
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(_export, parse_args(argv))


def _export(args: argparse.Namespace) -> int:
    with cli.before_work():
        check_out(args.format, args.out)
        if args.labels is not None:
            label_lists.resolve(args.labels)  # a missing file is an argument error
        if args.format == "savedmodel" and importlib.util.find_spec("tensorflow") is None:
            raise cli.UsageError(
                "--format savedmodel needs TensorFlow (pip install tensorflow), which is optional "
                "and not installed; --format stablehlo gives a portable program without it"
            )
    path = export(args.checkpoint, args.format, args.out, args.endpoint, args.size,
                  args.bake_weights, args.labels)  # fmt: skip
    print(f"wrote {path} ({args.format})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
