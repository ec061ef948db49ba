"""A TFDS builder (array_record, no TensorFlow) of I3D window-feature sequences.

    builder = FeatureSequences(folder="features/", data_dir="~/tensorflow_datasets")
    builder.download_and_prepare()
    # train a head on it: --config.features.tfds_dir=<builder.data_dir>

Packs the `.npz` files `python -m i3d_jax.extract_features` writes, laid out as
`<folder>/<split>/<class>/<video>.npz` (or listed in a CSV of `path,label,split`), one example
per video: `features [N, D]` float32 (averaged over crops), `times [N]` float32 (window centres,
seconds), `label`, `path`. Classes: the train split's folders (or CSV labels), sorted. The
extraction settings (weights, endpoint, window, stride, fps, crops, stream...) and their
fingerprint go into `info.metadata`, with the skipped files per split; files extracted with other
settings are refused (ValueError naming both files), bad files are skipped and counted (see
`i3d_jax.data.feature_files.scan`). Read it back with `feature_files.load_built_split(dir, split)`.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from i3d_jax.data import feature_files as feats

SETTINGS_KEY = "settings"
FINGERPRINT_KEY = "settings_fingerprint"
SKIPPED_KEY = "skipped"


class FeatureSequences(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Feature sequences of one extraction (see the module docstring)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    url_infos = None

    def __init__(
        self, *, folder: str | pathlib.Path = "", csv: str = "", train_split: str = "train",
        feature_dim: int = 0, **kwargs: Any,
    ):  # fmt: skip
        """`folder` or `csv`: the source (needed to build, not to read); other args go to TFDS."""
        kwargs.setdefault("file_format", "array_record")
        self._folder, self._csv, self._train = pathlib.Path(folder or "."), csv, train_split
        self._dim, self._names, self._sets = feature_dim, None, {}
        super().__init__(**kwargs)

    def _splits(self) -> list[str]:
        if self._csv:
            import csv as csv_lib

            with open(self._csv, newline="") as f:
                return sorted({row["split"] for row in csv_lib.DictReader(f)})
        return sorted(p.name for p in self._folder.iterdir() if p.is_dir())

    def _items(self, split: str):
        return feats.csv_items(self._csv, split) if self._csv else feats.folder_items(self._folder, split)  # fmt: skip

    def _scan_all(self) -> None:
        """Scans the train split first (classes, width, settings), then the others against it."""
        if self._names is not None:
            return
        train_items = self._items(self._train)
        self._names = tuple(sorted({lbl for _, lbl in train_items if lbl is not None}))
        if not self._names:
            raise ValueError(f"no labelled feature files in split {self._train!r}")
        train = feats.scan(train_items, self._names, self._dim)
        if not train.examples:
            raise ValueError(f"no usable feature files in split {self._train!r}")
        self._dim = train.examples[0]["features"].shape[1]
        self._sets = {self._train: train}
        for split in self._splits():
            if split != self._train:
                self._sets[split] = feats.scan(self._items(split), self._names, self._dim, train)

    def _info(self) -> tfds.core.DatasetInfo:
        self._scan_all()
        train = self._sets[self._train]
        return tfds.core.DatasetInfo(
            builder=self,
            description="I3D window features per video (i3d_jax.extract_features)",
            features=tfds.features.FeaturesDict(
                {
                    "features": tfds.features.Tensor(shape=(None, self._dim), dtype=np.float32),
                    "times": tfds.features.Tensor(shape=(None,), dtype=np.float32),
                    "label": tfds.features.ClassLabel(names=list(self._names)),
                    "path": tfds.features.Text(),
                }
            ),  # fmt: skip
            metadata=tfds.core.MetadataDict(
                {
                    SETTINGS_KEY: train.settings,
                    FINGERPRINT_KEY: train.fingerprint,
                    SKIPPED_KEY: {s: len(v.skipped) for s, v in self._sets.items()},
                }
            ),  # fmt: skip
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {split: self._generate_examples(split) for split in self._sets}

    def _generate_examples(self, split: str):
        for i, ex in enumerate(self._sets[split].examples):
            yield i, {"features": ex["features"], "times": ex["times"],
                      "label": int(ex["label"]), "path": ex["path"]}  # fmt: skip
