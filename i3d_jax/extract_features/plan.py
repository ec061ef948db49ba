"""Which videos an extraction computes: the inputs listed, their output files, and a rerun's
decision per video (skip a file made with the same settings, recompute or refuse another)."""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable, Iterable

from i3d_jax import clips, preprocess
from i3d_jax.extract_features.settings import (
    PER_VIDEO,
    ExtractConfig,
    settings_diff,
    stored_settings,
    video_settings,
)


@dataclasses.dataclass
class ExtractResult:
    """File names (and reasons) by what happened to each video."""

    written: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    recomputed: list[str] = dataclasses.field(default_factory=list)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def output_name(path: pathlib.Path) -> str:
    return path.stem + ".npz"


def list_videos(path: str | os.PathLike) -> list[pathlib.Path]:
    """A video file, or the video files (by suffix) directly inside a directory, sorted; two
    that would write the same output file are refused, naming both."""
    files = preprocess.list_videos(path)
    names: dict[str, pathlib.Path] = {}
    for f in files:
        other = names.setdefault(output_name(f), f)
        if other != f:
            raise ValueError(f"{other.name} and {f.name} would both write {output_name(f)}")
    return files


def plan(
    videos: Iterable[pathlib.Path],
    out_dir: pathlib.Path,
    wanted: dict,
    wanted_fp: str,
    on_mismatch: str,
    log: Callable[[str], None],
) -> tuple[list[pathlib.Path], ExtractResult]:
    """(videos to compute, the result so far: skipped, to be recomputed, refused)."""
    result, todo = ExtractResult(), []
    for path in videos:
        dest = out_dir / output_name(path)
        if dest.is_file():
            fp, old = stored_settings(dest)
            diff = rerun_reason(path, fp, old, wanted, wanted_fp)
            if diff is None:
                result.skipped.append(path.name)
                continue
            why = f"{dest} was made with other settings: {diff}"
            if on_mismatch == "refuse":
                result.failed.append((path.name, why + " (--on_mismatch recompute overwrites it)"))
                log(f"refusing {path}: {why}")
                continue
            log(f"recomputing {path}: {why}")
            result.recomputed.append(path.name)
        todo.append(path)
    return todo, result


def rerun_reason(
    path: pathlib.Path, fp: str, old: dict, wanted: dict, wanted_fp: str
) -> str | None:
    """What differs between an existing output (`fp`, `old` settings) of the video `path` and the
    wanted settings, or None when it is current. Same fingerprint: current when it records the
    video's rotation (made by a decoder that turns frames upright), or, without that record (an
    older file), when the video has no display rotation (its frames were already upright)."""
    if fp != wanted_fp:
        return settings_diff({k: v for k, v in old.items() if k not in PER_VIDEO}, wanted)
    if "rotation" in old:
        return None
    try:
        rotation = preprocess.video_info(path)["rotation"]
    except (ValueError, FileNotFoundError):
        return None  # unreadable now: nothing to compare (as before rotations were recorded)
    if rotation == 0:
        return None
    return (
        f"{settings_diff(old, video_settings(wanted, rotation))} (the video is stored rotated; "
        "the file's frames were not turned upright)"
    )


def estimate_windows(path: pathlib.Path, config: ExtractConfig, flow: bool) -> int:
    """Windows a video will give, from its container's duration (0 when it states none)."""
    try:
        info = preprocess.video_info(path)
    except (ValueError, FileNotFoundError):
        return 0
    frames = int(round(info["duration"] * (config.fps or info["fps"]))) - int(flow)
    return len(clips.window_starts(frames, config.window, config.stride)) if frames > 0 else 0
