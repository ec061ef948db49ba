"""`predict --head`: classify long videos with I3D window features and a trained temporal head.

The head's run (`train.py` workdir of `config.task = "features"`) names its dataset in
`config.json`; the extraction settings recorded there (a TFDS build's metadata, else the first
readable file of the train split) say how features must be extracted: the same window, stride,
fps, crops, endpoint, stream and weights. Each video goes through `i3d_jax.extract_features`
(the same code as the training features) and `i3d_jax.data.feature_files.read_feature_file`,
then the head runs over the whole masked sequence. A head whose settings differ from what would
be extracted (other weights given, weights changed since), or whose width differs from the
network's, is refused before any video is decoded.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import re
import sys
import tempfile
from typing import Any

import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from i3d_jax import extract_features as ef
from i3d_jax import sharding
from i3d_jax.data import feature_files
from i3d_jax.training import checkpoints, evaluate
from i3d_jax.training.tasks import features
from i3d_jax.weights import load_pretrained

_IDENTITY = re.compile(r"^(.*) \(\d+ bytes, mtime_ns \d+\)$")


@dataclasses.dataclass
class HeadRun:
    """A trained head's config, its features' extraction settings and its class names."""

    workdir: pathlib.Path
    config: ml_collections.ConfigDict
    settings: dict
    fingerprint: str
    label_names: list[str]
    feature_dim: int  # the width the head was trained on (its `data.json`)


def _dataset_settings(config: ml_collections.ConfigDict) -> tuple[dict, str, list[str], str]:
    """(settings, fingerprint, class names, where) recorded by the head's training data."""
    f, split = config.features, config.dataset.train_split
    if f.get("tfds_dir"):
        info = tfds.builder_from_directory(str(f.tfds_dir)).info
        meta = dict(info.metadata or {})
        names = list(info.features["label"].names)
        return meta.get("settings", {}), meta.get("settings_fingerprint", ""), names, f.tfds_dir
    if f.csv:
        items = feature_files.csv_items(f.csv, split)
    else:
        items = feature_files.folder_items(config.dataset.folder, split)
    names = sorted({label for _, label in items if label is not None})
    for path, label in items:
        if label is None:
            continue
        try:
            ex = feature_files.read_feature_file(path)
        except feature_files.FeatureFileError:
            continue
        return ex["settings"], ex["fingerprint"], names, str(path)
    raise FileNotFoundError(f"no readable labelled feature file in split {split!r} of the head's data")  # fmt: skip


def load_run(path: str | pathlib.Path) -> HeadRun:
    """The head run in workdir `path`; ValueError/FileNotFoundError naming what is missing."""
    wd = checkpoints.Workdir.at(path)
    if not wd.config.is_file():
        raise FileNotFoundError(
            f"--head {path}: no config.json (expected the workdir of a head trained by train.py)"
        )
    config = ml_collections.ConfigDict(json.loads(wd.config.read_text()))
    if config.get("task") != "features":
        raise ValueError(
            f"--head {path}: config.task is {config.get('task', 'video')!r}; expected a "
            "temporal head's run ('features')"
        )
    settings, fp, names, where = _dataset_settings(config)
    if not fp or not settings:
        raise ValueError(
            f"--head {path}: its features ({where}) record no extraction settings; re-extract "
            "them with python -m i3d_jax.extract_features"
        )
    if not settings.get("pooled", True) or settings.get("version") != ef.SETTINGS_VERSION:
        raise ValueError(f"--head {path}: features of settings version {settings.get('version')}"
                         f" pooled={settings.get('pooled')}; expected version {ef.SETTINGS_VERSION}, pooled")  # fmt: skip
    k = config.model.num_classes
    names = names[:k] + [f"class_{i}" for i in range(len(names), k)]
    # data.json records the width; runs before it wrote the width into config.json.
    card = json.loads(wd.data_card.read_text()) if wd.data_card.is_file() else {}
    width = int(card.get("feature_dim") or config.features.get("feature_dim", 0))
    if not width:
        raise ValueError(f"--head {path}: neither data.json nor config.json records the feature width")  # fmt: skip
    return HeadRun(wd.root, config, settings, fp, names, width)


def weights_source(identity: str) -> str:
    """The path or name `extract_features.weights_identity` recorded (without size and mtime)."""
    m = _IDENTITY.match(identity)
    return m.group(1) if m else identity


class HeadClassifier:
    """Features of whole videos (the head's extraction settings) -> the head's video logits."""

    def __init__(self, run: HeadRun, weights: str | None = None, flow_weights: str | None = None):
        s = run.settings
        fields = {f.name for f in dataclasses.fields(ef.ExtractConfig)} - {"batch_size", "chunk_frames"}  # fmt: skip
        self.config = ef.ExtractConfig(**{k: s[k] for k in fields if k in s})
        names = ["rgb", "flow"] if s["stream"] == "both" else [s["stream"]]
        recorded = s["weights"] if isinstance(s["weights"], dict) else {names[0]: s["weights"]}
        given = {"rgb": weights, "flow": flow_weights}
        sources = {n: given[n] or weights_source(str(recorded.get(n, ""))) for n in names}
        ids = {n: ef.weights_identity(src) for n, src in sources.items()}
        self.weights_id = ids if len(ids) > 1 else ids[names[0]]
        wanted = ef.settings(self.config, names, self.weights_id, ef.DEFAULT_FLOW_ID)
        if ef.fingerprint(wanted) != run.fingerprint:
            raise ValueError(
                f"--head {run.workdir}: its features were extracted with other settings than "
                f"predict would use ({ef.settings_diff(s, wanted)}); pass the weights it was "
                "trained on (--weights / --flow_weights)"
            )
        self.streams = {n: load_pretrained(src) for n, src in sources.items()}
        width = sum(self._width(n) for n in names)
        if width != run.feature_dim:
            raise ValueError(
                f"--head {run.workdir} takes features of width {run.feature_dim}; the weights "
                f"{sorted(sources.values())} give {width} at {self.config.endpoint}"
            )
        task = features.FeatureSequenceClassification(run.config)
        self.head = task.build_model()
        mesh = sharding.make_mesh(devices=jax.devices()[:1])
        shape = features.FeatureData(None, None, tuple(run.label_names), width)
        self.variables, self.where = evaluate.load_variables(
            task, shape, run.workdir, self.head, mesh
        )
        self.width = width
        self._apply = jax.jit(lambda v, x, m, t: self.head.apply({"params": v["params"]}, x, m, t)[0])  # fmt: skip

    def _width(self, stream: str) -> int:
        model, variables = self.streams[stream]
        c = self.config
        x = jax.ShapeDtypeStruct((1, c.window, c.crop_size, c.crop_size, ef.CHANNELS[stream]), np.float32)  # fmt: skip
        return int(jax.eval_shape(ef.make_apply(model, c.endpoint, True), variables, x).shape[-1])

    def __call__(self, videos: list[str], progress: bool = False) -> dict[str, Any]:
        """`{video: (logits [K], windows) or an error message}` for every video."""
        out: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(prefix="i3d_head_") as tmp:
            log = lambda m: print(m, file=sys.stderr)  # noqa: E731
            result = ef.extract(videos, tmp, self.streams, self.config, self.weights_id,
                                progress=progress, log=log)  # fmt: skip
            failed = dict(result.failed)
            for v in videos:
                name = pathlib.Path(v).name
                if name in failed:
                    out[v] = failed[name]
                    continue
                ex = feature_files.read_feature_file(pathlib.Path(tmp) / result.outputs[str(pathlib.Path(v))], self.width)  # fmt: skip
                n = len(ex["features"])
                row = features.pad(ex["features"], ex["times"], 8 * math.ceil(n / 8), 0)
                args = (row["features"][None], row["mask"][None], row["times"][None])
                out[v] = (np.asarray(self._apply(self.variables, *args))[0], n)
        return out
