"""Feature files as `python -m i3d_jax.extract_features` writes them: read one, list a split's
(a folder `<root>/<split>/<class>/*.npz` or a CSV `path,label,split`), scan them into examples,
and read a split of a dataset built from them (`i3d_jax.data.feature_dataset`).

A file holds `features [N, crops, D]` (averaged over crops here) or `[N, D]`, `timestamps [N, 2]`
in seconds (each window's time its centre) or `times [N]`, and `settings` with their
`settings_fingerprint`. Every file of a dataset must share one fingerprint: a mix is refused,
naming both files and what differs. A file of the wrong width, with no windows or no label is
skipped (`warning: skipped FILE: ...`) and counted.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds


class FeatureFileError(ValueError):
    """A feature file that cannot be used (the message names the file and what was expected)."""


@dataclasses.dataclass
class FeatureSet:
    """The usable videos of one split and what was skipped (messages naming each file)."""

    examples: list[dict]  # {"features" [N, D] float32, "times" [N] float32, "label", "path"}
    skipped: list[str]
    fingerprint: str = ""
    first: str = ""  # the file whose settings the others must match
    settings: dict = dataclasses.field(default_factory=dict)


def settings_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    """`key old -> new` for every differing setting (or a note that the file has none)."""
    if not old:
        return "the file records no settings (made by an older version)"
    keys = sorted(set(old) | set(new))
    return ", ".join(
        f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)
    )


def read_feature_file(path: str | pathlib.Path, feature_dim: int = 0) -> dict:
    """`{"features" [N, D] float32, "times" [N] float32, "fingerprint", "settings"}` of one file;
    FeatureFileError naming the file for a wrong width (`feature_dim > 0`), no windows, no times."""
    path = pathlib.Path(path)
    try:
        with np.load(path) as z:
            if "features" not in z.files:
                raise FeatureFileError(f"{path}: no 'features' array (expected an extract_features .npz)")  # fmt: skip
            feats = np.asarray(z["features"], np.float32)
            if "times" in z.files:
                times = np.asarray(z["times"], np.float32)
            elif "timestamps" in z.files:
                times = np.asarray(z["timestamps"], np.float64).mean(-1).astype(np.float32)
            else:
                raise FeatureFileError(f"{path}: no 'timestamps' [N, 2] or 'times' [N] array")
            fp = str(z["settings_fingerprint"]) if "settings_fingerprint" in z.files else ""
            settings = json.loads(str(z["settings"])) if "settings" in z.files else {}
    except (OSError, ValueError, EOFError) as e:
        if isinstance(e, FeatureFileError):
            raise
        raise FeatureFileError(f"{path}: not a readable .npz ({e})") from e
    if feats.ndim == 3:
        feats = feats.mean(1)  # the crops' average
    if feats.ndim != 2:
        raise FeatureFileError(
            f"{path}: features of shape {feats.shape}; expected pooled [windows, crops, D] or "
            "[windows, D] (extract_features --pooled)"
        )
    if feats.shape[0] == 0:
        raise FeatureFileError(f"{path}: an empty sequence (0 windows); expected at least 1")
    if feature_dim and feats.shape[1] != feature_dim:
        raise FeatureFileError(
            f"{path}: features of width {feats.shape[1]}; expected {feature_dim}"
        )
    if times.shape != feats.shape[:1]:
        raise FeatureFileError(f"{path}: {times.shape[0]} times for {feats.shape[0]} windows")
    return {"features": feats, "times": times, "fingerprint": fp, "settings": settings}


def folder_items(root: str | pathlib.Path, split: str) -> list[tuple[pathlib.Path, str | None]]:
    """(file, class name) of `<root>/<split>/<class>/*.npz`; a file not in a class folder has no
    label (None). Raises FileNotFoundError for a missing split folder."""
    base = pathlib.Path(root) / split
    if not base.is_dir():
        raise FileNotFoundError(f"feature split folder {str(base)!r} not found")
    items: list[tuple[pathlib.Path, str | None]] = [(p, None) for p in sorted(base.glob("*.npz"))]
    for d in sorted(p for p in base.iterdir() if p.is_dir()):
        items += [(p, d.name) for p in sorted(d.glob("*.npz"))]
    return items


def csv_items(path: str | pathlib.Path, split: str) -> list[tuple[pathlib.Path, str | None]]:
    """(file, class name or None) of the CSV's rows of `split` (columns `path,label,split`)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"features.csv {str(path)!r} not found")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"path", "label", "split"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(
                f"{path}: columns {sorted(missing)} missing; expected path,label,split"
            )
        rows = [r for r in reader if r["split"] == split]
    return [(path.parent / r["path"], (r["label"] or "").strip() or None) for r in rows]


def scan(
    items: Sequence[tuple[pathlib.Path, str | None]],
    label_names: Sequence[str],
    feature_dim: int = 0,
    reference: FeatureSet | None = None,
) -> FeatureSet:
    """Reads every file: bad ones are skipped with a message; files extracted with settings other
    than the first's (or `reference`'s) raise ValueError naming both files."""
    out = FeatureSet([], [])
    if reference is not None:
        out.fingerprint, out.first, out.settings = (
            reference.fingerprint, reference.first, reference.settings)  # fmt: skip
    index = {name: i for i, name in enumerate(label_names)}
    for path, label in items:
        try:
            if label is None:
                raise FeatureFileError(
                    f"{path}: no label (expected the file in a class folder <split>/<class>/ or "
                    "a label in the CSV)"
                )
            if label not in index:
                raise FeatureFileError(f"{path}: label {label!r} is not one of {list(label_names)}")
            ex = read_feature_file(path, feature_dim)
        except FeatureFileError as e:
            out.skipped.append(str(e))
            print(f"warning: skipped {e}", flush=True)
            continue
        if not out.first:
            out.fingerprint, out.first, out.settings = ex["fingerprint"], str(path), ex["settings"]
            feature_dim = feature_dim or ex["features"].shape[1]
        elif ex["fingerprint"] != out.fingerprint:
            raise ValueError(
                f"{path} was extracted with other settings than {out.first} "
                f"({settings_diff(out.settings, ex['settings'])}); a dataset must not mix them: "
                "extract all videos with the same settings"
            )
        feature_dim = feature_dim or ex["features"].shape[1]
        out.examples.append({"features": ex["features"], "times": ex["times"],
                             "label": np.int32(index[label]), "path": str(path)})  # fmt: skip
    if out.skipped:
        print(f"skipped {len(out.skipped)} of {len(items)} feature files", flush=True)
    return out


def load_built_split(directory: str | pathlib.Path, split: str) -> tuple[list[dict], dict]:
    """(examples as `scan` gives them, sorted by path; metadata with `label_names`) of a split of
    a dataset built by `i3d_jax.data.feature_dataset.FeatureSequences` (no TensorFlow)."""
    builder = tfds.builder_from_directory(str(directory))
    if split not in builder.info.splits:
        raise KeyError(f"split {split!r} not in {str(directory)!r} ({sorted(builder.info.splits)})")
    src = builder.as_data_source(split)
    out = []
    for i in range(len(src)):
        ex = src[i]
        path = ex["path"].decode() if isinstance(ex["path"], bytes) else str(ex["path"])
        out.append({"features": np.asarray(ex["features"], np.float32),
                    "times": np.asarray(ex["times"], np.float32),
                    "label": np.int32(ex["label"]), "path": path})  # fmt: skip
    out.sort(key=lambda e: e["path"])
    meta = dict(builder.info.metadata or {})
    meta["label_names"] = tuple(builder.info.features["label"].names)
    return out, meta
