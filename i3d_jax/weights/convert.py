"""Convert pretrained I3D weights to a portable format.

    python -m i3d_jax.convert SOURCE DEST [--labels FILE] [--bn_epsilon EPS]

SOURCE is anything `i3d_jax.load_pretrained` reads (`i3d-jax:kinetics400`, .pt/.pth,
.safetensors, a TF checkpoint, an i3d-jax pickle, a converted directory, a `train.py` workdir:
`RUN` (its best checkpoint, else its latest), `RUN/best/<step>` or `RUN/checkpoints/<step>`).
DEST ending in `.safetensors` gets a PyTorch state dict in the piergiaj/pytorch-i3d layout; any
other DEST is a new directory with an Orbax checkpoint of the variables and `model_card.json`;
`--labels` (a file or a shipped list such as `kinetics400`) stores the class names in the card,
where `python -m i3d_jax.predict` finds them. Without `--labels` the card keeps the names the
source carries: a workdir's dataset classes (its `data.json`) or a converted directory's.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from i3d_jax import cli
from i3d_jax.labels import LabelSet
from i3d_jax.model import InceptionI3d
from i3d_jax.weights import carried_labels, describe_source, load_pretrained, orbax_dir, piergiaj
from i3d_jax.weights.piergiaj import to_state_dict as to_piergiaj_state_dict

__all__ = ["convert", "main", "to_piergiaj_state_dict", "write_orbax", "write_safetensors"]


def write_safetensors(variables: Mapping, model: InceptionI3d, dest: str | os.PathLike) -> None:
    """Writes a piergiaj-layout `.safetensors` file (metadata: num_classes, input_channels, eps)."""
    if model.ndim != 3:
        raise ValueError("the piergiaj layout holds a 3D I3D; got a 2D model (inflate it first)")
    meta = {
        "format": "piergiaj-pytorch-i3d",
        "num_classes": str(model.num_classes),
        "input_channels": str(model.input_channels),
        "bn_epsilon": repr(model.bn_epsilon),
    }
    dest = pathlib.Path(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    piergiaj.save_safetensors(variables, tmp, metadata=meta)
    tmp.replace(dest)


def write_orbax(variables, model, dest, source=None, labels=None) -> pathlib.Path:
    """Writes the Orbax directory plus `model_card.json` (see `i3d_jax.weights.orbax_dir`)."""
    return orbax_dir.save(variables, model, dest, source=source, labels=labels)


def check_i3d(model: Any, source: str | os.PathLike) -> None:
    """ValueError unless `model` is an `InceptionI3d` (a workdir may name another preset)."""
    if not isinstance(model, InceptionI3d):
        raise ValueError(
            f"{source}: its model is a {type(model).__name__}, not an InceptionI3d; only I3D "
            "weights can be written"
        )


def convert(source: str, dest: str, labels: str | LabelSet | None = None, **model_overrides) -> str:
    """Loads `source` and writes it to `dest` (format from DEST's suffix); returns the format.
    `labels` None: the class names `source` carries (`carried_labels`), if any."""
    model, variables = load_pretrained(source, **model_overrides)
    check_i3d(model, source)
    if os.fspath(dest).endswith(".safetensors"):
        write_safetensors(variables, model, dest)
        return "safetensors"
    if labels is None:
        labels = carried_labels(source, model.num_classes)
    write_orbax(variables, model, dest, source=describe_source(source), labels=labels)
    return "orbax"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = cli.ArgumentParser(prog="python -m i3d_jax.convert", description=__doc__)
    parser.add_argument(
        "source", help="weights to read (see i3d_jax.load_pretrained), e.g. a train.py workdir"
    )
    parser.add_argument("dest", help="X.safetensors (piergiaj layout) or a new directory (Orbax)")
    parser.add_argument(
        "--labels",
        help="class names stored in the card (predict uses them): a file with one name per line "
        "or a shipped list (kinetics400, kinetics600); default: the source's own (a workdir's "
        "dataset classes, a converted directory's)",
    )
    parser.add_argument("--bn_epsilon", type=float, help="BatchNorm epsilon (default 1e-3)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(_convert, parse_args(argv))


def _convert(args: argparse.Namespace) -> int:
    overrides = {} if args.bn_epsilon is None else {"bn_epsilon": args.bn_epsilon}
    with cli.before_work():  # reading, checking and writing one file: all before "work"
        fmt = convert(args.source, args.dest, labels=args.labels, **overrides)
    print(f"wrote {args.dest} ({fmt})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
