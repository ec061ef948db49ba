"""The I3D task: video classification on clips (the `Task` the loop trains by default).

Training batches are `{"video": uint8 or float [B, T, H, W, C], "label": int [B]}`; uint8 clips
become [-1, 1] on the device. Evaluation (see `i3d_jax.data.pipeline`): "whole" runs each (looped
to `eval.max_frames`) video through the fully convolutional network once, so clip and video metrics
coincide; "multiview" runs `num_clips x num_crops` views and averages their logits per video.
Mixed precision: `config.model.dtype` is the compute dtype; logits and the loss are float32.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from i3d_jax import graph, preprocess, sharding
from i3d_jax.cli import UsageError
from i3d_jax.data import pipeline
from i3d_jax.training import evaluation, steps, task
from i3d_jax.training.config import DTYPES
from i3d_jax.training.tasks import video_model

EVAL_KEYS = ("video", "label", "index", "view", "mask")


@dataclasses.dataclass(frozen=True)
class Data:
    """Random-access sources of examples (`{"video", "label", ...}`) and their label names."""

    train: Any
    eval: Any | None
    info: pipeline.SourceInfo


def load_data(config: ml_collections.ConfigDict) -> Data:
    """The config's dataset (synthetic_motion built with TFDS if missing), checked against the
    config before any model work (`check_data`). `dataset.eval_split=""`: no evaluation."""
    train, info = pipeline.load_source(config.dataset, config.dataset.train_split)
    check_data(config, info)
    return Data(train, load_eval_source(config), info)


def load_eval_source(config: ml_collections.ConfigDict) -> Any | None:
    """The eval split's source; a split the dataset lacks is a `pipeline.DatasetError` naming
    the splits it has."""
    if not config.dataset.eval_split:
        return None
    return pipeline.load_source(config.dataset, config.dataset.eval_split)[0]


def check_data(config: ml_collections.ConfigDict, info: pipeline.SourceInfo) -> None:
    """`UsageError` if the head does not fit the dataset's classes (a larger head only with
    `model.allow_extra_classes`) or the crop is larger than the frames the dataset records."""
    n, k = len(info.label_names), config.model.num_classes
    if k < n or (k > n and not config.model.allow_extra_classes):
        why = (
            f"{n - k} of its classes could never be predicted"
            if k < n
            else f"{k - n} outputs would never see a label (set --config.model."
            "allow_extra_classes=True to keep a larger head on purpose)"
        )
        raise UsageError(
            f"dataset {info.name} has {n} classes but config.model.num_classes={k}: {why}; "
            f"use --config.model.num_classes={n}"
        )
    side, crop = info.short_side, config.input.crop_size
    if side is not None and crop > side:
        raise UsageError(
            f"config.input.crop_size={crop} is larger than the frames of dataset {info.name} "
            f"(smaller side {side} px, as its metadata records); use --config.input.crop_size="
            f"{side} or less, or a dataset built with a larger short side (data.build "
            "--short_side)"
        )


def train_spec(config: ml_collections.ConfigDict, info: pipeline.SourceInfo) -> pipeline.TrainSpec:
    jitter = None
    if config.input.scale_jitter_min > 0:
        jitter = (config.input.scale_jitter_min, config.input.scale_jitter_max)
    return pipeline.TrainSpec(
        clip_length=config.input.clip_length,
        crop_size=config.input.crop_size,
        loop_short=config.input.loop_short,
        flip=config.input.flip,
        scale_jitter=jitter,
        modality=config.modality,
        flow_scale=info.flow_scale,
    )


def eval_spec(config: ml_collections.ConfigDict, info: pipeline.SourceInfo) -> pipeline.EvalSpec:
    e = config.eval
    return pipeline.EvalSpec(
        protocol=e.protocol,
        crop_size=config.input.crop_size,
        max_frames=e.max_frames,
        clip_length=e.clip_length,
        num_clips=e.num_clips,
        num_crops=e.num_crops,
        modality=config.modality,
        flow_scale=info.flow_scale,
    )


def describe(config: ml_collections.ConfigDict, info: pipeline.SourceInfo, checkpoint: Any) -> dict:
    """The protocol, checkpoint, dataset and label set that go beside the numbers."""
    protocol = config.eval.protocol
    if protocol != "whole":
        protocol += f" ({config.eval.num_clips} clips x {config.eval.num_crops} crops)"
    return {
        "protocol": protocol,
        "checkpoint": checkpoint,
        "dataset": f"{info.name}:{config.dataset.eval_split}",
        "label_set": list(info.label_names),
        "modality": config.modality,
    }


class VideoClassification:
    """I3D (any registered preset) trained with softmax cross-entropy on clip labels."""

    best_metric = "video_top1"
    inputs = ("video",)

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config

    def data(self) -> Data:
        return load_data(self.config)

    def data_card(self, data: Data) -> dict:
        return {"dataset": data.info.name, "label_names": list(data.info.label_names)}

    def build_model(self, bn_axis_name: str | None = None) -> nn.Module:
        return video_model.build_model(self.config, bn_axis_name)

    def init_variables(self, model: nn.Module, data: Any, rng: jax.Array) -> dict:
        return video_model.init_variables(self.config, model, rng)

    def initial_variables(self, model: nn.Module, data: Any, rng: jax.Array) -> dict | None:
        if self.config.init.method == "scratch":
            return None
        return video_model.initial_variables(self.config, model, rng)

    def forward(self, model: nn.Module) -> Callable:
        dtype = DTYPES[self.config.model.dtype]

        def fwd(variables, batch, train, rng):
            x = preprocess.to_float(batch["video"], dtype)
            if not train:
                _, endpoints = model.apply(variables, x, train=False)
                return self.logits(endpoints, x.shape[1]), variables["batch_stats"]
            (_, endpoints), updates = model.apply(
                variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": rng}
            )
            return self.logits(endpoints, x.shape[1]), updates["batch_stats"]

        if self.config.model.remat and not hasattr(model, "graph"):
            # I3D rematerialises per Inception block (its graph); a stand-in model as a whole.
            return jax.checkpoint(fwd, static_argnums=(2,))
        return fwd

    def logits(self, endpoints: dict, frames: int) -> jax.Array:
        """What `forward` returns of the model's endpoints (float32): the clip's `Logits`."""
        del frames
        return endpoints["Logits"].astype(jnp.float32)

    def per_example(self, logits: jax.Array, batch: dict) -> tuple[jax.Array, jax.Array]:
        return task.softmax_classification(logits, batch["label"])

    def train_iterator(self, data: Data) -> Iterator[dict]:
        config = self.config
        check_data(config, data.info)  # a Data made elsewhere (tests, tools) is checked too
        ds = pipeline.train_dataset(
            data.train,
            train_spec(config, data.info),
            config.batch_size // jax.process_count(),
            seed=config.seed,
            num_threads=config.input.num_threads,
            num_workers=config.input.num_workers,
            prefetch=config.input.prefetch,
        )
        return iter(ds)

    def evaluate(
        self, model: nn.Module, variables: dict, mesh: Mesh, data: Data, checkpoint: Any = ""
    ) -> dict | None:
        if data.eval is None:
            return None
        preds = self.predict(model, variables, mesh, data.eval, data.info)
        summary = evaluation.summarize(
            preds, self.config.model.num_classes, label_names=data.info.label_names
        )
        return {**summary, **describe(self.config, data.info, checkpoint)}

    def predict(
        self, model: nn.Module, variables: dict, mesh: Mesh, source: Any, info: Any
    ) -> dict:
        """Logits of every real view of `source` (see `predict`)."""
        return predict(
            self.config, self.forward(model), variables, source, info, mesh,
            compiler_options=graph.jit_options(model, train=False),
        )  # fmt: skip

    def write_reports(self, outdir: str | pathlib.Path, results: dict) -> None:
        evaluation.write_reports(outdir, results)


def predict(
    config: ml_collections.ConfigDict,
    forward: Callable,
    variables: dict,
    source: Any,
    info: pipeline.SourceInfo,
    mesh: Mesh,
    compiler_options: dict[str, str] | None = None,
    *,
    spec: pipeline.EvalSpec | None = None,
    keys: tuple[str, ...] = EVAL_KEYS,
    reduce: Callable[[dict], dict] | None = None,
) -> dict:
    """Logits of every real view on every process: numpy dict of `logits [N, C]`, `label`,
    `index`, `view` (padding removed, sorted by (index, view)). `spec` replaces the config's
    eval spec, `keys` the batch entries sent to the devices (all but `video` come back);
    `reduce` maps each batch's outputs (numpy, `mask` included) to what is kept of them."""
    ds = pipeline.eval_dataset(
        source,
        spec or eval_spec(config, info),
        config.eval.batch_size // jax.process_count(),
        num_threads=config.input.num_threads,
        num_workers=config.input.num_workers,
        prefetch=config.input.prefetch,
        max_videos=config.eval.max_videos or None,
    )
    step = steps.make_eval_step(forward, mesh, ("video",), compiler_options)
    parts: dict[str, list] = {}
    for host in ds:
        out = jax.device_get(step(variables, sharding.global_batch(
            {k: host[k] for k in keys}, mesh)))  # fmt: skip
        out = {k: np.asarray(v) for k, v in out.items()}
        if reduce is not None:
            out = reduce(out)
        for k, v in out.items():
            parts.setdefault(k, []).append(np.asarray(v))
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    real = cat.pop("mask") > 0
    cat = {k: v[real] for k, v in cat.items()}
    order = np.lexsort((cat["view"], cat["index"]))
    return {k: v[order] for k, v in cat.items()}
