"""The training loop: `train_and_evaluate(config, workdir)`, the unit `train.py` calls.

`setup` builds the mesh, model, optimizer, sharded state and jitted step; the loop feeds host
batches, logs, checkpoints (last k with the data-iterator state, best by validation), evaluates,
stops cleanly on SIGTERM or a non-finite loss, and resumes from the workdir. What is trained is a
`Task` (default: the one `config.task` names in `i3d_jax.training.task.TASKS`: "video", I3D on
clips, or "features", a temporal head over window features); see docs/architecture.md.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from typing import Any

import jax
import ml_collections
from jax.sharding import Mesh

from i3d_jax import graph, plots, sharding
from i3d_jax.training import checkpoints, contract, evaluation, run_utils, steps
from i3d_jax.training import state as state_lib
from i3d_jax.training.config import TrainingError, check_devices, validate_config
from i3d_jax.training.summary import summary_lines  # noqa: F401 (re-exported)
from i3d_jax.training.task import Task, task_for


@dataclasses.dataclass
class Setup:
    """Everything a run builds before its first step (also used by tests)."""

    config: ml_collections.ConfigDict
    task: Task
    data: Any
    mesh: Mesh
    model: Any  # built for training (`bn_axis_name` when BatchNorm statistics are per group)
    eval_model: Any
    tx: Any
    lr_fn: Any
    state: Any
    shardings: Any
    abstract: Any
    step_fn: Any


def setup(
    config: ml_collections.ConfigDict,
    mesh: Mesh | None = None,
    task: Task | None = None,
    data: Any = None,
    create: bool = True,
) -> Setup:
    """Validates the config, loads the data (unless given), builds the mesh, model, optimizer,
    sharded state and jitted step. `create=False` (a resume: the state comes from a checkpoint)
    builds only the state's shapes and shardings (`Setup.state` is None), so no initial weights
    are computed or loaded."""
    task = task or task_for(config)
    validate_config(config)
    mesh = mesh or sharding.make_mesh(config.mesh.data, config.mesh.fsdp)
    check_devices(config, mesh)
    data = data if data is not None else task.data()
    model = task.build_model(steps.bn_axis_name(config))
    tx, lr_fn = state_lib.make_optimizer(config)
    # The RBG key compiles ~5x faster than threefry for the ~60 initializers of the network.
    key = jax.random.key(config.seed, impl="rbg")
    init_fn = functools.partial(task.init_variables, model, data)
    if create:
        host = task.initial_variables(model, data, key)
        state, shardings, abstract = state_lib.create_state(
            init_fn, None if host is None else (lambda: host), tx, mesh, config, key
        )
    else:
        state, (abstract, shardings) = None, state_lib.abstract_state(init_fn, tx, mesh, config)
    step_fn = steps.make_train_step(
        config, task.forward(model), task.per_example, mesh, tx, lr_fn, shardings,
        compiler_options=graph.jit_options(model, train=True),
    )  # fmt: skip
    eval_model = task.build_model(None)
    return Setup(config, task, data, mesh, model, eval_model, tx, lr_fn, state, shardings,
                 abstract, step_fn)  # fmt: skip


def variables_of(state: dict) -> dict:
    return {"params": state["params"], "batch_stats": state["batch_stats"]}


@dataclasses.dataclass
class _Progress:
    """Where a run's steps stand: the state, the step, the last logged loss, how it ended."""

    state: Any
    step: int
    last_loss: float = float("nan")
    interrupted: bool = False


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    task: Task | None = None,
    data: Any = None,
    mesh: Mesh | None = None,
    stop_after: int | None = None,
    load_state: bool = False,
) -> dict:
    """Trains (resuming from `workdir` if it holds checkpoints), evaluates, returns a summary.

    The workdir's recorded config is the run's contract (`training.contract`): a resume that
    changes what its checkpoint was made with raises `contract.ContractError` before any work.
    A finished run is not redone and, with its results written, returns from its records alone
    (`state` None unless `load_state`). `data` overrides `task.data()` (tests); `stop_after` ends
    the loop after that many steps of this call. Returns `{"steps" (the step reached),
    "start_step", "final_loss", "eval" (results or None), "wall_s", "state", "interrupted",
    "finished_before", "evaluated_now"}`.
    """
    t_start = time.time()
    validate_config(config)
    wd = checkpoints.Workdir.at(workdir)
    if not load_state and (done := contract.finished_run(wd.root, config)) is not None:
        return {**done, "wall_s": time.time() - t_start}
    wd.check_writable()
    resume = contract.check(wd, config)
    task = task or task_for(config)
    data = data if data is not None else task.data()
    card = _check_data_card(wd, task.data_card(data), resume.step)
    s = setup(config, mesh, task, data, create=resume.step is None)
    progress = _begin(s, wd, resume, card)
    data_iter = task.train_iterator(s.data)
    ckpt = checkpoints.Checkpoints(wd, config, task.best_metric)
    if resume.step is not None:
        progress.state = ckpt.restore(resume.step, s.abstract, s.shardings, data_iter)
        print(f"Resumed from {wd.checkpoints} at step {progress.step}", flush=True)
    start, total = progress.step, config.num_train_steps
    finished_before = start >= total  # a re-run: no step is redone, no checkpoint re-saved
    if finished_before:
        print(f"The run in {wd.root} finished its {total} steps before", flush=True)
    writer = run_utils.MetricWriter(wd.metrics, wd.tensorboard, start)
    end = total if stop_after is None else min(total, start + stop_after)
    _train_steps(s, progress, end, data_iter, wd, ckpt, writer)
    results, evaluated_now = None, False
    if finished_before and wd.results.exists():
        results = json.loads(wd.results.read_text())
    elif progress.step == total:  # the final evaluation (also of a finished run that lacks it)
        results = _evaluate(s, progress.state, wd, ckpt, writer, progress.step, final=True)
        evaluated_now = results is not None
    writer.close()
    ckpt.close()
    if (
        jax.process_index() == 0
        and wd.metrics.exists()
        and (progress.step > start or evaluated_now)
    ):
        try:
            plots.plot_metrics(wd.metrics, wd.plot)
        except Exception as e:  # noqa: BLE001 - a plot never fails a run
            print(f"warning: could not plot metrics: {e}")
    return {
        "steps": progress.step,
        "start_step": start,
        "final_loss": progress.last_loss,
        "eval": results,
        "wall_s": time.time() - t_start,
        "state": progress.state,
        "interrupted": progress.interrupted,
        "finished_before": finished_before,
        "evaluated_now": evaluated_now,
    }


def _check_data_card(wd: checkpoints.Workdir, card: dict, step: int | None) -> str:
    """data.json's text for `card`; under a checkpoint, the recorded card must agree (the keys
    both have): `contract.ContractError` naming each difference otherwise."""
    text = json.dumps(card, indent=2) + "\n"
    if step is None or not wd.data_card.is_file():
        return text
    old = json.loads(wd.data_card.read_text())
    new = json.loads(text)
    differ = [k for k in new if k in old and old[k] != new[k]]
    if differ:
        shown = "; ".join(f"{k}: {_short(old[k])} -> {_short(new[k])}" for k in differ)
        raise contract.ContractError(
            f"the data differs from what the checkpoint at step {step} in {wd.root} was trained "
            f"on ({wd.data_card}): {shown}. Point the config at that data, or start a new workdir"
        )
    return text


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _begin(s: Setup, wd: checkpoints.Workdir, resume: contract.Resume, card: str) -> _Progress:
    """Says what changed since the last session (config fields, devices or mesh), records this
    session in the history, writes config.json and data.json (process 0)."""
    start = resume.step or 0
    session = contract.mesh_record(s.mesh, jax.process_count())
    if resume.step is not None:
        last = next((r for r in reversed(wd.history_rows()) if "devices" in r), None)
        if line := contract.mesh_change_line(last, session):
            print(line, flush=True)
        if resume.changes:
            print(f"config changes at step {start}: {contract.changes_line(resume.changes)} "
                  f"(recorded in {wd.history})", flush=True)  # fmt: skip
    if jax.process_index() == 0:
        text = s.config.to_json_best_effort(indent=2)
        contract.record(wd, s.config, resume, start, session, text)
        if not wd.data_card.is_file() or wd.data_card.read_text() != card:
            wd.data_card.write_text(card)
    return _Progress(s.state, start)


def _train_steps(s: Setup, p: _Progress, end: int, data_iter, wd, ckpt, writer) -> None:
    """Steps `p.step` up to `end`: logs, checkpoints, evaluates midway, stops on SIGTERM or a
    non-finite loss (nothing saved then). Rates (bar and metrics) leave out the session's first
    step, which includes the compilation."""
    config, total, start = s.config, s.config.num_train_steps, p.step
    with run_utils.PreemptionGuard() as guard:
        bar = run_utils.StepProgress(config.progress and start < end, total, start)
        t_log, step_log = time.time(), start
        try:
            while p.step < end:
                host = next(data_iter)
                p.state, metrics = s.step_fn(p.state, sharding.global_batch(host, s.mesh))
                p.step += 1
                step, stop = p.step, guard.stop()
                save_now = step % config.checkpoint.every_steps == 0 or step == end or stop
                log_now = step % config.log_every_steps == 0 or step == end or stop
                if log_now or save_now:
                    m = jax.device_get(metrics)
                    p.last_loss = float(m["loss"])
                    _check_finite(p.last_loss, step, ckpt, wd)
                if step == start + 1:  # the first step: compiled, then ran
                    first_s = bar.first_step_done(step)
                    t_log, step_log = time.time(), step
                    if log_now:
                        writer.write(step, {**m, "first_step_s": first_s})
                elif log_now:
                    now = time.time()
                    rate = (step - step_log) / max(now - t_log, 1e-9)
                    t_log, step_log = now, step
                    clips = rate * config.batch_size
                    writer.write(step, {**m, "steps_per_s": rate, "clips_per_s": clips})
                    bar.postfix(loss=f"{p.last_loss:.3f}", steps_s=f"{rate:.2f}",
                                clips_s=f"{clips:.1f}")  # fmt: skip
                if step > start + 1:
                    bar.update()
                if save_now:
                    ckpt.save(step, p.state, data_iter)
                if stop:
                    print(f"SIGTERM at step {step}: saved a checkpoint, exiting", flush=True)
                    break
                if config.eval_every_steps and step % config.eval_every_steps == 0 and step < total:
                    _evaluate(s, p.state, wd, ckpt, writer, step, final=False)
        finally:
            ckpt.wait()
            bar.close()
    p.interrupted = guard.signal is not None


def _check_finite(loss: float, step: int, ckpt, wd) -> None:
    if not math.isfinite(loss):
        ckpt.wait()
        raise TrainingError(
            f"non-finite loss {loss} at step {step}; stopped without saving. The last good "
            f"checkpoint is step {ckpt.latest_step()} in {wd.checkpoints} (try a lower lr.base "
            "or grad_clip_norm)."
        )


def _evaluate(s: Setup, state, wd, ckpt, writer, step: int, final: bool) -> dict | None:
    """Evaluates the state; offers it as best; the final evaluation writes results and reports."""
    where = str(wd.checkpoints / str(step)) if final else ""
    results = s.task.evaluate(s.eval_model, variables_of(state), s.mesh, s.data, where)
    if results is None:
        return None
    if final:
        results["step"] = step
    writer.write(step, run_utils.scalars(results), prefix="val_")
    ckpt.save_best(step, state, results)
    if final and jax.process_index() == 0:
        evaluation.write_results(wd.results, results)
        s.task.write_reports(wd.eval_dir, results)
    return results
