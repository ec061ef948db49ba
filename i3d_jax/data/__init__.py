"""Datasets: the TFDS schema, builders (registered on import) and readers; no TensorFlow needed.

* :mod:`i3d_jax.data.schema`: the feature schema, `data_source`, `decode_frames`.
* :mod:`i3d_jax.data.stored_video`: how RGB frames are stored (H.264 segments, JPEG) and
  `read_clip` / `decode_video`, the readers of any stored example.
* :mod:`i3d_jax.data.synthetic_motion`: ``synthetic_motion`` (generated, class = motion).
* :mod:`i3d_jax.data.video_folder`: ``video_folder`` (local videos: folders or Kinetics CSV).
* :mod:`i3d_jax.data.catalog`: TFDS catalog datasets (e.g. ``ucf101``) through the same reader.
* ``python -m i3d_jax.data.build NAME --data_dir DIR ...`` builds any of them.
"""

from i3d_jax.data import schema, stored_video
from i3d_jax.data.schema import data_source, decode_frames, encoded_decoders
from i3d_jax.data.stored_video import decode_video, read_clip
from i3d_jax.data.synthetic_motion import SyntheticMotion, SyntheticMotionConfig
from i3d_jax.data.video_folder import VideoFolder, VideoFolderConfig

__all__ = [
    "SyntheticMotion",
    "SyntheticMotionConfig",
    "VideoFolder",
    "VideoFolderConfig",
    "data_source",
    "decode_frames",
    "decode_video",
    "encoded_decoders",
    "read_clip",
    "schema",
    "stored_video",
]
