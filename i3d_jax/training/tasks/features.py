"""The temporal-head task: classify videos from sequences of I3D window features.

Data: the `.npz` files `python -m i3d_jax.extract_features` writes (`features [N, crops, D]`,
averaged over crops, or `[N, D]`; `timestamps [N, 2]` in seconds, each window's time its centre,
or `times [N]`; `settings` and `settings_fingerprint`), read from a plain folder (no TFDS builder
yet) laid out as `<dataset.folder>/<split>/<class>/<video>.npz`, or listed in a CSV
(`features.csv`: header `path,label,split`, paths relative to the CSV's folder). Every file of a
dataset (all splits) must share one settings fingerprint: a mix is refused, naming both files. A
file of the wrong width, with no windows or no label is reported (`warning: skipped FILE: ...`)
and skipped; the scan goes on and counts them.

Training batches (Grain, per-host shard like `i3d_jax.data.pipeline`): a random run of at most
`features.max_windows` consecutive windows per video, zero-padded, `mask` marking the real ones,
feature dropout (`features.feature_dropout`, inverted scaling). Evaluation: whole sequences padded
to the longest (a multiple of 8), masked. Keys: `features [B, M, D]` float32, `mask [B, M]` bool,
`times [B, M]` float32 seconds, `label [B]` int32.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from i3d_jax import heads, sharding
from i3d_jax.data.feature_files import (
    FeatureSet,
    csv_items,
    folder_items,
    load_built_split,
    scan,
)
from i3d_jax.training import evaluation, steps, task

INPUTS = ("features", "mask", "times")
EVAL_KEYS = (*INPUTS, "label", "index", "real")


@dataclasses.dataclass(frozen=True)
class FeatureData:
    """The scanned splits, the class names and the feature width the head is built for."""

    train: FeatureSet
    eval: FeatureSet | None
    label_names: tuple[str, ...]
    feature_dim: int


def _load_built(config: ml_collections.ConfigDict) -> FeatureData:
    d = config.features.tfds_dir
    examples, meta = load_built_split(d, config.dataset.train_split)
    names = meta["label_names"]
    if len(names) > config.model.num_classes:
        raise ValueError(
            f"dataset has {len(names)} classes but config.model.num_classes="
            f"{config.model.num_classes}"
        )
    fp, settings = meta.get("settings_fingerprint", ""), meta.get("settings", {})
    train = FeatureSet(examples, [], fp, str(d), settings)
    dim = examples[0]["features"].shape[1]
    if config.features.feature_dim and dim != config.features.feature_dim:
        raise ValueError(f"{d}: features of width {dim}; expected {config.features.feature_dim}")
    ev = None
    if config.dataset.eval_split:
        try:
            ev = FeatureSet(load_built_split(d, config.dataset.eval_split)[0], [], fp, str(d))
        except KeyError as e:
            print(f"warning: no evaluation: {e}")
    return FeatureData(train, ev, names, dim)


def load_data(config: ml_collections.ConfigDict) -> FeatureData:
    """Scans the train and eval splits (classes: the train split's, sorted)."""
    f = config.features
    if not isinstance(f.max_windows, int) or f.max_windows < 1:
        raise ValueError(
            f"config.features.max_windows={f.max_windows!r} must be a positive integer"
        )
    if not 0.0 <= f.feature_dropout < 1.0:
        raise ValueError(f"config.features.feature_dropout={f.feature_dropout} not in [0, 1)")
    if f.get("tfds_dir"):
        return _load_built(config)
    if not f.csv and not config.dataset.folder:
        raise ValueError(
            "config.dataset.folder (or config.features.csv or .tfds_dir) must name the features"
        )

    def items(split):
        return csv_items(f.csv, split) if f.csv else folder_items(config.dataset.folder, split)

    train_items = items(config.dataset.train_split)
    names = tuple(sorted({label for _, label in train_items if label is not None}))
    if not names:
        raise ValueError(f"no labelled feature files in split {config.dataset.train_split!r}")
    if len(names) > config.model.num_classes:
        raise ValueError(
            f"dataset has {len(names)} classes but config.model.num_classes="
            f"{config.model.num_classes}"
        )
    train = scan(train_items, names, f.feature_dim)
    if not train.examples:
        raise ValueError(f"no usable feature files in split {config.dataset.train_split!r}")
    dim = train.examples[0]["features"].shape[1]
    ev = None
    if config.dataset.eval_split:
        try:
            ev = scan(items(config.dataset.eval_split), names, dim, reference=train)
        except FileNotFoundError as e:
            print(f"warning: no evaluation: {e}")
    return FeatureData(train, ev, names, dim)


class TrainTransform(grain.transforms.RandomMap):
    """A random run of at most `max_windows` windows, padded and masked, feature dropout."""

    def __init__(self, max_windows: int, feature_dropout: float):
        self.max_windows, self.p = max_windows, feature_dropout

    def random_map(self, element: dict, rng: np.random.Generator) -> dict:
        feats, times = element["features"], element["times"]
        n = len(feats)
        take = min(n, self.max_windows)
        start = int(rng.integers(0, n - take + 1))
        feats, times = feats[start : start + take], times[start : start + take]
        if self.p > 0:
            keep = rng.random(feats.shape) >= self.p
            feats = feats * keep / (1.0 - self.p)
        return pad(feats, times, self.max_windows, element["label"])


def pad(feats: np.ndarray, times: np.ndarray, length: int, label: Any) -> dict:
    """`{"features" [length, D], "mask" [length], "times" [length], "label"}` (zeros after)."""
    n = len(feats)
    out = np.zeros((length, feats.shape[1]), np.float32)
    out[:n] = feats
    t = np.zeros(length, np.float32)
    t[:n] = times
    return {"features": out, "mask": np.arange(length) < n, "times": t, "label": np.int32(label)}


def train_dataset(
    examples: Sequence[dict], config: ml_collections.ConfigDict, host_batch: int
) -> grain.IterDataset:
    """This host's shuffled, repeated, cropped batches (host `i` of `P` takes `i, i + P, ...`)."""
    pi, pc = jax.process_index(), jax.process_count()
    per_host = len(examples) // pc
    if per_host < host_batch:
        raise ValueError(
            f"each of {pc} processes gets {per_host} feature sequences, fewer than host batch "
            f"{host_batch}"
        )
    mine = [examples[i] for i in range(pi, per_host * pc, pc)]
    f = config.features
    ds = grain.MapDataset.source(mine).shuffle(seed=config.seed).repeat()
    ds = ds.random_map(TrainTransform(f.max_windows, f.feature_dropout), seed=config.seed + 1)
    ds = ds.batch(host_batch, drop_remainder=True)
    return ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=2))


def eval_batches(examples: Sequence[dict], host_batch: int) -> Iterator[dict]:
    """Whole sequences padded to the longest (a multiple of 8), `real=0` rows filling the last
    batch so every host runs as many batches; host `i` of `P` takes `i, i + P, ...`."""
    pi, pc = jax.process_index(), jax.process_count()
    length = 8 * math.ceil(max(len(e["features"]) for e in examples) / 8)
    shard = list(range(pi, len(examples), pc))
    total = max(math.ceil(math.ceil(len(examples) / pc) / host_batch), 1) * host_batch
    rows = []
    for i in range(total):
        j = shard[i] if i < len(shard) else shard[0] if shard else 0
        e = examples[j]
        row = pad(e["features"], e["times"], length, e["label"])
        rows.append({**row, "index": np.int32(j), "real": np.int32(i < len(shard))})
        if len(rows) == host_batch:
            yield {k: np.stack([r[k] for r in rows]) for k in rows[0]}
            rows = []


def head_kwargs(config: ml_collections.ConfigDict) -> dict:
    """The `config.head` options the chosen head has (others are for other heads)."""
    cls = heads.HEADS.get(config.head.name)
    if cls is None:
        raise ValueError(f"config.head.name={config.head.name!r} is not one of {sorted(heads.HEADS)}")  # fmt: skip
    return {k: v for k, v in config.head.items() if k != "name" and k in cls.__dataclass_fields__}


class FeatureSequenceClassification:
    """A temporal head (`config.head.name`) trained with cross-entropy on video labels."""

    best_metric = "video_top1"
    inputs = INPUTS

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config

    def data(self) -> FeatureData:
        return load_data(self.config)

    def data_card(self, data: FeatureData) -> dict:
        return {
            "dataset": dataset_name(self.config),
            "label_names": list(data.label_names),
            "feature_dim": data.feature_dim,
            "settings_fingerprint": data.train.fingerprint,
        }

    def build_model(self, bn_axis_name: str | None = None) -> nn.Module:
        del bn_axis_name  # the heads have no BatchNorm
        c = self.config
        return heads.build_head(c.head.name, c.model.num_classes, **head_kwargs(c))

    def init_variables(self, model: nn.Module, data: FeatureData, rng: jax.Array) -> dict:
        n, d = self.config.features.max_windows, data.feature_dim
        x, m, t = jnp.zeros((1, n, d)), jnp.ones((1, n), bool), jnp.zeros((1, n))
        return {"params": model.init({"params": rng}, x, m, t)["params"], "batch_stats": {}}

    def initial_variables(self, model: nn.Module, data: FeatureData, rng: jax.Array) -> None:
        return None

    def forward(self, model: nn.Module) -> Callable:
        def fwd(variables, batch, train, rng):
            video, _ = model.apply(
                {"params": variables["params"]}, batch["features"], batch["mask"], batch["times"],
                train=train, rngs={"dropout": rng} if train else None,
            )  # fmt: skip
            return video, variables["batch_stats"]

        return fwd

    def per_example(self, logits: jax.Array, batch: dict) -> tuple[jax.Array, jax.Array]:
        return task.softmax_classification(logits, batch["label"])

    def train_iterator(self, data: FeatureData) -> Iterator:
        host_batch = self.config.batch_size // jax.process_count()
        return iter(train_dataset(data.train.examples, self.config, host_batch))

    def evaluate(
        self, model: nn.Module, variables: dict, mesh: Mesh, data: FeatureData,
        checkpoint: Any = "",
    ) -> dict | None:  # fmt: skip
        if data.eval is None or not data.eval.examples:
            return None
        c = self.config
        preds = predict(self.forward(model), variables, data.eval.examples, mesh,
                        c.eval.batch_size // jax.process_count())  # fmt: skip
        summary = evaluation.summarize(preds, c.model.num_classes, label_names=data.label_names)
        return {
            **summary,
            "protocol": f"whole feature sequence, head {c.head.name}",
            "checkpoint": checkpoint,
            "dataset": f"{dataset_name(c)}:{c.dataset.eval_split}",
            "label_set": list(data.label_names),
            "settings_fingerprint": data.train.fingerprint,
            "skipped_files": len(data.eval.skipped),
        }

    def write_reports(self, outdir: Any, results: dict) -> None:
        evaluation.write_reports(outdir, results)


def dataset_name(config: ml_collections.ConfigDict) -> str:
    f = config.features
    return str(f.get("tfds_dir") or f.csv or config.dataset.folder)


def predict(
    forward: Callable, variables: dict, examples: Sequence[dict], mesh: Mesh, host_batch: int
) -> dict:
    """Video logits of every sequence: numpy `logits [V, K]`, `label`, `index`, `view` (zeros)."""
    step = steps.make_eval_step(forward, mesh, inputs=INPUTS)
    parts: dict[str, list] = {}
    for host in eval_batches(examples, host_batch):
        out = jax.device_get(step(variables, sharding.global_batch(host, mesh)))
        for k, v in out.items():
            parts.setdefault(k, []).append(np.asarray(v))
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    real = cat.pop("real") > 0
    cat = {k: v[real] for k, v in cat.items()}
    order = np.argsort(cat["index"], kind="stable")
    cat = {k: v[order] for k, v in cat.items()}
    return {**cat, "view": np.zeros_like(cat["index"])}
