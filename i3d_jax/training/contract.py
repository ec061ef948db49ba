"""A run's config is its contract: what a resume may change under a checkpoint, and the history of
every change (`<workdir>/config_history.jsonl`).

A run records its config in `<workdir>/config.json`. A later run in the same workdir with a
checkpoint compares its config with the recorded one, field by field, before any data, model or
device work (`check`):

- refused: what the checkpoint was made with or what decides the steps still to come: the model
  (but `model.graph` and `model.remat`: how it is computed), the optimizer, the learning-rate
  schedule, the batch size, the seed, the task and modality, the dataset and the training clips,
  BatchNorm, the initialisation. Every refused field is named with both values (`ContractError`,
  a `UsageError`: `train.py` exits 2).
- `num_train_steps`: allowed only where the learning rate of every step does not depend on it
  (`lr.schedule` "constant", or "step", whose boundaries and warmup are absolute steps), and never
  below the checkpoint's step. A cosine schedule is shaped by `num_train_steps`: a longer run
  would change the rate of steps already taken and jump at the old end, so it is refused.
- allowed: where the data lives (`dataset.data_dir`, `dataset.folder`; `data.json` still has to
  match), evaluation (`eval.*`, `eval_every_steps`, `dataset.eval_split`), logging, checkpoint
  frequency and keep count, the mesh and input workers, gradient accumulation.
  Fields the recorded config lacks (added by a later version) are not compared.

A run that trains appends one line to `config_history.jsonl` (never rewritten): time, event
("start" or "resume"), the step it starts from, devices, processes and mesh, and the allowed
changes as `{field: [old, new]}` (the first line has the whole config). `config.json` is then
updated to the config in force, so the next resume compares with it.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

from i3d_jax.cli import UsageError
from i3d_jax.training.workdir import Workdir

ALLOWED, REFUSED, STEPS = "allowed", "refused", "steps"

# (field, or a section ending in ".": first match wins) -> (kind, what it is / why).
RULES: tuple[tuple[str, str, str], ...] = (
    ("num_train_steps", STEPS, "the end of the learning-rate schedule"),
    ("model.graph", ALLOWED, "how the network is computed, never what"),
    ("model.remat", ALLOWED, "memory only"),
    ("model.", REFUSED, "the model: the checkpoint holds its parameters"),
    ("head.", REFUSED, "the model: the checkpoint holds its parameters"),
    ("multilabel.", REFUSED, "the loss of the steps taken and to come"),
    ("optimizer.", REFUSED, "the optimizer: the checkpoint holds its state"),
    ("lr.", REFUSED, "the learning-rate schedule of the steps taken and to come"),
    ("batch_size", REFUSED, "the batch size: the saved data position counts its batches"),
    ("seed", REFUSED, "the data order of the saved data iterator"),
    ("task", REFUSED, "what is trained"),
    ("modality", REFUSED, "the model's input"),
    ("dataset.data_dir", ALLOWED, "where the dataset is (data.json must still match)"),
    ("dataset.folder", ALLOWED, "where the source files are (data.json must still match)"),
    ("dataset.eval_split", ALLOWED, "evaluation"),
    ("dataset.", REFUSED, "the dataset the saved data iterator walks"),
    ("features.csv", ALLOWED, "where the feature files are listed (data.json must match)"),
    ("features.tfds_dir", ALLOWED, "where the feature dataset is (data.json must match)"),
    ("features.", REFUSED, "the training data"),
    ("input.num_threads", ALLOWED, "input speed only"),
    ("input.num_workers", ALLOWED, "input speed only"),
    ("input.prefetch", ALLOWED, "input speed only"),
    ("input.", REFUSED, "the training clips"),
    ("bn.", REFUSED, "how BatchNorm trains"),
    ("init.", REFUSED, "how the run started (a resume starts from its checkpoint instead)"),
    ("grad_accum_steps", ALLOWED, "memory: the global batch stays batch_size"),
    ("mesh.", ALLOWED, "where the run computes (a checkpoint restores onto any mesh)"),
    ("checkpoint.", ALLOWED, "when checkpoints are saved and how many are kept"),
    ("log_every_steps", ALLOWED, "logging"),
    ("eval_every_steps", ALLOWED, "evaluation"),
    ("eval.", ALLOWED, "evaluation"),
    ("progress", ALLOWED, "the progress bar"),
)
UNKNOWN = (REFUSED, "not known to be safe to change under a checkpoint")
# lr.schedule values whose rate at a step does not depend on num_train_steps.
ABSOLUTE_SCHEDULES = ("constant", "step")


class ContractError(UsageError):
    """A resume would change what its checkpoint was made with (exit status 2)."""


def rule(field: str) -> tuple[str, str]:
    """(kind, reason) of a dotted config field."""
    for pattern, kind, why in RULES:
        if field == pattern or (pattern.endswith(".") and field.startswith(pattern)):
            return kind, why
    return UNKNOWN


def flatten(config: Any) -> dict[str, Any]:
    """`{"a.b": value}` of a ConfigDict or a nested dict, values as JSON reads them back."""
    tree = config if isinstance(config, dict) else json.loads(config.to_json_best_effort())
    tree = json.loads(json.dumps(tree, default=str))
    out: dict[str, Any] = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict) and value:
                walk(value, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = value

    walk(tree, "")
    return out


def diff(recorded: dict, config: Any) -> dict[str, tuple[Any, Any]]:
    """`{field: (recorded value, new value)}` of the fields both configs have and that differ."""
    old, new = flatten(recorded), flatten(config)
    return {k: (old[k], new[k]) for k in new if k in old and old[k] != new[k]}


@dataclasses.dataclass(frozen=True)
class Resume:
    """What the workdir says about a run before it starts: the latest checkpoint step (None: a new
    run), the recorded config, and the allowed changes the new config makes."""

    step: int | None
    recorded: dict | None
    changes: dict[str, tuple[Any, Any]]

    def finished(self, num_train_steps: int) -> bool:
        return self.step is not None and self.step >= num_train_steps


def check(wd: Workdir, config: Any) -> Resume:
    """The workdir's records against `config`; `ContractError` naming every field a resume
    cannot change (both values, and why), before any heavy work."""
    step, recorded = wd.latest_step(), wd.recorded_config()
    if step is None or recorded is None:
        return Resume(step, recorded, {})  # nothing trained under a contract yet
    changes = diff(recorded, config)
    problems = []
    for field, (old, new) in changes.items():
        kind, why = rule(field)
        if kind == REFUSED:
            problems.append(f"{field}: {old!r} -> {new!r} ({why})")
        elif kind == STEPS:
            problems += _steps_problem(recorded, config, step, old, new)
    if problems:
        raise ContractError(
            f"the run in {wd.root} has a checkpoint at step {step} made with another config; "
            f"a resume cannot change: {'; '.join(problems)}. Run with the recorded values "
            f"({wd.config}), or start a new workdir (init.method=pretrained with "
            "init.source=<this workdir> starts from its weights)"
        )
    return Resume(step, recorded, changes)


def _steps_problem(recorded: dict, config: Any, step: int, old: int, new: int) -> list[str]:
    """Why `num_train_steps` cannot go from `old` to `new` under a checkpoint at `step` ([] if
    it can)."""
    if new < step:
        return [
            f"num_train_steps: {old} -> {new} (the checkpoint is at step {step}, past the new end)"
        ]
    schedule = config.lr.schedule
    if schedule in ABSOLUTE_SCHEDULES:
        return []
    old_lr, new_lr = _rates(recorded, config, step)
    return [
        f"num_train_steps: {old} -> {new} (lr.schedule={schedule!r} is shaped by "
        f"num_train_steps: step {step} had learning rate {old_lr:.3g}, step {step + 1} would get "
        f"{new_lr:.3g} and every step would follow another curve; to train longer, start a new "
        "workdir from this one's weights (init.method=pretrained, init.source=<this workdir>) "
        "with the schedule you want, or use lr.schedule='constant' or 'step' (absolute "
        "boundaries) from the start)"
    ]


def _rates(recorded: dict, config: Any, step: int) -> tuple[float, float]:
    """The learning rate of step `step` under the recorded config and of step `step + 1` under
    the new one (optax counts from 0: step s uses the rate at s - 1)."""
    import ml_collections

    from i3d_jax.training import state

    old_fn = state.learning_rate_fn(ml_collections.ConfigDict(recorded))
    return float(old_fn(step - 1)), float(state.learning_rate_fn(config)(step))


def changes_line(changes: dict[str, tuple[Any, Any]]) -> str:
    """`a.b: 1 -> 2, c: 'x' -> 'y'`."""
    return ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items())


def mesh_record(mesh: Any, process_count: int) -> dict:
    """Devices, processes and mesh axes of a session (what `config_history.jsonl` records)."""
    return {
        "devices": int(mesh.devices.size),
        "processes": int(process_count),
        "mesh": {str(k): int(v) for k, v in dict(mesh.shape).items()},
    }


def mesh_change_line(previous: dict | None, current: dict) -> str | None:
    """One line saying how the devices or mesh differ from the last session's (None if not)."""
    if not previous or "devices" not in previous:
        return None
    keys = ("devices", "processes", "mesh")
    if all(previous.get(k) == current[k] for k in keys):
        return None

    def text(r: dict) -> str:
        axes = " x ".join(f"{k}={v}" for k, v in (r.get("mesh") or {}).items())
        return f"{r.get('devices')} devices in {r.get('processes')} process(es), mesh {axes}"

    return (
        f"resuming on {text(current)}; the last session (from step {previous.get('step')}) ran on "
        f"{text(previous)}"
    )


def record(
    wd: Workdir, config: Any, resume: Resume, start: int, session: dict, config_text: str
) -> None:
    """Appends this session to `config_history.jsonl` and writes config.json (process 0)."""
    row = {
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "event": "resume" if resume.step is not None else "start",
        "step": start,
        **session,
        "changes": {k: [old, new] for k, (old, new) in resume.changes.items()},
    }
    if resume.step is None:
        row["config"] = flatten(config)
    elif not wd.history.is_file() and resume.recorded is not None:
        row["config_before"] = flatten(resume.recorded)  # a run from before the history
    wd.append_history(row)
    if resume.step is None or resume.changes or not wd.config.is_file():
        wd.write_config(config_text)


def finished_run(workdir: Any, config: Any) -> dict | None:
    """The summary of a run that finished under this config (its checkpoint at or past
    `num_train_steps` and its results written), from the workdir's records alone (no JAX work,
    no dataset); None if there is something to do. `ContractError` as `check`."""
    wd = Workdir.at(workdir)
    if not wd.root.is_dir():
        return None
    resume = check(wd, config)
    if not resume.finished(config.num_train_steps) or not wd.results.is_file():
        return None
    return {
        "steps": resume.step,
        "start_step": resume.step,
        "final_loss": float("nan"),
        "eval": json.loads(wd.results.read_text()),
        "wall_s": 0.0,
        "state": None,
        "interrupted": False,
        "finished_before": True,
        "evaluated_now": False,
        "not_applied": dict(resume.changes),
    }
