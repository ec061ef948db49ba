"""The workdir layout and what can be read from it without JAX, Orbax or the dataset: the recorded
config, the config history, the latest finished checkpoint step, the results.

    <workdir>/config.json            the run's config (its contract, see `training.contract`)
    <workdir>/config_history.jsonl   one line per start or resume: time, step, devices, changes
    <workdir>/data.json              what the run's data was (class names, feature width, ...)
    <workdir>/checkpoints/<step>/    `state` (+ `data`: every host's Grain iterator state); last k
    <workdir>/best/<step>/           `state` with the best validation metric (one kept)
    <workdir>/metrics.jsonl, tb/, metrics.png
    <workdir>/eval/results.json      (+ the task's reports beside it)
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib


@dataclasses.dataclass(frozen=True)
class Workdir:
    """The paths of one run (absolute: Orbax needs absolute paths)."""

    root: pathlib.Path

    @classmethod
    def at(cls, path: str | os.PathLike) -> Workdir:
        return cls(pathlib.Path(path).absolute())

    checkpoints = property(lambda self: self.root / "checkpoints")
    best = property(lambda self: self.root / "best")
    config = property(lambda self: self.root / "config.json")
    history = property(lambda self: self.root / "config_history.jsonl")
    data_card = property(lambda self: self.root / "data.json")
    metrics = property(lambda self: self.root / "metrics.jsonl")
    tensorboard = property(lambda self: self.root / "tb")
    plot = property(lambda self: self.root / "metrics.png")
    eval_dir = property(lambda self: self.root / "eval")
    results = property(lambda self: self.root / "eval" / "results.json")

    def check_writable(self) -> None:
        """PermissionError naming the workdir if it cannot be created or written."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write_probe_{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            raise PermissionError(
                f"workdir {str(self.root)!r} is not writable: {e.strerror or e}"
            ) from e

    def latest_step(self) -> int | None:
        """The newest finished checkpoint's step, read from the directory names (Orbax writes a
        checkpoint under a temporary name and renames it to `<step>` when it is complete)."""
        if not self.checkpoints.is_dir():
            return None
        steps = [int(p.name) for p in self.checkpoints.iterdir() if p.name.isdigit() and p.is_dir()]
        return max(steps, default=None)

    def recorded_config(self) -> dict | None:
        """config.json as a dict (None if the run has none)."""
        if not self.config.is_file():
            return None
        try:
            return json.loads(self.config.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{self.config} is not valid JSON ({e}); move it aside") from e

    def history_rows(self) -> list[dict]:
        """config_history.jsonl, oldest first ([] if none)."""
        if not self.history.is_file():
            return []
        lines = self.history.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def append_history(self, row: dict) -> None:
        """Appends one line to config_history.jsonl (never rewrites it)."""
        with self.history.open("a") as f:
            f.write(json.dumps(row, default=str) + "\n")

    def write_config(self, text: str) -> None:
        """Writes config.json atomically (a reader never sees half of it)."""
        tmp = self.config.with_name(f".config.json.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config)
