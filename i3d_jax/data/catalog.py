"""TFDS catalog video datasets (``ucf101``, ``hmdb51``-style) through the i3d_jax example format.

Catalog video datasets use ``tfds.features.Video`` and TFRecord files, which need TensorFlow to
build and to read. With TensorFlow installed and the dataset prepared (``tfds.builder(name,
data_dir=...).download_and_prepare()`` or ``python -m i3d_jax.data.build ucf101 --data_dir DIR``),
:func:`iter_examples` yields examples with the keys of :mod:`i3d_jax.data.schema` (``video`` as a
list of encoded frames, decoded by :func:`i3d_jax.data.schema.decode_frames`), so the rest of the
input pipeline is the same. Without TensorFlow these functions raise an ``ImportError`` that says
what to install. For TF-free random access, build the videos with ``video_folder`` instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from i3d_jax.data import schema

INSTALL_HINT = (
    "TFDS catalog video datasets (tfds.features.Video, TFRecord files) need TensorFlow: "
    "`pip install tensorflow` (or `tensorflow-cpu`). Without TensorFlow, build your videos with "
    "`python -m i3d_jax.data.build video_folder --manual_dir DIR ...` instead."
)


def require_tf():
    """Import TensorFlow or raise an ImportError naming what to install."""
    try:
        import tensorflow as tf
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return tf


def builder(name: str, *, data_dir: str | None = None, config: str | None = None):
    """`tfds.builder` for a catalog dataset (e.g. ``"ucf101"``, config ``"ucf101_1_256"``)."""
    require_tf()
    full = f"{name}/{config}" if config else name
    return tfds.builder(full, data_dir=data_dir)


def iter_examples(
    name: str,
    split: str,
    *,
    data_dir: str | None = None,
    video_key: str = "video",
    label_key: str = "label",
    fps: float = 25.0,
) -> Iterator[dict]:
    """Examples of a prepared catalog dataset as i3d_jax example dicts (tf.data, TF required).

    Args:
      name: catalog name with optional config, e.g. ``"ucf101/ucf101_1_256"``.
      split: e.g. ``"train"``, ``"test[:10%]"``.
      video_key, label_key: the dataset's feature names of the video and the label.
      fps: the frame rate to report (catalog features do not record it; UCF-101 is 25 fps).
    Yields:
      dicts with ``video`` (list of encoded frame bytes), ``label`` (int), ``video_id``, ``path``
      (empty), ``fps``, ``num_frames``, ``height``, ``width`` (of the stored frames).
    """
    require_tf()
    ds = tfds.load(
        name,
        split=split,
        data_dir=data_dir,
        decoders={video_key: tfds.decode.SkipDecoding()},
        shuffle_files=False,
    )
    for i, ex in enumerate(tfds.as_numpy(ds)):
        frames = [bytes(b) for b in ex[video_key]]
        first = schema.decode_frames(frames[:1])
        yield {
            schema.VIDEO: frames,
            schema.LABEL: int(ex[label_key]),
            schema.VIDEO_ID: f"{split}_{i:06d}",
            schema.PATH: "",
            schema.FPS: np.float32(fps),
            schema.NUM_FRAMES: len(frames),
            schema.HEIGHT: int(first.shape[1]),
            schema.WIDTH: int(first.shape[2]),
        }
