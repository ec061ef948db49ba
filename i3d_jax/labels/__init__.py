"""Class-name lists shipped with the package, in the index order of the released checkpoints.

`kinetics400` and `kinetics600` come from the original I3D release (deepmind/kinetics-i3d,
Apache-2.0). Wherever a label file is asked for, one of these names may be given instead.
"""

from __future__ import annotations

import os
import pathlib

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
