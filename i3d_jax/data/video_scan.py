"""The videos of a `video_folder` source: class folders or Kinetics-style CSV files (see
:mod:`i3d_jax.data.video_folder` for the layouts)."""

from __future__ import annotations

import csv
import dataclasses
import os
import pathlib

from i3d_jax.preprocess import VIDEO_SUFFIXES as VIDEO_EXTENSIONS

CSV_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")
_SPLIT_ALIASES = {"val": "validation", "valid": "validation", "validate": "validation"}


@dataclasses.dataclass(frozen=True)
class VideoEntry:
    """One video to store: where it is, its class name, split, id and optional time range; a
    multi-label video (Charades CSV) also its action intervals `(class index, start s, end s)`
    and, as `label`, the class index of its earliest action (-1: none)."""

    split: str
    label: str | int
    video_id: str
    path: str | None  # None: the file was not found
    start: float | None = None
    end: float | None = None
    missing_reason: str = ""
    folder: str = ""  # an unreadable folder (path None): named in the skip record
    actions: tuple[tuple[int, float, float], ...] | None = None  # None: single-label


def split_name(name: str) -> str:
    """Folder/CSV split name -> TFDS split name (``val``/``validate`` -> ``validation``)."""
    name = name.strip()
    return _SPLIT_ALIASES.get(name.lower(), name)


def _listing(folder: pathlib.Path) -> list[pathlib.Path] | OSError:
    try:
        return sorted(folder.iterdir())
    except OSError as e:
        return e


def scan_folders(root) -> list[VideoEntry]:
    """Entries of a ``root/<split>/<class>/<video>`` tree, sorted by split, class and file.

    An unreadable split or class folder becomes one entry with ``path=None`` that names it (the
    build skips and records it); the rest is read."""
    root = pathlib.Path(root)
    entries = []
    for split_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        split = split_name(split_dir.name)
        listing = _listing(split_dir)
        if isinstance(listing, OSError):
            entries.append(_unreadable(split, "", split_dir, listing))
            continue
        loose = [p.name for p in listing if p.suffix.lower() in VIDEO_EXTENSIONS]
        if loose:
            raise ValueError(
                f"video_folder: {split_dir} holds video files ({loose[0]}, ...) directly; expected "
                "the layout <root>/<split>/<class>/<video>"
            )
        for class_dir in (p for p in listing if p.is_dir()):
            videos = _listing(class_dir)
            if isinstance(videos, OSError):
                entries.append(_unreadable(split, class_dir.name, class_dir, videos))
                continue
            for video in videos:
                if video.is_file() and video.suffix.lower() in VIDEO_EXTENSIONS:
                    entries.append(VideoEntry(split, class_dir.name, video.stem, str(video)))
    if not any(e.path for e in entries):
        raise ValueError(
            f"video_folder: no video files found under {root}; expected <root>/<split>/<class>/"
            f"<video> with one of the extensions {', '.join(VIDEO_EXTENSIONS)}, or *.csv files "
            f"with columns {','.join(CSV_COLUMNS)}"
        )
    return entries


def _unreadable(split: str, label: str, folder: pathlib.Path, error: OSError) -> VideoEntry:
    reason = f"unreadable folder {folder}: {error.strerror or error}"
    return VideoEntry(split, label, f"unreadable:{folder.name}", None, None, None, reason,
                      str(folder))  # fmt: skip


def video_index(root) -> tuple[dict[str, str], list[str]]:
    """({file stem: path} of every video file anywhere under `root` (the first of a stem, in
    walk order), the folders that could not be read)."""
    index: dict[str, str] = {}
    unreadable: list[str] = []
    for dirpath, _, files in os.walk(root, onerror=lambda e: unreadable.append(e.filename)):
        for f in sorted(files):
            stem, ext = os.path.splitext(f)
            if ext.lower() in VIDEO_EXTENSIONS:
                index.setdefault(stem, os.path.join(dirpath, f))
    return index, unreadable


def scan_csv(root, csv_paths=None) -> list[VideoEntry]:
    """Entries of Kinetics-style CSV files (module docstring); missing videos have ``path=None``."""
    root = pathlib.Path(root)
    if csv_paths is None:
        csv_paths = sorted(root.glob("*.csv"))
    elif isinstance(csv_paths, str | os.PathLike):
        csv_paths = [csv_paths]
    index, unreadable = video_index(root)
    entries = []
    for csv_path in csv_paths:
        with open(csv_path, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(
                    f"video_folder: {csv_path} lacks the column(s) {', '.join(missing)}; expected "
                    f"a header with {','.join(CSV_COLUMNS)} (found {reader.fieldnames})"
                )
            for line, row in enumerate(reader, start=2):
                label = (row["label"] or "").strip()
                if not label:
                    continue  # unlabelled rows (e.g. Kinetics' test set) cannot be trained on
                try:
                    t0, t1 = float(row["time_start"]), float(row["time_end"])
                except ValueError as e:
                    raise ValueError(
                        f"video_folder: {csv_path}:{line}: time_start/time_end must be numbers "
                        f"(seconds), got {row['time_start']!r}, {row['time_end']!r}"
                    ) from e
                yid = row["youtube_id"].strip()
                clip = f"{yid}_{int(t0):06d}_{int(t1):06d}"
                split = split_name(row["split"])
                if clip in index:
                    entries.append(VideoEntry(split, label, clip, index[clip]))
                elif yid in index:
                    entries.append(VideoEntry(split, label, clip, index[yid], t0, t1))
                else:
                    reason = f"missing file: no {clip}.* or {yid}.* under {root} (row {line})"
                    if unreadable:
                        reason += f"; unreadable folders there: {', '.join(unreadable)}"
                    entries.append(VideoEntry(split, label, clip, None, t0, t1, reason))
    if not entries:
        raise ValueError(f"video_folder: no labelled rows in {[str(p) for p in csv_paths]}")
    return entries


def scan(root, csv_paths=None) -> list[VideoEntry]:
    """`scan_csv` if `csv_paths` is given or ``root`` has ``*.csv`` files, else `scan_folders`."""
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"video_folder: source folder not found: {str(root)!r}")
    if csv_paths is not None or any(root.glob("*.csv")):
        return scan_csv(root, csv_paths)
    return scan_folders(root)
