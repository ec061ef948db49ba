"""Named `extract_features` settings for the field's feature formats (`--preset NAME`).

Each preset is a plain dict of `i3d_jax.extract_features.ExtractConfig` fields; flags given on
the command line override it, and the preset's name is recorded in the output's `settings` (not
in its fingerprint: the same numbers by flags or by preset are the same features). `fps: None`
keeps the video's native frames (no resampling); times are then in the video's own seconds.
The stream is not part of a preset: `--stream both` concatenates RGB and flow (RGB first) in
`features` and keeps `features_rgb` / `features_flow` apart; `--stream rgb|flow` writes one.

  actionformer_thumos14  16-frame windows every 4 frames at the native fps (~30 for THUMOS14),
                         smaller side 256, one centre 224 crop, Mixed_5c averaged over time and
                         space: 1024 per stream, 2048 with `--stream both` (ActionFormer's
                         `feat_stride: 4, num_frames: 16`)
  activitynet            16-frame windows every 16 frames at 25 fps, otherwise as above
  video_features         64-frame stacks every 64 frames at the native fps, otherwise as above
                         (v-iashin/video_features' I3D defaults: `stack_size: 64, step_size: 64,
                         extraction_fps: null`; it writes RGB and flow to separate files, here
                         `features_rgb` / `features_flow` of one file with `--stream both`)

Every window's time in the output comes from its decoded frames: `timestamps` [start, end) from
the first frame's start to the last one's end (presentation timestamps at the native fps, the
resampled grid `frame / fps` otherwise) and `times` its middle, inside the video also for a
looped short video.
"""

from __future__ import annotations

from typing import Any

_COMMON = {"short_side": 256, "crop_size": 224, "crops": "center", "endpoint": "Mixed_5c",
           "pooled": True}  # fmt: skip

NATIVE = "native"

PRESETS: dict[str, dict[str, Any]] = {
    "actionformer_thumos14": {"window": 16, "stride": 4, "fps": None, **_COMMON},
    "activitynet": {"window": 16, "stride": 16, "fps": 25.0, **_COMMON},
    "video_features": {"window": 64, "stride": 64, "fps": None, **_COMMON},
}


def resolve(preset: str | None, explicit: dict[str, Any]) -> dict[str, Any]:
    """`ExtractConfig` keyword arguments: the preset's values, then every `explicit` value that
    is not None (flags the user gave), and `preset` (its name, "" for none)."""
    if preset and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    out = dict(PRESETS[preset]) if preset else {}
    out.update({k: v for k, v in explicit.items() if v is not None})
    if out.get("fps") == NATIVE:
        out["fps"] = None
    out["preset"] = preset or ""
    return out


def parse_fps(text: str) -> float | str:
    """`--fps` value: a number, or `native` (the video's own frames; `resolve` makes it None)."""
    return NATIVE if text.strip().lower() == NATIVE else float(text)
