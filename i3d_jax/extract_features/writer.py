"""One video's feature file: its arrays and how it was made, written atomically."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any

import numpy as np

from i3d_jax.extract_features.batcher import VideoFeatures
from i3d_jax.extract_features.settings import ExtractConfig, video_settings


def write_atomic(dest: pathlib.Path, arrays: dict[str, Any]) -> None:
    """`np.savez` to a temporary name, then renamed: a present file is always complete."""
    tmp = dest.with_name(f".{dest.name}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, dest)


def feature_arrays(
    video: VideoFeatures,
    config: ExtractConfig,
    streams: list[str],
    weights_id: str | dict[str, str],
    wanted: dict,
    wanted_fp: str,
) -> dict[str, Any]:
    """The arrays of a finished video's file (see `i3d_jax.extract_features` for the layout)."""
    feats = {s: np.stack([np.stack(c) for c in video.features[s]]) for s in streams}
    arrays: dict[str, Any] = {f"features_{s}": f for s, f in feats.items()}
    if len(feats) == 1:
        arrays = {"features": next(iter(feats.values()))}
    else:
        arrays["features"] = np.concatenate([feats["rgb"], feats["flow"]], axis=-1)
    meta = dict(dataclasses.asdict(config), video=video.path.name, rgb_range=[-1.0, 1.0],
                video_fps=video.fps, rotation=video.rotation)  # fmt: skip
    if "flow" in streams:
        meta["flow"] = "TV-L1 pixels clipped to [-20, 20] / 20; windows on T-1 frames"
    stamps = np.concatenate(video.stamps)
    arrays.update(
        timestamps=stamps,
        times=stamps.mean(axis=-1),
        endpoint=config.endpoint,
        weights=json.dumps(weights_id) if isinstance(weights_id, dict) else weights_id,
        stream="both" if len(streams) == 2 else streams[0],
        preprocessing=json.dumps(meta),
        settings=json.dumps(video_settings(wanted, video.rotation), sort_keys=True),
        settings_fingerprint=wanted_fp,
    )
    return arrays
