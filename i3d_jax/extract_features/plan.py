"""Which videos an extraction computes: the inputs listed, their output files, and a rerun's
decision per video (skip a file made from the same video with the same settings, recompute or
refuse another).

Each file records its source (`source_identity`: resolved path, size, modification time and a
fingerprint of the video stream). A video writes `<stem>.npz`, or, when that file belongs to
another video (`cricket.mp4` beside `cricket.webm`, or a same-named video of another folder),
`<name>.npz` and then `<name>.<path hash>.npz`: never a silent skip of another video's file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
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
    outputs: dict[str, str] = dataclasses.field(default_factory=dict)  # video path -> file name
    sources: dict[str, dict] = dataclasses.field(default_factory=dict)  # video path -> identity


def output_name(path: pathlib.Path) -> str:
    return path.stem + ".npz"


def list_videos(path: str | os.PathLike) -> list[pathlib.Path]:
    """A video file, or the video files (by suffix) directly inside a directory, sorted."""
    return preprocess.list_videos(path)


def source_identity(path: pathlib.Path) -> dict:
    """Which video this is: resolved path, size, modification time, stream fingerprint."""
    stat = path.stat()
    return {"path": str(path.resolve()), "name": path.name, "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns, "stream": preprocess.stream_fingerprint(path)}  # fmt: skip


def stored_source(dest: pathlib.Path) -> tuple[dict | None, str]:
    """(the source identity a file records, or None for an older file; its video's name)."""
    import numpy as np

    try:
        with np.load(dest) as z:
            source = json.loads(str(z["source"])) if "source" in z.files else None
            meta = json.loads(str(z["preprocessing"])) if "preprocessing" in z.files else {}
    except (OSError, ValueError, KeyError):
        return None, ""
    return source, str(meta.get("video", ""))


def made_from(dest: pathlib.Path, source: dict) -> bool:
    """Whether the file `dest` belongs to this video: the same path, or the same name and content
    (a moved folder); an older file without a source record, when its video had this name."""
    old, old_name = stored_source(dest)
    if old is None:
        return old_name == source["name"]
    same_content = all(old.get(k) == source[k] for k in ("name", "size", "stream"))
    return old.get("path") == source["path"] or same_content


def source_change(dest: pathlib.Path, source: dict) -> str | None:
    """How the video differs from the one that made `dest` (None: the same, or not recorded)."""
    old, _ = stored_source(dest)
    if old is None:
        return None
    keys = (
        ("size", "stream") if old.get("path") != source["path"] else ("size", "mtime_ns", "stream")
    )
    changed = [f"{k} {old.get(k)} -> {source[k]}" for k in keys if old.get(k) != source[k]]
    return "the video changed since (" + ", ".join(changed) + ")" if changed else None


def output_file(
    path: pathlib.Path, source: dict, out_dir: pathlib.Path, taken: set[str]
) -> pathlib.Path:
    """The video's file: the first of `<stem>.npz`, `<name>.npz`, `<name>.<hash>.npz` that is
    neither taken in this run nor another video's."""
    digest = hashlib.sha256(source["path"].encode()).hexdigest()[:8]
    names = [output_name(path), f"{path.name}.npz", f"{path.name}.{digest}.npz"]
    for name in names:
        dest = out_dir / name
        if name not in taken and (not dest.is_file() or made_from(dest, source)):
            return dest
    return out_dir / names[-1]


def plan(
    videos: Iterable[pathlib.Path],
    out_dir: pathlib.Path,
    wanted: dict,
    wanted_fp: str,
    on_mismatch: str,
    log: Callable[[str], None],
) -> tuple[list[pathlib.Path], ExtractResult]:
    """(videos to compute, the result so far: output files, skipped, to be recomputed, refused)."""
    result, todo, taken = ExtractResult(), [], set()
    for path in videos:
        try:
            source = source_identity(path)
        except OSError as e:
            result.failed.append((path.name, f"cannot read {path}: {e}"))
            log(f"skipping {path}: {e}")
            continue
        dest = output_file(path, source, out_dir, taken)
        taken.add(dest.name)
        result.outputs[str(path)], result.sources[str(path)] = dest.name, source
        if dest.is_file():
            fp, old = stored_settings(dest)
            changed = source_change(dest, source)
            diff = changed or rerun_reason(path, fp, old, wanted, wanted_fp)
            if diff is None:
                result.skipped.append(path.name)
                continue
            why = (
                f"{dest}: {changed}" if changed else f"{dest} was made with other settings: {diff}"
            )
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
