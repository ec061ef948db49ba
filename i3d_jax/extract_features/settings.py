"""What makes two feature files the same: `ExtractConfig` (how features are extracted), the
settings recorded in each file and their fingerprint, and the weights' identity."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from i3d_jax import clips, schedules
from i3d_jax.data.feature_files import settings_diff
from i3d_jax.extract_features import presets
from i3d_jax.flow import SOLVER_VERSION

CROPS = clips.CROP_SETS
STREAMS = ("rgb", "flow", "both")
ON_MISMATCH = ("recompute", "refuse")
CHANNELS = {"rgb": 3, "flow": 2}
# Hashed into every file's settings: byte-identical across releases, or old folders recompute.
# With the solver's version, so flow features of an older solver read as stale (files made
# before version 2, the border fix of 2026-12-04, name no version).
DEFAULT_FLOW_ID = (
    "i3d_jax.flow.compute_flow (TV-L1, JAX backend, default parameters, "
    f"solver version {SOLVER_VERSION})"
)
SETTINGS_VERSION = 2
#: Facts of the one video recorded in its file's `settings` but not hashed into the fingerprint
#: (the files of one dataset differ in them): `rotation`, the degrees counter-clockwise the decoder
#: turned the frames upright by (`i3d_jax.preprocess.video_info`). A file without it was made by
#: a decoder that ignored display rotations: stale for a rotated video (`extract_features.plan`).
PER_VIDEO = ("rotation",)

__all__ = [
    "CHANNELS",
    "CROPS",
    "DEFAULT_FLOW_ID",
    "ON_MISMATCH",
    "SETTINGS_VERSION",
    "STREAMS",
    "ExtractConfig",
    "PER_VIDEO",
    "fingerprint",
    "settings",
    "settings_diff",
    "stored_settings",
    "video_settings",
    "weights_identity",
]


@dataclasses.dataclass(frozen=True)
class ExtractConfig:
    """How features are extracted (see `i3d_jax.extract_features`)."""

    endpoint: str = "Mixed_5c"
    window: int = 64
    stride: int = 16
    fps: float | None = 25.0  # None: the video's native frames (no resampling)
    short_side: int = 256
    crop_size: int = 224
    crops: str = "center"
    pooled: bool = True
    batch_size: int = 4  # 4 x 64 frames at 224: about 2.5 GiB on CPU, like predict
    chunk_frames: int = 32  # frames decoded at a time (memory, not results)
    preset: str = ""  # the i3d_jax.extract_features.presets name these came from (recorded)

    def __post_init__(self):
        if self.crops not in CROPS:
            raise ValueError(f"unknown crops {self.crops!r}; expected one of {sorted(CROPS)}")
        for name in ("window", "stride", "batch_size", "crop_size", "chunk_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"fps must be > 0 (or None: native), got {self.fps}")
        if self.preset and self.preset not in presets.PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; expected one of {sorted(presets.PRESETS)}")  # fmt: skip
        if self.short_side < self.crop_size:
            raise ValueError(
                f"short_side {self.short_side} is smaller than crop_size {self.crop_size}: "
                "every frame would be too small to crop"
            )
        names = (*schedules.ENDPOINTS, "Logits_per_time")
        if self.endpoint not in names:
            raise ValueError(f"unknown endpoint {self.endpoint!r}; expected one of {names}")


def settings(
    config: ExtractConfig,
    streams: Iterable[str],
    weights_id: str | dict[str, str],
    flow_id: str = DEFAULT_FLOW_ID,
) -> dict[str, Any]:
    """Everything that changes the features (not batching or chunking), as a JSON-able dict."""
    streams = sorted(streams)
    out = dataclasses.asdict(config)
    del out["batch_size"], out["chunk_frames"]
    out.update(
        version=SETTINGS_VERSION,
        stream="both" if len(streams) == 2 else streams[0],
        weights=weights_id,
        flow=flow_id if "flow" in streams else None,
    )
    return out


def video_settings(settings_: dict[str, Any], rotation: int) -> dict[str, Any]:
    """The settings recorded in one video's file: `settings_` and the video's `rotation`."""
    return {**settings_, "rotation": int(rotation)}


def fingerprint(settings_: dict[str, Any]) -> str:
    """16 hex digits of the SHA-256 of the settings' canonical JSON (without the preset name and
    the `PER_VIDEO` facts)."""
    settings_ = {k: v for k, v in settings_.items() if k != "preset" and k not in PER_VIDEO}
    blob = json.dumps(settings_, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def stored_settings(path: pathlib.Path) -> tuple[str, dict[str, Any]]:
    """(fingerprint, settings) of an existing output; ("", {}) for one without (older files)."""
    try:
        with np.load(path) as z:
            if "settings_fingerprint" not in z.files:
                return "", {}
            return str(z["settings_fingerprint"]), json.loads(str(z["settings"]))
    except (OSError, ValueError, KeyError):
        return "", {}


def weights_identity(source: str | os.PathLike) -> str:
    """The weights' name, with size and modification time when it is a local file/directory
    (a training workdir: of the checkpoint step directory it resolves to, so a new best
    checkpoint is other weights)."""
    from i3d_jax.weights import workdir

    path = pathlib.Path(source)
    if not path.exists():
        return str(source)
    if path.is_dir() and workdir.is_source(path):
        path = workdir.locate(path).directory
        meta = path / "_CHECKPOINT_METADATA"  # Orbax's, written with the step
        stat = (meta if meta.is_file() else path).stat()
    else:
        stat = (path / "model_card.json" if path.is_dir() else path).stat()
    return f"{path.resolve()} ({stat.st_size} bytes, mtime_ns {stat.st_mtime_ns})"
