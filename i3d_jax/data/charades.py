"""Charades-format annotations for `video_folder`: untrimmed videos with many action intervals.

A Charades CSV (``Charades_v1_train.csv``, ``Charades_v1_test.csv``) has a header with at least
``id``, ``actions`` and ``length`` (other columns, e.g. ``subject,scene,quality,...``, are
ignored): one row per video ``<id>.<ext>`` (found anywhere under the source folder), ``length``
its duration in seconds, and ``actions`` its intervals ``c092 11.90 21.20;c147 0.00 12.60``
(class, start and end in seconds; empty for a video without actions). The split is the CSV's
name: ``..._train.csv`` -> ``train``, ``..._test.csv`` -> ``test`` (also ``_val``/``_validation``).

Classes: the lines of ``Charades_v1_classes.txt`` (``c000 Holding some clothes``: the name, then
a description), looked for beside the first CSV, then in the source folder; without one, the
class names the CSVs use, sorted. Class ``k`` is the file's ``k``-th line.

What is skipped, with a warning naming the CSV row (``--strict``: `CharadesError` instead):

- a malformed row (no ``id``, a ``length`` that is not a positive number, an ``actions`` entry
  that is not ``class start end`` with numbers and ``start <= end``, an ``id`` seen before in
  the same split): the whole row (its negatives could not be trusted);
- an action of a class the classes file lacks, or an interval outside the video (ending before
  0 s or starting after ``length``): that action only.

Both are counted in the dataset's metadata (:data:`i3d_jax.data.schema.ANNOTATIONS_KEY`).
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import pathlib
import re
from collections.abc import Sequence

from i3d_jax.cli import UsageError
from i3d_jax.data.actions import first_action
from i3d_jax.data.video_scan import VideoEntry, split_name, video_index

log = logging.getLogger(__name__)

COLUMNS = ("id", "actions", "length")
CLASSES_FILE = "Charades_v1_classes.txt"
_SPLIT = re.compile(r"[_-](train|test|val|valid|validate|validation)\.csv$", re.IGNORECASE)


class CharadesError(UsageError):
    """A Charades CSV or classes file that cannot be read, or (strict) a row with a problem."""


@dataclasses.dataclass(frozen=True)
class Scan:
    """The videos of Charades CSVs, their classes, and what was skipped (`record`: the metadata
    of :data:`~i3d_jax.data.schema.ANNOTATIONS_KEY`)."""

    entries: list[VideoEntry]
    class_names: tuple[str, ...]
    record: dict


def split_of(csv_path) -> str:
    """The split a Charades CSV's name gives (``Charades_v1_train.csv`` -> ``train``)."""
    match = _SPLIT.search(pathlib.Path(csv_path).name)
    if match is None:
        raise CharadesError(
            f"charades: cannot tell the split of {str(csv_path)!r}; expected a name ending in "
            "_train.csv, _test.csv or _val.csv (like Charades_v1_train.csv)"
        )
    return split_name(match.group(1))


def classes_file(csv_paths: Sequence, root) -> pathlib.Path | None:
    """``Charades_v1_classes.txt`` beside the first CSV, else in `root`, else None."""
    for folder in [pathlib.Path(csv_paths[0]).parent, pathlib.Path(root)]:
        if (folder / CLASSES_FILE).is_file():
            return folder / CLASSES_FILE
    return None


def read_classes(path) -> tuple[list[str], dict[str, str]]:
    """(class names in file order, {name: description}) of a Charades classes file."""
    names, descriptions = [], {}
    with open(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            line = line.strip()
            if not line:
                continue
            name, _, text = line.partition(" ")
            if name in descriptions:
                raise CharadesError(f"charades: {path}:{line_no}: class {name!r} listed twice")
            names.append(name)
            descriptions[name] = text.strip()
    if not names:
        raise CharadesError(f"charades: {path} lists no classes; expected lines like 'c000 Text'")
    return names, descriptions


def parse_actions(text: str) -> list[tuple[str, float, float]]:
    """`[(class, start, end)]` of an ``actions`` field; ValueError saying what is malformed."""
    out = []
    for part in (p.strip() for p in (text or "").split(";")):
        if not part:
            continue
        fields = part.split()
        if len(fields) != 3:
            raise ValueError(f"action {part!r} is not 'class start end'")
        try:
            start, end = float(fields[1]), float(fields[2])
        except ValueError:
            raise ValueError(f"action {part!r}: start and end must be numbers (seconds)") from None
        if not start <= end:
            raise ValueError(f"action {part!r} ends before it starts")
        out.append((fields[0], start, end))
    return out


class _Problems:
    """The rows and actions skipped: warned, recorded, or raised when strict."""

    def __init__(self, strict: bool):
        self.strict, self.records, self.rows, self.actions = strict, [], 0, 0

    def add(self, csv_path, line: int, vid: str, reason: str, row: bool) -> None:
        where = f"{pathlib.Path(csv_path).name}:{line} (id {vid or '?'})"
        what = "the row" if row else "an action"
        if self.strict:
            raise CharadesError(f"charades: {where}: {reason} (strict: nothing skipped)")
        log.warning("charades: %s: skipping %s: %s", where, what, reason)
        self.records.append({"csv": str(csv_path), "line": line, "id": vid, "reason": reason})
        if row:
            self.rows += 1
        else:
            self.actions += 1


def _rows(csv_path):
    with open(csv_path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CharadesError(
                f"charades: {csv_path} lacks the column(s) {', '.join(missing)}; expected a "
                f"Charades header with {','.join(COLUMNS)} (found {reader.fieldnames})"
            )
        yield from enumerate(reader, start=2)


def scan(root, csv_paths: Sequence, strict: bool = False) -> Scan:
    """The videos of Charades CSVs (module docstring) with their action intervals; a video
    whose file is missing has ``path=None`` (the build skips and records it)."""
    if isinstance(csv_paths, str | os.PathLike):
        csv_paths = [csv_paths]
    csv_paths = [pathlib.Path(p) for p in csv_paths]
    for p in csv_paths:
        if not p.is_file():
            raise CharadesError(f"charades: CSV file {str(p)!r} not found")
    splits = [split_of(p) for p in csv_paths]
    found = classes_file(csv_paths, root)
    names, descriptions = read_classes(found) if found is not None else ([], {})
    parsed, problems = [], _Problems(strict)
    for csv_path, split in zip(csv_paths, splits, strict=True):
        seen: set[str] = set()
        for line, row in _rows(csv_path):
            vid = (row.get("id") or "").strip()
            reason = _row_problem(row, vid, seen)
            if reason is None:
                try:
                    acts = parse_actions(row.get("actions") or "")
                except ValueError as e:
                    reason = str(e)
            if reason is not None:
                problems.add(csv_path, line, vid, reason, row=True)
                continue
            seen.add(vid)
            parsed.append((csv_path, line, split, vid, float(row["length"]), acts))
    if found is None:
        names = sorted({a[0] for *_, acts in parsed for a in acts})
    index_of = {n: i for i, n in enumerate(names)}
    videos, _ = video_index(root)
    entries, kept_actions = [], 0
    for csv_path, line, split, vid, length, acts in parsed:
        kept = []
        for name, start, end in acts:
            if name not in index_of:
                problems.add(csv_path, line, vid, f"unknown class {name!r} (not in {found})",
                             row=False)  # fmt: skip
            elif end < 0 or start > length:
                problems.add(csv_path, line, vid, f"interval {name} {start:.2f} {end:.2f} is "
                             f"outside the video (0 to {length:.2f} s)", row=False)  # fmt: skip
            else:
                kept.append((index_of[name], start, end))
        kept_actions += len(kept)
        path = videos.get(vid)
        reason = "" if path else f"missing file: no {vid}.* under {root} ({csv_path.name}:{line})"
        entries.append(VideoEntry(split, first_action(kept), vid, path, missing_reason=reason,
                                  actions=tuple(kept)))  # fmt: skip
    if not names:
        raise CharadesError(
            f"charades: no classes: no {CLASSES_FILE} beside {csv_paths[0]} or in {root}, and "
            "no actions in the CSVs"
        )
    record = {
        "format": "charades",
        "csv": [str(p) for p in csv_paths],
        "classes_file": str(found) if found is not None else None,
        "rows": len(parsed) + problems.rows,
        "videos": len(entries),
        "actions": kept_actions,
        "bad_rows": problems.rows,
        "bad_actions": problems.actions,
        "problems": problems.records,
        "class_descriptions": descriptions,
    }
    return Scan(entries, tuple(names), record)


def _row_problem(row: dict, vid: str, seen: set[str]) -> str | None:
    if not vid:
        return "no id"
    if vid in seen:
        return f"id {vid!r} appears twice in this CSV"
    try:
        length = float(row.get("length") or "")
    except ValueError:
        return f"length {row.get('length')!r} is not a number (seconds)"
    if not length > 0:
        return f"length {length} is not positive"
    return None
