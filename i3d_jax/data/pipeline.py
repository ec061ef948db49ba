"""Grain input pipelines: clip sampling, crops, flips, per-host sharding, checkpointable state.

Sources are random-access (`len(src)`, `src[i]`), e.g. `builder.as_data_source(split,
deserialize_method=schema.RAW_DESERIALIZE)` or a list of dicts in tests. An example is a dict with
`video` (a list of encoded frames, H.264 segments with their geometry, or a uint8 array `[T, H,
W, C]`; see `i3d_jax.data.stored_video`), `label` (int) and optionally `video_id` (str). Only the
frames a clip needs are decoded (`stored_video.read_clip`), cropped and, for RGB, flipped in the
same copy.

Output (one host batch, numpy):

- train: `video` `[B, L, S, S, C]`, `label` int32 `[B]`, `index` int32 `[B]` (the example's index in
  the source). RGB stays uint8 (convert on the accelerator with `to_float`, as late as possible);
  flow is float32 in [-1, 1] already (its x channel must change sign under a flip).
- eval: the same keys plus `mask` (1.0 real / 0.0 padding), `view` (clip x crop index) and
  `video_id` (str; host-only, not sent to devices).
- multi-label (`multilabel_classes=K > 0`; examples with `actions`, see `i3d_jax.data.actions`):
  also `targets` float32 `[B, L, K]`, the multi-hot classes of every frame of the clip at that
  frame's time in the video (`index / fps` of the stored frame it shows: a looped clip's targets
  loop with its frames); eval adds `video_targets` `[B, K]` (every class of the video) and
  `total_frames` (the video's length; `num_frames` is what the view shows of it).

Eval protocols (`EvalSpec.protocol`):

- "whole": the paper's test protocol, fully convolutional over the whole video. I chose padding over
  batch-of-one so that every device gets work and shapes stay static: a video is looped up to
  `max_frames` (longer ones are trimmed to their central `max_frames`), centre-cropped, and its
  real length is carried in `num_frames`. Looping repeats real content, so the time-averaged logits
  of a looped video approximate those of the original (exactly for a whole number of loops).
- "multiview": `num_clips` uniformly spaced clips of `clip_length` frames x `num_crops` (1 = centre,
  3 = both ends and the centre of the longer side) spatial crops; each view is one example, and
  `index`/`video_id` let the evaluator average the views of a video.

Sharding: host `process_index` of `process_count` reads examples `i, i + P, i + 2P, ...`. Training
drops the last `len % P` examples so every host sees the same number per epoch; evaluation pads every
host to the same number of batches with `mask=0` copies, so the shards are disjoint and complete.

Determinism: for a given seed the sequence of batches is fixed (Grain derives one RNG per element
index from the seed), independent of worker count; `iterator.get_state()`/`set_state()` resume it.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import re
import warnings
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

from i3d_jax import clips, preprocess
from i3d_jax.cli import UsageError
from i3d_jax.cli import message as cli_message
from i3d_jax.data import actions, schema, stored_video

RGB, FLOW = "rgb", "flow"


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """How training clips are sampled (frames, pixels)."""

    clip_length: int = 64
    crop_size: int = 224
    loop_short: bool = True
    flip: bool = True
    scale_jitter: tuple[float, float] | None = None  # crop side as a fraction of min(H, W)
    modality: str = RGB
    flow_scale: float = preprocess.FLOW_BOUND  # dataset metadata `flow_scale`, flow only
    multilabel_classes: int = 0  # > 0: per-frame multi-hot `targets` of this many classes


@dataclasses.dataclass(frozen=True)
class EvalSpec:
    """How evaluation views are made."""

    protocol: str = "whole"  # "whole" | "multiview"
    crop_size: int = 224
    max_frames: int = 250  # "whole": every video is looped/trimmed to this many frames
    clip_length: int = 64  # "multiview"
    num_clips: int = 10  # "multiview"
    num_crops: int = 1  # "multiview": 1 or 3
    modality: str = RGB
    flow_scale: float = preprocess.FLOW_BOUND
    multilabel_classes: int = 0  # > 0: `targets` per frame and `video_targets` ("whole" only)


# ----------------------------------------------------------------------------- pixel helpers


# One contract for pixels and flow (see `i3d_jax.preprocess` and `i3d_jax.clips`).
to_float = preprocess.to_float
dequantize_flow_unit = preprocess.dequantize_flow_unit


def flip_clip(clip: np.ndarray, modality: str) -> np.ndarray:
    """Horizontal flip of a whole clip `[T, H, W, C]`; for flow the x channel changes sign."""
    return clips.flip(clip, modality == FLOW)


def _frames(example: dict, indices: np.ndarray, crop: tuple[int, int, int, int], modality: str,
            flip: bool = False) -> np.ndarray:  # fmt: skip
    """Decodes (or slices) only `indices`, cropped to (top, left, h, w) and mirrored when `flip`
    (RGB only: flow's x sign flips after dequantising): uint8 `[L, h, w, C]`."""
    out = stored_video.read_clip(example, indices, crop, flip)
    return out[..., :2] if modality == FLOW else out


def _frame_size(example: dict) -> tuple[int, int, int]:
    """(num_frames, height, width) without decoding any frame."""
    return stored_video.frame_layout(example)


def _check_crop(h: int, w: int, size: int, video_id: str) -> None:
    if h < size or w < size:
        raise ValueError(f"video {video_id!r} frames are {h}x{w}, smaller than crop_size={size}")


_LOOP_WARNED = []  # a training clip looped a short video (said once per process)


def _warn_looping(video_id: str, num_frames: int, length: int) -> None:
    if _LOOP_WARNED:
        return
    _LOOP_WARNED.append(video_id)
    warnings.warn(
        f"training clips of {length} frames are longer than video {video_id!r} ({num_frames} "
        "frames): short videos loop to fill a clip (input.loop_short=True; set a shorter "
        "input.clip_length, or loop_short=False to refuse them). Said once.",
        stacklevel=2,
    )


def _video_id(example: dict, index: int) -> str:
    vid = example.get(schema.VIDEO_ID, str(index))
    return vid.decode("utf-8") if isinstance(vid, bytes) else str(vid)


def _finish(clip: np.ndarray, modality: str, flow_scale: float) -> np.ndarray:
    if modality == FLOW:
        return dequantize_flow_unit(clip, flow_scale)
    return np.ascontiguousarray(clip)


def _resize(clip: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    out = np.empty((clip.shape[0], size, size, clip.shape[-1]), clip.dtype)
    for t, frame in enumerate(clip):
        if frame.shape[-1] == 2:
            frame3 = np.concatenate([frame, np.zeros_like(frame[..., :1])], -1)
            out[t] = np.asarray(Image.fromarray(frame3).resize((size, size), Image.BILINEAR))[
                ..., :2
            ]
        else:
            out[t] = np.asarray(Image.fromarray(frame).resize((size, size), Image.BILINEAR))
    return out


# ----------------------------------------------------------------------------- transforms


class TrainTransform(grain.transforms.RandomMap):
    """(index, example) -> one random training clip (see module docstring)."""

    def __init__(self, spec: TrainSpec):
        self.spec = spec

    def random_map(self, element: tuple[int, dict], rng: np.random.Generator) -> dict:
        index, example = element
        s = self.spec
        vid = _video_id(example, index)
        n, h, w = _frame_size(example)
        start = (
            int(rng.integers(0, max(n - s.clip_length, 0) + 1))
            if n >= s.clip_length
            else int(rng.integers(0, n))
        )
        idx = clips.window_indices(n, start, s.clip_length, s.loop_short, vid)
        if n < s.clip_length:
            _warn_looping(vid, n, s.clip_length)
        if s.scale_jitter is not None:
            lo, hi = s.scale_jitter
            side = int(round(min(h, w) * rng.uniform(lo, hi)))
            side = max(min(side, h, w), 1)
        else:
            side = s.crop_size
        _check_crop(h, w, side, vid)
        top, left, _ = clips.random_box(h, w, side, rng)
        flip = bool(s.flip and rng.random() < 0.5)
        # RGB at the crop size: mirrored while copied out of the decoder (the same pixels)
        flip_early = flip and s.modality == RGB and side == s.crop_size
        clip = _frames(example, idx, (top, left, side, side), s.modality, flip_early)
        if side != s.crop_size:
            clip = _resize(clip, s.crop_size)
        clip = _finish(clip, s.modality, s.flow_scale)
        if flip and not flip_early:
            clip = flip_clip(clip, s.modality)
        out = {
            "video": clip,
            "label": np.int32(example[schema.LABEL]),
            "index": np.int32(index),
        }
        if s.multilabel_classes:
            out["targets"] = actions.frame_targets(example, idx, s.multilabel_classes)
        return out


def crop_offsets(h: int, w: int, size: int, num_crops: int) -> list[tuple[int, int]]:
    """(top, left) of 1 centre crop, or 3 crops along the longer side (start, centre, end)."""
    if num_crops not in (1, 3):
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    return [(b.top, b.left) for b in clips.crop_boxes(h, w, size, num_crops)]


class EvalTransform(grain.transforms.Map):
    """(index, view, example, real) -> one deterministic eval view."""

    def __init__(self, spec: EvalSpec):
        self.spec = spec

    def map(self, element: tuple[int, int, dict, bool]) -> dict:
        index, view, example, real = element
        s = self.spec
        vid = _video_id(example, index)
        n, h, w = _frame_size(example)
        _check_crop(h, w, s.crop_size, vid)
        if s.protocol == "whole":
            start = max(n - s.max_frames, 0) // 2
            idx = clips.window_indices(n, start, s.max_frames, True, vid)
            top, left, _ = clips.center_box(h, w, s.crop_size)
            used = min(n, s.max_frames)
        else:
            clip_i, crop_i = divmod(view, s.num_crops)
            start = clips.uniform_starts(n, s.clip_length, s.num_clips)[clip_i]
            idx = clips.window_indices(n, start, s.clip_length, True, vid)
            top, left = crop_offsets(h, w, s.crop_size, s.num_crops)[crop_i]
            used = min(n, s.clip_length)
        clip = _frames(example, idx, (top, left, s.crop_size, s.crop_size), s.modality)
        out = {
            "video": _finish(clip, s.modality, s.flow_scale),
            "label": np.int32(example[schema.LABEL]),
            "index": np.int32(index),
            "view": np.int32(view),
            "num_frames": np.int32(used),
            "mask": np.float32(1.0 if real else 0.0),
            "video_id": vid,
        }
        if s.multilabel_classes:
            out["targets"] = actions.frame_targets(example, idx, s.multilabel_classes)
            out["video_targets"] = actions.video_targets(example, s.multilabel_classes)
            out["total_frames"] = np.int32(n)  # > max_frames: the video was trimmed
        return out


# ----------------------------------------------------------------------------- datasets


class _Indexed:
    """Random access to (index, example) for the given source indices."""

    def __init__(self, source, indices: Sequence[int]):
        self.source, self.indices = source, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        index = self.indices[i]
        return (index, self.source[index])


class _Views:
    """Random access to (index, view, example, real) of one host's padded shard."""

    def __init__(self, source, views: int, shard: Sequence[int], length: int):
        self.source, self.views, self.shard, self.length = source, views, list(shard), length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        real = i < len(self.shard)
        pos = self.shard[i] if real else self.shard[i % len(self.shard)] if self.shard else 0
        index, view = divmod(pos, self.views)
        return (index, view, self.source[index], real)


def _check_shard(process_index: int, process_count: int) -> None:
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} is not in [0, {process_count})")


def _process(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    if process_index is None or process_count is None:
        import jax

        process_index, process_count = jax.process_index(), jax.process_count()
    _check_shard(process_index, process_count)
    return process_index, process_count


def _finalize(ds: grain.MapDataset, num_threads: int, num_workers: int, prefetch: int):
    it_ds = ds.to_iter_dataset(
        grain.ReadOptions(num_threads=max(num_threads, 1), prefetch_buffer_size=max(prefetch, 1))
    )
    if num_workers > 0:
        from absl import flags

        if not flags.FLAGS.is_parsed():  # Grain's workers read absl flags (outside app.run too)
            flags.FLAGS.mark_as_parsed()
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
    return it_ds


def train_dataset(
    source,
    spec: TrainSpec,
    host_batch_size: int,
    seed: int,
    *,
    num_epochs: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    num_threads: int = 2,
    num_workers: int = 0,
    prefetch: int = 2,
) -> grain.IterDataset:
    """The training stream of one host: shuffled each epoch, random clips, batched (drops partial).

    Iterate with `it = iter(ds)`; `it.get_state()` / `it.set_state(state)` checkpoint it.
    `num_epochs=None` repeats forever. `num_workers > 0` decodes in worker processes.
    """
    pi, pc = _process(process_index, process_count)
    n = len(source)
    per_host = n // pc
    if per_host == 0:
        raise ValueError(f"dataset of {n} examples cannot be split over {pc} processes")
    if per_host < host_batch_size:
        raise ValueError(
            f"each of {pc} processes gets {per_host} examples, fewer than host batch "
            f"{host_batch_size}"
        )
    ds = grain.MapDataset.source(_Indexed(source, range(pi, per_host * pc, pc)))
    ds = ds.shuffle(seed=seed).repeat(num_epochs)
    ds = ds.random_map(TrainTransform(spec), seed=seed + 1)
    ds = ds.batch(host_batch_size, drop_remainder=True)
    return _finalize(ds, num_threads, num_workers, prefetch)


def num_views(spec: EvalSpec) -> int:
    """Views per video: 1 for "whole", num_clips x num_crops for "multiview"."""
    if spec.protocol == "whole":
        return 1
    if spec.protocol == "multiview":
        return spec.num_clips * spec.num_crops
    raise ValueError(f"unknown eval protocol {spec.protocol!r}; expected 'whole' or 'multiview'")


def eval_dataset(
    source,
    spec: EvalSpec,
    host_batch_size: int,
    *,
    process_index: int | None = None,
    process_count: int | None = None,
    num_threads: int = 2,
    num_workers: int = 0,
    prefetch: int = 2,
    max_videos: int | None = None,
) -> grain.IterDataset:
    """One pass over every view of every video, padded with `mask=0` so all hosts run as many
    batches (`ceil(views / (P * B))` each) and together see each view exactly once."""
    pi, pc = _process(process_index, process_count)
    n = len(source) if max_videos is None else min(len(source), max_videos)
    v = num_views(spec)
    total = n * v
    per_host = math.ceil(total / pc)
    length = max(math.ceil(per_host / host_batch_size), 1) * host_batch_size
    shard = range(pi, total, pc)
    ds = grain.MapDataset.source(_Views(source, v, shard, length))
    ds = ds.map(EvalTransform(spec)).batch(host_batch_size, drop_remainder=True)
    return _finalize(ds, num_threads, num_workers, prefetch)


def num_eval_batches(
    num_videos: int, spec: EvalSpec, host_batch_size: int, process_count: int
) -> int:
    """Batches each host runs in one eval pass."""
    per_host = math.ceil(num_videos * num_views(spec) / process_count)
    return max(math.ceil(per_host / host_batch_size), 1)


class InMemorySource:
    """A random-access source over a list of example dicts (tests, small demos)."""

    def __init__(self, examples: Sequence[dict]):
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        return self.examples[int(i)]

    def __repr__(self) -> str:
        return f"InMemorySource({len(self)} examples)"


# ----------------------------------------------------------------------------- sources


@dataclasses.dataclass(frozen=True)
class SourceInfo:
    """What the trainer needs to know about a dataset besides its examples."""

    label_names: tuple[str, ...]
    flow_scale: float = preprocess.FLOW_BOUND
    name: str = ""
    short_side: int | None = None  # the frames' smaller side as the dataset records it (pixels)
    splits: tuple[str, ...] = ()  # the splits the dataset has (empty: unknown)
    actions: bool = False  # its examples carry action intervals (multi-label datasets)


class DatasetError(UsageError):
    """A dataset, its directory or a split is missing (found before any training work)."""


BUILD = "python -m i3d_jax.data.build"


def _expected_flow(dataset_cfg: Any) -> dict:
    """The flow settings a run expects of a flow dataset (`config.dataset.flow`; "" / 0: any)."""
    expected = getattr(dataset_cfg, "flow", None)
    return {
        k: getattr(expected, k, None) or d
        for k, d in (("solver", ""), ("preset", ""), ("bound", 0.0))
    }


def _flow_to_build(expected: dict):
    """`flow_build.FlowSettings` for a flow dataset that is built by this run (what it expects)."""
    from i3d_jax.data import flow_build

    given = {k: v for k, v in expected.items() if v}
    return flow_build.FlowSettings(**given)


def load_source(dataset_cfg: Any, split: str, build: bool = True) -> tuple[Any, SourceInfo]:
    """The random-access source of `split` for a config's `dataset` block, and its label names.

    `synthetic_motion` is built with TFDS under `data_dir` if missing (or generated in memory with
    `in_memory=True`); `video_folder` is built if missing only when `dataset_cfg.folder` names its
    source folder; any other name (a TFDS catalog dataset) must be built already. Reading creates
    no directory: a missing `data_dir`, dataset or split raises `DatasetError` naming the path,
    what was expected and how to build it. Frames are read still encoded (decoded per clip by
    the pipeline). A flow dataset whose recorded flow settings differ from `dataset_cfg.flow`
    (solver, preset, bound; "" / 0 accepts any) raises `flow_build.FlowSettingsMismatchError`.
    """
    name = dataset_cfg.name
    if name == "synthetic_motion" and dataset_cfg.in_memory:
        return _in_memory(dataset_cfg, split)
    builder = _builder(dataset_cfg)
    _prepare(builder, dataset_cfg, build)
    _check_split(builder, dataset_cfg, split)
    meta = builder.info.metadata or {}
    if meta.get(schema.MODALITY_KEY) == FLOW or schema.FLOW_SCALE_KEY in meta:
        from i3d_jax.data import flow_build  # jax: only for flow datasets

        flow_build.check_expected(
            meta.get(flow_build.METADATA_KEY),
            **_expected_flow(dataset_cfg),
            where=f"the flow dataset {name}/{dataset_cfg.builder_config or ''} in "
            f"{builder.data_dir}",
        )
    src = builder.as_data_source(split, deserialize_method=schema.RAW_DESERIALIZE)
    info = SourceInfo(
        tuple(builder.info.features[schema.LABEL].names),
        float(meta.get(schema.FLOW_SCALE_KEY, preprocess.FLOW_BOUND)),
        name=f"{name}/{builder.builder_config.name if builder.builder_config else ''}",
        short_side=_recorded_short_side(meta),
        splits=tuple(builder.info.splits),
        actions=schema.ACTIONS in builder.info.features,
    )
    return src, info


def _in_memory(dataset_cfg: Any, split: str) -> tuple[Any, SourceInfo]:
    from i3d_jax.data import synthetic_motion as sm

    cfg_name = dataset_cfg.builder_config or "default"
    bc = next(c for c in sm.SyntheticMotion.BUILDER_CONFIGS if c.name == cfg_name)
    which = "train" if split == "train" else "validation"
    if bc.task == "multilabel":  # examples with their action intervals
        src = InMemorySource(sm.multilabel_examples(bc, which))
    else:
        videos, labels = sm.generate_dataset(bc, which)
        src = InMemorySource(
            [
                {"video": v, "label": int(y), "video_id": f"{split}_{i:06d}"}
                for i, (v, y) in enumerate(zip(videos, labels, strict=True))
            ]
        )
    info = SourceInfo(sm.class_names(bc), name=f"synthetic_motion/{bc.name}", short_side=bc.size,
                      splits=("train", "validation"), actions=bc.task == "multilabel")  # fmt: skip
    return src, info


def _builder(dataset_cfg: Any):
    """The dataset's TFDS builder (constructing one reads, never writes)."""
    import tensorflow_datasets as tfds

    name, data_dir = dataset_cfg.name, dataset_cfg.data_dir or None
    cfg_name = dataset_cfg.builder_config or None
    if name == "synthetic_motion":
        from i3d_jax.data import synthetic_motion as sm

        return sm.SyntheticMotion(config=cfg_name, data_dir=data_dir, file_format="array_record")
    if name == "video_folder":
        from i3d_jax.data import video_folder

        kwargs = {"config": cfg_name} if cfg_name else {}
        if getattr(dataset_cfg, "folder", ""):
            kwargs["folder"] = dataset_cfg.folder
        if getattr(dataset_cfg, "frame_format", "") and cfg_name != FLOW:
            kwargs["frame_format"] = dataset_cfg.frame_format
        if cfg_name == FLOW and any(_expected_flow(dataset_cfg).values()):
            kwargs["flow"] = _flow_to_build(_expected_flow(dataset_cfg))  # if built here
        return video_folder.VideoFolder(data_dir=data_dir, **kwargs)
    _check_data_dir(dataset_cfg)
    try:
        return tfds.builder(name, config=cfg_name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise DatasetError(
            f"config.dataset.name={name!r} is no dataset this package or TFDS knows "
            f"({cli_message(e)}); expected synthetic_motion, video_folder or a TFDS catalog name"
        ) from e


def _prepare(builder, dataset_cfg: Any, build: bool) -> None:
    """Builds what a run may build (synthetic_motion; video_folder from `dataset_cfg.folder`);
    anything else must be there already (`DatasetError` naming where and how to build it)."""
    import tensorflow_datasets as tfds

    name, folder = dataset_cfg.name, getattr(dataset_cfg, "folder", "")
    if build and (name == "synthetic_motion" or (name == "video_folder" and folder)):
        if name == "video_folder" and not pathlib.Path(folder).is_dir():
            raise DatasetError(
                f"config.dataset.folder={folder!r} is not a directory; expected the source "
                "videos as <folder>/<split>/<class>/<video> (or Kinetics-style CSVs beside them)"
            )
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig())
        return
    if builder.is_prepared():
        return
    _check_data_dir(dataset_cfg)
    bc = builder.builder_config.name if builder.builder_config else None
    how = f"{BUILD} {name} --data_dir {builder.data_dir_root}" + (f" --config {bc}" if bc else "")
    if name == "video_folder":
        how = (
            f"`{how} --manual_dir VIDEOS` (or set config.dataset.folder=VIDEOS: the run builds it)"
        )
    else:
        how = f"`{how}`"
    raise DatasetError(
        f"no {name} dataset{f' (builder config {bc!r})' if bc else ''} in {builder.data_dir} "
        f"(config.dataset.data_dir={dataset_cfg.data_dir!r}); expected one built there: {how}"
    )


def _check_data_dir(dataset_cfg: Any) -> None:
    data_dir = dataset_cfg.data_dir
    if data_dir and "://" not in data_dir and not pathlib.Path(data_dir).is_dir():
        raise DatasetError(
            f"config.dataset.data_dir={data_dir!r} does not exist; expected the directory that "
            f"holds the built datasets (`{BUILD} {dataset_cfg.name} --data_dir {data_dir} ...`)"
        )


def split_names(split: str) -> list[str]:
    """The split names a TFDS split expression reads, e.g. `train+validation[:10%]`."""
    return re.findall(r"[A-Za-z_][\w-]*", re.sub(r"\[[^\]]*\]", "", split))


def _check_split(builder, dataset_cfg: Any, split: str) -> None:
    """`DatasetError` naming the splits the dataset has if it lacks one that `split` reads."""
    have = sorted(builder.info.splits)
    missing = [s for s in split_names(split) if s not in have]
    if not missing:
        return
    train_split = getattr(dataset_cfg, "train_split", "train")
    if split == train_split:
        field, hint = "train_split", f"; use e.g. --config.dataset.train_split={have[0]}"
        hint = hint if have else ""
    else:
        field, others = "eval_split", [s for s in have if s != train_split]
        hint = f"; use --config.dataset.eval_split={others[0]}, or" if others else "; set"
        hint += " --config.dataset.eval_split='' to train without evaluation"
    raise DatasetError(
        f"config.dataset.{field}={split!r}: the {dataset_cfg.name} dataset in {builder.data_dir} "
        f"has no split {missing[0]!r}; its splits are {have}{hint}"
    )


def _recorded_short_side(meta: dict) -> int | None:
    """The frames' smaller side the metadata records (synthetic size, video_folder short_side)."""
    config = meta.get("config")
    if isinstance(config, dict) and isinstance(config.get("size"), int):
        return config["size"]
    side = meta.get("short_side")
    return int(side) if isinstance(side, int | float) and side else None
