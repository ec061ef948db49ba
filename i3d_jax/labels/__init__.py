"""Class-name lists shipped with the package, in the index order of the released checkpoints.

`kinetics400` and `kinetics600` come from the original I3D release (deepmind/kinetics-i3d,
Apache-2.0). Wherever a label file is asked for, one of these names may be given instead.
`LabelSet` is a list of class names with where it came from (a file, a shipped list, a training
run's `data.json`), as model cards record it.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Sequence

SHIPPED = ("kinetics400", "kinetics600")
_DIR = pathlib.Path(__file__).resolve().parent


def resolve(name_or_path: str | os.PathLike) -> pathlib.Path:
    """The file of a shipped list (`"kinetics400"`) or the given path, which must exist."""
    if str(name_or_path) in SHIPPED:
        return _DIR / f"{name_or_path}.txt"
    path = pathlib.Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"label file not found: {os.fspath(name_or_path)} (give a file with one class name "
            f"per line, or one of the shipped lists {', '.join(SHIPPED)})"
        )
    return path


def read(name_or_path: str | os.PathLike, num_classes: int | None = None) -> list[str]:
    """Class names, one per non-empty line; checks the count against `num_classes` if given."""
    path = resolve(name_or_path)
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if num_classes is not None and len(names) != num_classes:
        raise ValueError(
            f"label file {os.fspath(name_or_path)} has {len(names)} names, but the model has "
            f"{num_classes} classes"
        )
    return names


@dataclasses.dataclass(frozen=True)
class LabelSet:
    """Class names in index order, the name of their set and the file they came from."""

    name: str
    path: str
    names: tuple[str, ...]

    def card(self) -> dict:
        """The `labels` entry of a model card: name, path, num_labels, names."""
        return {
            "name": self.name,
            "path": self.path,
            "num_labels": len(self.names),
            "names": list(self.names),
        }


def load(name_or_path: str | os.PathLike, num_classes: int | None = None) -> LabelSet:
    """`read` as a `LabelSet` named after the file (`kinetics400` for the shipped list)."""
    names = read(name_or_path, num_classes)
    return LabelSet(pathlib.Path(name_or_path).stem, os.fspath(name_or_path), tuple(names))


def padded(names: Sequence[str], num_classes: int, origin: str) -> tuple[str, ...]:
    """`names` extended with `class_<i>` up to `num_classes` (a run may have more logits than its
    dataset has classes); ValueError naming `origin` when there are more names than classes."""
    if len(names) > num_classes:
        raise ValueError(f"{origin} has {len(names)} class names for {num_classes} classes")
    return tuple(names) + tuple(f"class_{i}" for i in range(len(names), num_classes))
