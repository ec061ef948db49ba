"""The multi-label task (`config.task = "multilabel"`): I3D with per-frame sigmoid outputs, trained
on action intervals (Charades, pytorch-i3d's `train_i3d.py` recipe) by the same loop.

Model output: the network's `Logits_per_time` `[B, T', K]` (one step per temporal stride)
upsampled linearly over time to the clip's `T` frames (half-pixel centres, as PyTorch's
`F.interpolate(mode="linear")`): per-frame logits `[B, T, K]`, float32.

Loss of a clip (`multilabel_loss`): `frame_weight` x the mean sigmoid binary cross-entropy of every
frame's logits against its multi-hot targets (`i3d_jax.data.pipeline`: the classes shown at that
frame's time) + `max_weight` x the mean BCE of the logits' max over time against the clip's
classes (the max of the targets over time); weights `config.multilabel.*`, default 1/2 and 1/2.
The train step's `accuracy` is the top-1 hit rate: the class scoring highest (max over time) is
one of the clip's classes (a clip without any: no class scores above probability 1/2).

Evaluation ("whole" protocol only: each video looped/trimmed to `eval.max_frames` frames, one
fully convolutional pass; a video longer than that is scored on its central `eval.max_frames`
frames, counted in `videos_trimmed` and warned about): a video's score per class is the max of
its real frames' logits (what the max-over-time loss trains); `video_mAP` is the mAP of those
against the video's classes (`Charades_v1_classify`), `frame_mAP` that of the logits of 25 equally
spaced frames per video against those frames' targets (`Charades_v1_localize`); AP as the
Charades code computes it (`i3d_jax.training.average_precision`). `results.json` also holds
`per_class_ap` and `per_class_frame_ap` (by class name, classes with positives only),
`classes_with_positives`, `frame_classes_with_positives`, `num_videos` and `videos_trimmed`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from i3d_jax import graph
from i3d_jax.cli import UsageError
from i3d_jax.data import pipeline
from i3d_jax.training import average_precision as ap
from i3d_jax.training.tasks import video

EVAL_KEYS = (*video.EVAL_KEYS, "targets", "video_targets", "num_frames", "total_frames")


def upsample_time(per_time: jax.Array, frames: int) -> jax.Array:
    """`[B, T', K]` -> `[B, frames, K]` by linear interpolation over time (half-pixel centres;
    the ends hold their value)."""
    b, _, k = per_time.shape
    return jax.image.resize(per_time, (b, frames, k), method="linear")


def multilabel_loss(
    logits: jax.Array, targets: jax.Array, frame_weight: float = 0.5, max_weight: float = 0.5
) -> tuple[jax.Array, jax.Array]:
    """`(loss [B], top-1 hit [B])` of per-frame logits `[B, T, K]` against multi-hot targets
    `[B, T, K]` (module docstring)."""
    targets = targets.astype(jnp.float32)
    frame = optax.sigmoid_binary_cross_entropy(logits, targets).mean(axis=(1, 2))
    clip_logits, clip_targets = logits.max(axis=1), targets.max(axis=1)
    clip = optax.sigmoid_binary_cross_entropy(clip_logits, clip_targets).mean(axis=1)
    top = jnp.argmax(clip_logits, axis=-1)
    hit = jnp.take_along_axis(clip_targets, top[:, None], axis=1)[:, 0]
    none = clip_targets.sum(axis=1) == 0
    correct = jnp.where(none, (clip_logits < 0).all(axis=1), hit > 0).astype(jnp.float32)
    return frame_weight * frame + max_weight * clip, correct


def check_actions(info: pipeline.SourceInfo) -> None:
    """`UsageError` unless the dataset's examples carry action intervals."""
    if not info.actions:
        raise UsageError(
            f"dataset {info.name} has no action intervals (feature 'actions'): config.task="
            "multilabel trains on them; build one with `python -m i3d_jax.data.build "
            "video_folder ... --charades_csv FILE` or use synthetic_motion/multilabel"
        )


def reduce_batch(out: dict) -> dict:
    """One eval batch's per-frame logits and targets -> per video: `video_scores [B, K]` (max
    over its real frames), `frame_scores`/`frame_targets` `[B, 25, K]` (the localisation
    frames); the other entries kept."""
    logits, targets = out.pop("logits"), out.pop("targets")
    n = out["num_frames"]
    frames = np.stack([ap.localize_frames(int(m)) for m in n])  # [B, 25]
    rows = np.arange(len(n))[:, None]
    out["video_scores"] = np.stack(
        [lg[: int(m)].max(axis=0) for lg, m in zip(logits, n, strict=True)]
    )
    out["frame_scores"] = logits[rows, frames]
    out["frame_targets"] = targets[rows, frames]
    return out


def summarize(preds: dict, label_names: Sequence[str], max_frames: int) -> dict:
    """The metrics of the module docstring from `predict`'s per-video outputs."""
    k = preds["video_scores"].shape[-1]
    names = [str(n) for n in label_names][:k] + [str(i) for i in range(len(label_names), k)]
    video_map, video_ap = ap.mean_ap(preds["video_scores"], preds["video_targets"])
    frame_map, frame_ap = ap.mean_ap(
        preds["frame_scores"].reshape(-1, k), preds["frame_targets"].reshape(-1, k)
    )
    return {
        "video_mAP": video_map,
        "frame_mAP": frame_map,
        "per_class_ap": ap.by_name(video_ap, names),
        "per_class_frame_ap": ap.by_name(frame_ap, names),
        "classes_with_positives": int((~np.isnan(video_ap)).sum()),
        "frame_classes_with_positives": int((~np.isnan(frame_ap)).sum()),
        "num_videos": int(len(preds["video_scores"])),
        "frames_per_video": ap.LOCALIZE_FRAMES,
        "videos_trimmed": int((preds["total_frames"] > max_frames).sum()),
    }


class MultiLabelVideo(video.VideoClassification):
    """I3D with per-frame sigmoid outputs: per-frame + max-over-time BCE, mAP evaluation."""

    best_metric = "video_mAP"

    def data(self) -> video.Data:
        data = video.load_data(self.config)
        check_actions(data.info)
        return data

    def data_card(self, data: video.Data) -> dict:
        return {**super().data_card(data), "multilabel": True}

    def logits(self, endpoints: dict, frames: int) -> jax.Array:
        if "Logits_per_time" not in endpoints:
            raise ValueError(
                f"model.preset={self.config.model.preset!r} returns no 'Logits_per_time' "
                "endpoint; the multilabel task needs per-time logits (an InceptionI3d preset)"
            )
        return upsample_time(endpoints["Logits_per_time"].astype(jnp.float32), frames)

    def per_example(self, logits: jax.Array, batch: dict) -> tuple[jax.Array, jax.Array]:
        m = self.config.multilabel
        return multilabel_loss(logits, batch["targets"], m.frame_weight, m.max_weight)

    def train_iterator(self, data: video.Data) -> Iterator[dict]:
        config = self.config
        video.check_data(config, data.info)
        check_actions(data.info)
        spec = dataclasses.replace(
            video.train_spec(config, data.info), multilabel_classes=config.model.num_classes
        )
        ds = pipeline.train_dataset(
            data.train,
            spec,
            config.batch_size // jax.process_count(),
            seed=config.seed,
            num_threads=config.input.num_threads,
            num_workers=config.input.num_workers,
            prefetch=config.input.prefetch,
        )
        return iter(ds)

    def evaluate(
        self, model: nn.Module, variables: dict, mesh: Mesh, data: video.Data, checkpoint: Any = ""
    ) -> dict | None:
        if data.eval is None:
            return None
        preds = self.predict(model, variables, mesh, data.eval, data.info)
        max_frames = self.config.eval.max_frames
        results = summarize(preds, data.info.label_names, max_frames)
        if results["videos_trimmed"]:
            print(f"warning: {results['videos_trimmed']} of {results['num_videos']} videos are "
                  f"longer than eval.max_frames={max_frames}: scored on their central "
                  f"{max_frames} frames", flush=True)  # fmt: skip
        return {
            **results,
            **video.describe(self.config, data.info, checkpoint),
            "protocol": f"whole video (eval.max_frames={max_frames}), per-frame sigmoid; video "
            f"score = max over frames; {ap.LOCALIZE_FRAMES} equally spaced frames per video",
        }

    def predict(
        self, model: nn.Module, variables: dict, mesh: Mesh, source: Any, info: Any
    ) -> dict:
        """Per video of `source`: `video_scores`, `video_targets`, `frame_scores`,
        `frame_targets`, `num_frames`, `total_frames`, `index` (see `reduce_batch`)."""
        spec = dataclasses.replace(
            video.eval_spec(self.config, info), multilabel_classes=self.config.model.num_classes
        )
        return video.predict(
            self.config, self.forward(model), variables, source, info, mesh,
            compiler_options=graph.jit_options(model, train=False), spec=spec, keys=EVAL_KEYS,
            reduce=reduce_batch,
        )  # fmt: skip

    def write_reports(self, outdir: str | pathlib.Path, results: dict) -> None:
        """per_class_ap.json (video and frame AP of each class with positives) in `outdir`."""
        outdir = pathlib.Path(outdir)
        outdir.mkdir(parents=True, exist_ok=True)
        table = {
            name: {"video_ap": v, "frame_ap": results["per_class_frame_ap"].get(name)}
            for name, v in results["per_class_ap"].items()
        }
        (outdir / "per_class_ap.json").write_text(json.dumps(table, indent=2) + "\n")
