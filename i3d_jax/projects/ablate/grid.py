"""The ablation grid: settings (every combination of the varied config fields) x seeds, their
run directories, the manifest `<workdir>/ablate.json`, the local runner and the launch lines.

The command line is `python -m i3d_jax.ablate` (`cli`); the report is `report`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import pathlib
import shlex
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections
from tqdm import tqdm

from i3d_jax.training import checkpoints
from i3d_jax.training.config import (
    load_config_file,
    parse_assignment,
    validate_config,
    with_overrides,
)

MANIFEST = "ablate.json"


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of the grid: its setting name, overrides (field -> value), seed and directory."""

    setting: str
    overrides: tuple[tuple[str, Any], ...]
    seed: int
    workdir: pathlib.Path

    @property
    def results(self) -> pathlib.Path:
        return checkpoints.Workdir.at(self.workdir).results  # what the loop writes last

    @property
    def finished(self) -> bool:
        return self.results.exists()


@dataclasses.dataclass(frozen=True)
class Grid:
    """The grid: base config file, varied axes (field -> values), fixed overrides, seed count."""

    config: str
    axes: tuple[tuple[str, tuple[Any, ...]], ...]
    fixed: tuple[tuple[str, Any], ...] = ()
    seeds: int = 1

    def settings(self) -> list[tuple[str, tuple[tuple[str, Any], ...]]]:
        """(name, overrides) of every combination, in axis order."""
        keys = [k for k, _ in self.axes]
        out = []
        for values in itertools.product(*(v for _, v in self.axes)):
            overrides = tuple(zip(keys, values, strict=True))
            out.append((setting_name(overrides), overrides))
        return out

    def runs(self, workdir: str | pathlib.Path) -> list[Run]:
        root = pathlib.Path(workdir)
        return [
            Run(name, ov, k, root / name / f"seed_{k}")
            for name, ov in self.settings()
            for k in range(self.seeds)
        ]

    def to_json(self) -> dict:
        return {
            "config": self.config,
            "axes": [[k, list(v)] for k, v in self.axes],
            "fixed": [[k, v] for k, v in self.fixed],
            "seeds": self.seeds,
        }

    @classmethod
    def from_json(cls, d: dict) -> Grid:
        return cls(
            d["config"],
            tuple((k, tuple(v)) for k, v in d["axes"]),
            tuple((k, _tuple(v)) for k, v in d.get("fixed", [])),
            int(d["seeds"]),
        )


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def setting_name(overrides: Sequence[tuple[str, Any]]) -> str:
    """`model.schedule=paper, init.inflate_method=mean` -> `schedule-paper__inflate_method-mean`."""
    return "__".join(f"{k.rsplit('.', 1)[-1]}-{v}" for k, v in overrides) or "base"


def run_config(grid: Grid, run: Run, base: ml_collections.ConfigDict | None = None):
    """The full config of one run: base file + fixed overrides + the setting's + its seed."""
    base = base if base is not None else load_config_file(grid.config)
    return with_overrides(base, (*grid.fixed, *run.overrides, ("seed", run.seed)))


def make_grid(config: str, axes: Sequence[str], fixed: Sequence[str] = (), seeds: int = 1) -> Grid:
    """A grid from command-line strings (`field=v1,v2`), validated against the config file."""
    if seeds < 1:
        raise ValueError(f"--seeds must be a positive integer, got {seeds}")
    base = load_config_file(config)
    grid = Grid(
        config,
        tuple(parse_assignment(a, base, True) for a in axes),
        tuple(parse_assignment(f, base, False) for f in fixed),
        seeds,
    )
    for run in grid.runs("."):  # every setting validated before any work
        validate_config(run_config(grid, run, base))
    return grid


def write_manifest(grid: Grid, workdir: str | pathlib.Path) -> None:
    """`<workdir>/ablate.json`; a different grid already there is an error (nothing is mixed)."""
    path = pathlib.Path(workdir) / MANIFEST
    if path.exists():
        old = json.loads(path.read_text())
        if old != grid.to_json():
            raise ValueError(
                f"{path} holds a different grid ({json.dumps(old)}); use another --workdir"
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(grid.to_json(), indent=2) + "\n")


def read_manifest(workdir: str | pathlib.Path) -> Grid:
    path = pathlib.Path(workdir) / MANIFEST
    if not path.exists():
        raise ValueError(
            f"{path} not found: is {str(workdir)!r} an ablation workdir (made by `run`)?"
        )
    return Grid.from_json(json.loads(path.read_text()))


def _train(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
    from i3d_jax.training import loop

    loop.train_and_evaluate(config, workdir)


def run_grid(
    grid: Grid,
    workdir: str | pathlib.Path,
    run_fn: Callable[[ml_collections.ConfigDict, pathlib.Path], Any] | None = None,
    progress: bool = True,
) -> dict[str, list[str]]:
    """Trains every unfinished run one after another; returns `{"ran": [...], "skipped": [...]}`
    (run directories). `run_fn(config, run_workdir)` defaults to `train_and_evaluate`."""
    run_fn = run_fn or _train
    write_manifest(grid, workdir)
    base = load_config_file(grid.config)
    done: dict[str, list[str]] = {"ran": [], "skipped": []}
    runs = grid.runs(workdir)
    for run in tqdm(runs, desc="ablation runs", disable=not progress):
        if run.finished:
            done["skipped"].append(str(run.workdir))
            continue
        run_fn(run_config(grid, run, base), run.workdir)
        done["ran"].append(str(run.workdir))
    return done


def _cli_value(v: Any) -> str:
    return "(" + ",".join(map(str, v)) + ")" if isinstance(v, tuple) else str(v)


def launch_lines(grid: Grid, workdir: str | pathlib.Path, prefix: str = "") -> list[str]:
    """One `train.py` command line per unfinished run (each is self-contained)."""
    lines = []
    for run in grid.runs(workdir):
        if run.finished:
            continue
        words = [*shlex.split(prefix), "python", "train.py", "--config", grid.config]
        words += ["--workdir", str(run.workdir)]
        for field, value in (*grid.fixed, *run.overrides, ("seed", run.seed)):
            words.append(f"--config.{field}={_cli_value(value)}")
        lines.append(shlex.join(words))
    return lines
