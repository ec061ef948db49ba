"""The command-line conventions: every documented command answers `--help`, one flag spelling
(kebab-case accepted), exit 2 for a bad argument, old module paths still import (with a warning)."""

import importlib
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from i3d_jax import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def documented_commands() -> list[tuple[str, ...]]:
    """Each `python -m i3d_jax.X [subcommand]` and `python train.py`/`eval.py` the docs show."""
    found = set()
    for doc in DOCS:
        text = doc.read_text()
        for m in re.finditer(r"python3? -m (i3d_jax(?:\.\w+)+)(?: (run|report)\b)?", text):
            found.add(("-m", m.group(1), *([m.group(2)] if m.group(2) else [])))
        for m in re.finditer(r"python3? (train|eval)\.py", text):
            found.add((f"{m.group(1)}.py",))
    return sorted(found)


def test_the_docs_show_the_tools():
    commands = {" ".join(c) for c in documented_commands()}
    for name in ("predict", "extract_features", "fvd", "flow", "convert", "export", "data.build",
                 "schedules", "two_stream", "ablate run", "ablate report"):  # fmt: skip
        assert f"-m i3d_jax.{name}" in commands, name
    assert {"train.py", "eval.py"} <= commands


@pytest.mark.parametrize("command", documented_commands(), ids=" ".join)
def test_every_documented_command_answers_help(command):
    proc = subprocess.run(
        [sys.executable, *command, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--" in proc.stdout and len(proc.stdout) > 200, proc.stdout[:500]  # flags listed
    assert "Traceback" not in proc.stderr


def parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(prog="tool")
    p.add_argument("--flow_weights", default="none", help="flow stream weights")
    p.add_argument("--short_side", type=int, default=256, help="resize the smaller side to this")
    return p


def test_both_spellings_of_a_flag_parse_to_the_same_value():
    snake = parser().parse_args(["--flow_weights", "w", "--short_side=128"])
    kebab = parser().parse_args(["--flow-weights", "w", "--short-side=128"])
    assert vars(snake) == vars(kebab) == {"flow_weights": "w", "short_side": 128}


def test_help_shows_one_spelling_and_the_defaults():
    text = parser().format_help()
    assert "--flow_weights" in text and "--flow-weights" not in text
    assert "default: 256" in text


def test_a_bad_argument_exits_2_with_an_error_line(capsys):
    with pytest.raises(SystemExit) as e:
        parser().parse_args(["--short_side", "big"])
    assert e.value.code == cli.EXIT_USAGE == 2
    err = capsys.readouterr().err
    assert "error: argument --short_side: invalid int value: 'big'" in err


def test_run_maps_errors_to_exit_codes(capsys):
    def usage():
        with cli.before_work():
            raise FileNotFoundError("no such weights: w.npz")

    def during():
        raise RuntimeError("video 3 of 7 does not decode")

    assert cli.run(usage) == 2
    assert cli.run(during) == 1
    assert cli.run(lambda: None) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ["error: no such weights: w.npz", "error: video 3 of 7 does not decode"]


def test_a_tool_exits_2_on_a_missing_input_before_any_work():
    proc = subprocess.run(
        [sys.executable, "-m", "i3d_jax.flow", "no_such_video.mp4", "--out", "flow.npz"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "no_such_video.mp4" in proc.stderr and "Traceback" not in proc.stderr


MOVED = {
    "i3d_jax.fvd_cli": "i3d_jax.fvd.cli",
    "i3d_jax.predict_head": "i3d_jax.predict.head",
    "i3d_jax.feature_presets": "i3d_jax.extract_features.presets",
    "i3d_jax.training.features": "i3d_jax.training.tasks.features",
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_module_path_imports_the_new_module_with_a_warning(old):
    for name in [n for n in sys.modules if n == old]:
        del sys.modules[name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])
    assert any(
        issubclass(w.category, DeprecationWarning) and MOVED[old] in str(w.message) for w in caught
    ), [str(w.message) for w in caught]


def test_the_package_declares_the_requirements_it_runs_on():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    pinned = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert project["dependencies"] == pinned
    assert {"torch", "tf", "test"} <= set(project["optional-dependencies"])
