"""Sliding-window I3D features for videos: one `.npz` per video.

    python -m i3d_jax.extract_features VIDEO_OR_DIR --weights SOURCE --out DIR
        [--preset actionformer_thumos14|activitynet|video_features] [--endpoint Mixed_5c] [--window 64] [--stride 16] [--fps 25|native] [--short_side 256]
        [--crop_size 224] [--crops center|three|ten] [--stream rgb|flow|both]
        [--flow_weights SOURCE] [--pooled | --unpooled] [--batch_size 4]
        [--on_mismatch recompute|refuse]

`SOURCE` is anything `i3d_jax.load_pretrained` reads, a `train.py` workdir of an I3D run included
(`RUN`: its best checkpoint, else its latest; `RUN/best/<step>`, `RUN/checkpoints/<step>`); the
files record the weights by path, size and time (a workdir by the step directory it resolved to).

A preset (`i3d_jax.extract_features.presets`, exact numbers there and in the README) sets the window,
stride, fps, crops, endpoint and size of a field's format; flags given explicitly override it.
Each video is decoded in chunks with `i3d_jax.preprocess.iter_video_chunks` (`fps`, smaller side
`short_side`), turned into the stream's input (RGB: `x / 127.5 - 1`; flow: TV-L1 from
`i3d_jax.flow`, clipped to +-20 px and divided by 20, one frame fewer than RGB) and cut into
windows of `window` frames starting every `stride` frames while the window fits (`start + window
<= T`; trailing frames past the last full window are not covered). A video shorter than one
window is looped (frame `i` of the window is frame `i mod T`) to fill exactly one window, as in
the paper's training clips. With `--stream both`, windows are laid on the flow's `T - 1` frames
and used for both streams. Geometry (windows, crops, flips) is `i3d_jax.clips`.

Memory does not grow with the video's length: only the frames of the current windows are kept
(RGB as uint8), each crop is converted to float when its batch is built.

Crops: `center`; `three` (start, centre and end of the longer side, centred on the shorter);
`ten` (four corners and centre, then the same five flipped horizontally; flow's x is negated).

Output `DIR/<video file stem>.npz`:
  `features`       float32 `[num_windows, num_crops, D]` pooled (mean over time and space) or
                   `[num_windows, num_crops, *endpoint_shape]` unpooled; with `--stream both`
                   the pooled RGB and flow features concatenated (`[..., D_rgb + D_flow]`), and
                   `features_rgb` / `features_flow` separately
  `timestamps`     float64 `[num_windows, 2]`: each window's [start, end) in seconds, from the
                   decoded frames' times (`preprocess.iter_timed_chunks`): the first frame's
                   start to the last frame's end, `[start, start + window) / fps` at a
                   resampled `fps`; at `--fps native` the frames' presentation timestamps, so
                   variable-frame-rate video gets its real times; a looped window spans the
                   frames it shows (the whole video, ending at the video's end)
  `times`          float64 `[num_windows]`: each window's centre, the middle of `timestamps`
                   (inside the video, also for a looped window)
  `settings`       JSON of everything that changes the numbers (weights, endpoint, window,
                   stride, fps, short side, crop size, crops, pooling, stream, flow method, the
                   preset's name, and the video's `rotation`: the degrees its frames were turned
                   upright by) and `settings_fingerprint` (SHA-256 of all but the preset and the
                   rotation, so the files of one dataset share it);
  `endpoint`, `weights`, `stream`, `preprocessing` (JSON) as before.

Windows of different videos are batched together. A rerun skips a video whose `.npz` exists
with the same settings fingerprint (the output is written to a temporary file and renamed, so a
present `.npz` is complete); one made with other settings is recomputed (`--on_mismatch
recompute`, the default, naming what changed) or refused (`--on_mismatch refuse`); so is one
that records no `rotation` (made before frames were turned upright) of a video stored rotated
(`rotation None -> -90`). A file that cannot be decoded is reported and skipped; the others
continue and the exit status is 1.
"""

from i3d_jax.extract_features.batcher import make_apply
from i3d_jax.extract_features.extract import extract, stream_inputs
from i3d_jax.extract_features.plan import ExtractResult, list_videos, output_name
from i3d_jax.extract_features.settings import (
    CHANNELS,
    CROPS,
    DEFAULT_FLOW_ID,
    ON_MISMATCH,
    SETTINGS_VERSION,
    STREAMS,
    ExtractConfig,
    fingerprint,
    settings,
    settings_diff,
    stored_settings,
    weights_identity,
)

__all__ = [
    "CHANNELS",
    "CROPS",
    "DEFAULT_FLOW_ID",
    "ON_MISMATCH",
    "SETTINGS_VERSION",
    "STREAMS",
    "ExtractConfig",
    "ExtractResult",
    "extract",
    "fingerprint",
    "list_videos",
    "make_apply",
    "output_name",
    "settings",
    "settings_diff",
    "stored_settings",
    "stream_inputs",
    "weights_identity",
]
