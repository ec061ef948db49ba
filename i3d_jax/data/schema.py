"""The TFDS feature schema shared by every i3d_jax video builder, and the fast frame reader.

Every builder (`synthetic_motion`, `video_folder`, ...) writes examples with exactly these keys:

==============  ======================================================  =========================
key             feature                                                 value
==============  ======================================================  =========================
``video``       ``Sequence(Image(shape=(None, None, 3), jpeg|png))``    one encoded image a frame
                or ``Sequence(string)`` with ``frame_height``,          H.264 segments (RGB; see
                ``frame_width``, ``segment_frames`` (int32)             `stored_video`)
``label``       ``ClassLabel(names=...)``                               int64 class index
``video_id``    ``Text``                                                id (file stem, youtube id)
``path``        ``Text``                                                source path ("" if none)
``fps``         ``float32``                                             frame rate of the frames
``num_frames``  ``int32``                                               frames stored (``T``)
``height``      ``int32``                                               height of the source video
``width``       ``int32``                                               width of the source video
==============  ======================================================  =========================

Multi-label datasets (``video_folder`` built from Charades CSVs, ``synthetic_motion/multilabel``)
also have ``actions``: ``Sequence({"label": int32, "start": float32, "end": float32})``, the
video's action intervals (class index, seconds from the video's start; a frame at time ``t`` shows
action ``a`` when ``start <= t <= end``, see :mod:`i3d_jax.data.actions`). Its ``label`` is then
the class of the earliest action (-1 for a video without any). Datasets built without intervals
lack the feature and read as before; :data:`ANNOTATIONS_KEY` in the metadata says what the
intervals' source held (rows, skipped rows and actions, class descriptions).

``height``/``width`` are the source's upright size (a video stored rotated, with a display matrix,
is decoded upright; ``video_folder`` lists such videos in the metadata under :data:`ROTATED_KEY`).

RGB frames are JPEG (``encoding_format="jpeg"``). Flow frames are PNG (lossless): channel 0 is the
quantised x displacement, channel 1 the y displacement, channel 2 is zero; the quantisation scale
(pixels mapped to the uint8 range, see :func:`i3d_jax.preprocess.quantize_flow`) is stored in the
dataset metadata under :data:`FLOW_SCALE_KEY` (``builder.info.metadata["flow_scale"]``).

Frames are fed to TFDS already encoded (``bytes``), so building needs neither TensorFlow nor a
re-encode; the file format is ``array_record``, which builds and reads without TensorFlow.

Reading uint8 frames fast (no TensorFlow)::

    src = data_source(builder, "train")
    # the same: builder.as_data_source("train", deserialize_method=RAW_DESERIALIZE)
    #       or: builder.as_data_source("train", decoders=encoded_decoders())
    ex = src[0]                          # dict; ex["video"] is a list of encoded frames (bytes)
    frames = decode_frames(ex["video"])                 # np.uint8 [T, H, W, 3]
    clip = decode_frames(ex["video"][:64], crop=(16, 58, 224, 224))  # crop after decode

`encoded_decoders` keeps TFDS from decoding every image (the numpy backend, no TF; TFDS's own
``SkipDecoding`` and ``DESERIALIZE_NO_DECODE`` need TensorFlow), so the reader pays only for the frames
it needs; :func:`decode_frames` decodes with PIL (libjpeg-turbo) into one
preallocated array. :func:`example_to_numpy` turns the other fields into plain numpy/str values.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

VIDEO = "video"
LABEL = "label"
VIDEO_ID = "video_id"
PATH = "path"
FPS = "fps"
NUM_FRAMES = "num_frames"
HEIGHT = "height"
WIDTH = "width"
ACTIONS = "actions"  # multi-label datasets only: {"label", "start", "end"} per action
#: Datasets of H.264 segments (`i3d_jax.data.stored_video`): the stored frames' size and the
#: frames per segment.
FRAME_HEIGHT = "frame_height"
FRAME_WIDTH = "frame_width"
SEGMENT_FRAMES = "segment_frames"

#: Dataset-level metadata keys (``builder.info.metadata``).
FLOW_SCALE_KEY = "flow_scale"
MODALITY_KEY = "modality"
SKIPPED_KEY = "skipped"
SOURCE_KEY = "source"  # video_folder: the fingerprint of the source folder and settings
#: video_folder: the videos stored rotated (a display matrix), whose frames were turned upright:
#: ``{"count": n, "files": [{"split", "path", "video_id", "rotation"}, ...]}`` (degrees
#: counter-clockwise, as `i3d_jax.preprocess.video_info` reports them).
ROTATED_KEY = "rotated"
#: Multi-label datasets: where the action intervals came from and what was skipped, e.g.
#: ``{"format": "charades", "rows", "videos", "actions", "bad_rows", "bad_actions", "problems":
#: [{"csv", "line", "id", "reason"}, ...], "class_descriptions": {name: text}}``.
ANNOTATIONS_KEY = "annotations"


#: ``builder.as_data_source(split, deserialize_method=RAW_DESERIALIZE)`` on an i3d_jax builder keeps
#: ``video`` as encoded frames without TF (same as ``decoders=encoded_decoders()``).
RAW_DESERIALIZE = tfds.decode.DeserializeMethod.DESERIALIZE_NO_DECODE

FILE_FORMAT = "array_record"
JPEG_QUALITY = 90


def video_features(
    class_names: Sequence[str] | None,
    *,
    flow: bool = False,
    actions: bool = False,
    frame_format=None,
) -> tfds.features.FeaturesDict:
    """The feature dict of every builder; `flow=True` stores PNG frames instead of JPEG;
    `actions=True` adds the action intervals of multi-label datasets (:data:`ACTIONS`);
    `frame_format` ("h264" or "jpeg", RGB only; None: JPEG) how RGB frames are stored: H.264
    segments replace the JPEG sequence (see :mod:`i3d_jax.data.stored_video`).

    `class_names=None` leaves the label names open: TFDS restores them from the built dataset's
    ``label.labels.txt`` (for builders that learn their classes only while building).
    """
    label = (
        tfds.features.ClassLabel()
        if class_names is None
        else tfds.features.ClassLabel(names=list(class_names))
    )
    image = tfds.features.Image(shape=(None, None, 3), encoding_format="png" if flow else "jpeg")
    extra = {ACTIONS: actions_feature()} if actions else {}
    frames = {VIDEO: tfds.features.Sequence(image)}
    if frame_format == "h264" and not flow:
        scalar = tfds.features.Scalar(dtype=np.int32)
        frames = {
            VIDEO: tfds.features.Sequence(tfds.features.Tensor(shape=(), dtype=np.object_)),
            FRAME_HEIGHT: scalar,
            FRAME_WIDTH: scalar,
            SEGMENT_FRAMES: scalar,
        }
    return tfds.features.FeaturesDict(
        {
            **extra,
            **frames,
            LABEL: label,
            VIDEO_ID: tfds.features.Text(),
            PATH: tfds.features.Text(),
            FPS: tfds.features.Scalar(dtype=np.float32),
            NUM_FRAMES: tfds.features.Scalar(dtype=np.int32),
            HEIGHT: tfds.features.Scalar(dtype=np.int32),
            WIDTH: tfds.features.Scalar(dtype=np.int32),
        }
    )


def actions_feature() -> tfds.features.Sequence:
    """The :data:`ACTIONS` feature: one ``{"label", "start", "end"}`` per action interval."""
    return tfds.features.Sequence(
        {
            "label": tfds.features.Scalar(dtype=np.int32),
            "start": tfds.features.Scalar(dtype=np.float32),
            "end": tfds.features.Scalar(dtype=np.float32),
        }
    )


def stored_features_have(data_dir, key: str) -> bool | None:
    """Whether the dataset built in `data_dir` (its ``features.json``) has feature `key`; None
    when nothing is built there (a builder then decides from its own arguments)."""
    import json

    from etils import epath

    path = epath.Path(data_dir) / "features.json"  # gs:// too, as TFDS reads it
    if not path.exists():
        return None
    stored = json.loads(path.read_text())
    features = stored.get("featuresDict", {}).get("features", {})
    return key in features


def encode_jpeg_frames(
    frames: np.ndarray, quality: int = JPEG_QUALITY, subsampling: int = 2
) -> list[bytes]:
    """Encode uint8 RGB frames `[T, H, W, 3]` to a list of JPEG bytes (one per frame).

    `subsampling` is PIL's chroma subsampling: 2 is 4:2:0 (the video norm), 0 is 4:4:4.
    """
    frames = _check_frames(frames, 3, "frames")
    out = []
    for frame in frames:
        buf = io.BytesIO()
        Image.fromarray(frame, "RGB").save(
            buf, format="JPEG", quality=quality, subsampling=subsampling
        )
        out.append(buf.getvalue())
    return out


def encode_flow_frames(flow_uint8: np.ndarray) -> list[bytes]:
    """Encode quantised flow `[T, H, W, 2]` uint8 (x, y) to PNG bytes with a zero third channel."""
    flow_uint8 = _check_frames(flow_uint8, 2, "flow")
    t, h, w, _ = flow_uint8.shape
    rgb = np.zeros((h, w, 3), np.uint8)
    out = []
    for frame in flow_uint8:
        rgb[..., :2] = frame
        buf = io.BytesIO()
        Image.fromarray(rgb, "RGB").save(buf, format="PNG", compress_level=1)
        out.append(buf.getvalue())
    return out


def decode_frames(
    encoded: Sequence[bytes], crop: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """Decode encoded frames (JPEG/PNG bytes, all the same size) to uint8 `[T, H, W, 3]`.

    Args:
      encoded: one encoded image per frame, e.g. ``example["video"]`` read with `encoded_decoders`
        (a dataset stored as H.264 segments needs the whole example: `stored_video.decode_video`).
      crop: optional ``(top, left, height, width)`` applied after decoding each frame.
    Returns:
      ``np.uint8 [T, H, W, 3]`` (``[T, height, width, 3]`` with a crop), in frame order.
    """
    if len(encoded) == 0:
        raise ValueError("decode_frames: got zero frames; expected at least one encoded image")
    if bytes(encoded[0][:4]) == b"\x00\x00\x00\x01":
        raise ValueError(
            "decode_frames: these are H.264 segments (a dataset stored as segments), not one "
            "image a frame; decode the example with i3d_jax.data.stored_video.decode_video(example) "
            "or read_clip(example, indices, crop)"
        )
    out = None
    for i, data in enumerate(encoded):
        img = Image.open(io.BytesIO(bytes(data)))
        if img.mode != "RGB":
            img = img.convert("RGB")
        arr = np.asarray(img)
        if out is None:
            h, w = arr.shape[:2]
            if crop is None:
                top, left, ch, cw = 0, 0, h, w
            else:
                top, left, ch, cw = (int(v) for v in crop)
                if top < 0 or left < 0 or top + ch > h or left + cw > w:
                    raise ValueError(
                        f"decode_frames: crop (top={top}, left={left}, height={ch}, width={cw}) "
                        f"does not fit in frames of {h}x{w}"
                    )
            out = np.empty((len(encoded), ch, cw, 3), np.uint8)
        if arr.shape[:2] != (h, w):
            raise ValueError(
                f"decode_frames: frame {i} is {arr.shape[0]}x{arr.shape[1]}, expected {h}x{w} "
                "like frame 0"
            )
        out[i] = arr[top : top + ch, left : left + cw]
    return out


def decode_flow_frames(
    encoded: Sequence[bytes], crop: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """Decode PNG flow frames to quantised uint8 `[T, H, W, 2]` (x, y); see `decode_frames`."""
    return decode_frames(encoded, crop)[..., :2]


def example_to_numpy(example: dict) -> dict:
    """Make an example read with `encoded_decoders` plain: `video` stays a list of bytes, strings are `str`."""
    out = {}
    for key, value in example.items():
        if key == VIDEO:
            out[key] = [bytes(v) for v in value]
        elif isinstance(value, bytes):
            out[key] = value.decode("utf-8")
        elif key == FPS:
            out[key] = np.float32(value)
        elif key in (LABEL, NUM_FRAMES, HEIGHT, WIDTH):
            out[key] = int(value)
        elif key == ACTIONS:
            out[key] = {
                "label": np.asarray(value["label"], np.int32),
                "start": np.asarray(value["start"], np.float32),
                "end": np.asarray(value["end"], np.float32),
            }
        else:
            out[key] = value
    return out


def _check_frames(frames: np.ndarray, channels: int, what: str) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != channels:
        raise ValueError(
            f"{what}: expected np.uint8 [T, H, W, {channels}], got {frames.dtype} {frames.shape}"
        )
    return frames


class KeepEncoded(tfds.decode.Decoder):
    """A TFDS decoder (numpy backend, no TF) that leaves images encoded: one `bytes` a frame."""

    def decode_example(self, serialized_example):
        return serialized_example

    def decode_example_np(self, serialized_example):
        return bytes(serialized_example)

    def decode_batch_example_np(self, serialized_examples):
        return [bytes(b) for b in serialized_examples]


def encoded_decoders() -> dict:
    """`decoders=` for `as_data_source`/`tfds.data_source` that keep `video` as encoded bytes."""
    return {VIDEO: KeepEncoded()}


def data_source(name_or_builder, split: str, *, data_dir: str | None = None, encoded: bool = True):
    """Random-access source of a split (`tfds.data_source` without TF).

    Args:
      name_or_builder: a builder instance, a registered name such as ``"synthetic_motion/tiny"``
        (import the builder's module first so that its name is registered), or the directory of a
        built dataset (``<data_dir>/<name>/<config>/<version>``; no builder code needed).
      split: e.g. ``"train"``, ``"validation[:10%]"``.
      data_dir: where the dataset was built (for a name).
      encoded: keep ``video`` as a list of encoded frames (decode with `decode_frames`); False
        makes TFDS decode every frame to uint8 ``[H, W, 3]`` arrays (slower).
    Returns:
      A sequence of example dicts (``len``, ``[i]``) with the keys of the module table.
    """
    decoders = encoded_decoders() if encoded else None
    if isinstance(name_or_builder, str | os.PathLike) and os.path.isdir(name_or_builder):
        name_or_builder = tfds.builder_from_directory(os.fspath(name_or_builder))
    if isinstance(name_or_builder, str):
        return tfds.data_source(name_or_builder, split=split, data_dir=data_dir, decoders=decoders)
    return name_or_builder.as_data_source(split, decoders=decoders)


class VideoDatasetBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of the i3d_jax builders: defined outside a TFDS package, no downloads, no TensorFlow.

    The file format defaults to ``array_record`` (readable with `data_source`, no TF).

    TFDS looks for a checksums file beside a builder's package through `importlib_resources`, which
    is neither needed here nor always installed; these builders download nothing, so say so.
    """

    url_infos = None

    def __init__(self, *, progress: bool = False, **kwargs):
        """`progress`: show a tqdm bar per split while building; other args go to TFDS."""
        kwargs.setdefault("file_format", FILE_FORMAT)
        self._progress = progress
        super().__init__(**kwargs)

    def as_data_source(self, split=None, *, decoders=None, deserialize_method=None, **kwargs):
        """TFDS's `as_data_source`; ``deserialize_method=RAW_DESERIALIZE`` keeps frames encoded.

        TFDS's own ``DESERIALIZE_NO_DECODE`` parses with TensorFlow; here it means the TF-free
        equivalent: every feature parsed, ``video`` left as a list of encoded frames (bytes).
        """
        if deserialize_method == RAW_DESERIALIZE:
            decoders = {**encoded_decoders(), **(decoders or {})}
            deserialize_method = None
        if deserialize_method is not None:
            kwargs["deserialize_method"] = deserialize_method
        return super().as_data_source(split, decoders=decoders, **kwargs)

    def _bar(self, iterable, total: int, desc: str):
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=f"{self.name} {desc}", disable=not self._progress)
