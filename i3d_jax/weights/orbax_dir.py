"""Our portable weights directory: an Orbax checkpoint of the variables plus `model_card.json`.

    DEST/
      model_card.json   format, model options (rebuild the model from them), preprocessing,
                        label set (name, path and the class names), source
      variables/        Orbax StandardCheckpointer tree {'params', 'batch_stats'}

`save` writes it (the card last, so a directory with a card is complete); `load` rebuilds the
model from the card and restores the variables against `jax.eval_shape` of that model.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import traverse_util

from i3d_jax.labels import LabelSet
from i3d_jax.model import InceptionI3d
from i3d_jax.weights import common

FORMAT = "i3d_jax.weights/orbax"
CARD = "model_card.json"
VARIABLES = "variables"

# The input contract of every I3D checkpoint we know (the paper's test-time recipe).
PREPROCESSING = {
    "fps": 25,
    "resize_smaller_side": 256,
    "center_crop": 224,
    "rgb_range": [-1.0, 1.0],
    "rgb_scaling": "x / 127.5 - 1 for uint8 RGB",
    "flow": "TV-L1, clipped to [-20, 20], divided by 20",
    "layout": "[B, T, H, W, C]",
}


def is_orbax_dir(path: str | os.PathLike) -> bool:
    return (pathlib.Path(path) / CARD).is_file()


def model_card(
    model: InceptionI3d,
    source: str | None = None,
    labels: str | LabelSet | None = None,
    label_names: list[str] | None = None,
) -> dict[str, Any]:
    """The card of `model`: format, options, preprocessing, label set (name/path), source.

    `labels`: a label file or shipped list name (names read from it unless `label_names`), or
    a `LabelSet` (e.g. a training run's class names)."""
    if labels is not None and label_names is None and not isinstance(labels, LabelSet):
        from i3d_jax import labels as shipped

        label_names = shipped.read(labels)
    card: dict[str, Any] = {
        "format": FORMAT,
        "format_version": 1,
        "model": common.model_options(model),
        "preprocessing": dict(PREPROCESSING),
        "source": source,
    }
    if isinstance(labels, LabelSet):
        card["labels"] = labels.card()
    elif labels is not None:
        card["labels"] = {"name": pathlib.Path(labels).stem, "path": os.fspath(labels)}
        # The names themselves travel with the card (predict uses them by default).
        if label_names is not None:
            card["labels"]["num_labels"] = len(label_names)
            card["labels"]["names"] = list(label_names)
    return card


def save(
    variables: Mapping,
    model: InceptionI3d,
    dest: str | os.PathLike,
    source: str | None = None,
    labels: str | LabelSet | None = None,
) -> pathlib.Path:
    """Writes `variables` and the card of `model` to the new directory `dest`; `labels` (a file,
    a shipped list name or a `LabelSet`) must have `model.num_classes` names.

    Raises FileExistsError if `dest` exists and is not empty (nothing there is touched).
    """
    import orbax.checkpoint as ocp

    dest = pathlib.Path(dest).absolute()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"{dest} exists and is not an empty directory; choose a new DEST")
    label_names = None
    if isinstance(labels, LabelSet):
        if len(labels.names) != model.num_classes:
            raise ValueError(
                f"label set {labels.name} ({labels.path}) has {len(labels.names)} names, but "
                f"the model has {model.num_classes} classes"
            )
    elif labels is not None:
        from i3d_jax import labels as shipped

        label_names = shipped.read(labels, model.num_classes)
    dest.mkdir(parents=True, exist_ok=True)
    tree = traverse_util.unflatten_dict(
        {k: np.asarray(v) for k, v in traverse_util.flatten_dict(dict(variables)).items()}
    )
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(dest / VARIABLES, tree)
        ckptr.wait_until_finished()
    card = model_card(model, source, labels, label_names)
    (dest / CARD).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return dest


def card_label_names(path: str | os.PathLike) -> list[str] | None:
    """The class names stored in a directory's card (None when it has none)."""
    names = (read_card(path).get("labels") or {}).get("names")
    return [str(n) for n in names] if names else None


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    card_path = pathlib.Path(path) / CARD
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{card_path}: not valid JSON ({e})") from e
    if card.get("format") != FORMAT:
        raise ValueError(f"{card_path}: format is {card.get('format')!r}, expected {FORMAT!r}")
    return card


def load(path: str | os.PathLike, **model_overrides) -> tuple[InceptionI3d, dict]:
    """Model (from the card, with overrides) and variables (numpy) of a directory from `save`."""
    import orbax.checkpoint as ocp

    path = pathlib.Path(path).absolute()
    card = read_card(path)
    model = common.model_from_options(card["model"], **model_overrides)
    with ocp.StandardCheckpointer() as ckptr:
        restored = ckptr.restore(path / VARIABLES)
    # Check names and shapes against the card's model (Orbax alone would accept other shapes).
    mapped = common.Mapped(f"{path / VARIABLES} (model from {path / CARD})")
    for name, value in traverse_util.flatten_dict(dict(restored), sep="/").items():
        mapped.add(name, name, np.asarray(value))
    return model, common.merge(mapped, common.abstract_variables(model))
