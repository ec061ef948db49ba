"""Fréchet Video Distance as the field computes it (`i3d_jax.fvd.distance`), its video sets and
clip plan (`i3d_jax.fvd.clips`); `python -m i3d_jax.fvd REAL GENERATED` (`i3d_jax.fvd.cli`)."""

from i3d_jax.fvd.clips import RESIZES, SAMPLINGS, VideoItem, load_video_set
from i3d_jax.fvd.distance import (
    FVDError,
    Protocol,
    SetReport,
    Stats,
    compute_stats,
    default_cache_dir,
    frechet_distance,
    fvd,
    make_feature_fn,
)

__all__ = [
    "RESIZES",
    "SAMPLINGS",
    "FVDError",
    "Protocol",
    "SetReport",
    "Stats",
    "VideoItem",
    "compute_stats",
    "default_cache_dir",
    "frechet_distance",
    "fvd",
    "load_video_set",
    "make_feature_fn",
]
