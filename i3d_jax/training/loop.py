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
from i3d_jax.training import checkpoints, evaluation, run_utils, steps
from i3d_jax.training import state as state_lib
from i3d_jax.training.config import TrainingError, check_devices, validate_config
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
) -> Setup:
    """Validates the config, loads the data (unless given), builds the mesh, model, optimizer,
    sharded state and jitted step."""
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
    host = task.initial_variables(model, data, key)
    state, shardings, abstract = state_lib.create_state(
        init_fn, None if host is None else (lambda: host), tx, mesh, config, key
    )
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
) -> dict:
    """Trains (resuming from `workdir` if it holds checkpoints), evaluates, returns a summary.

    `data` overrides `task.data()` (tests); `stop_after` ends the loop after that many steps of
    this call. Returns `{"steps", "final_loss", "eval" (results or None), "wall_s", "state",
    "interrupted", "finished_before", "evaluated_now"}`; a finished run is not redone.
    """
    t_start = time.time()
    task = task or task_for(config)
    validate_config(config)
    wd = checkpoints.Workdir.at(workdir)
    wd.check_writable()
    s = setup(config, mesh, task, data)
    if jax.process_index() == 0:
        wd.config.write_text(config.to_json_best_effort(indent=2))
        card = json.dumps(task.data_card(s.data), indent=2) + "\n"
        if not wd.data_card.is_file() or wd.data_card.read_text() != card:
            wd.data_card.write_text(card)
    data_iter = task.train_iterator(s.data)
    ckpt = checkpoints.Checkpoints(wd, config, task.best_metric)
    progress = _Progress(s.state, 0)
    latest = ckpt.latest_step()
    if latest is not None:
        progress.state = ckpt.restore(latest, s.abstract, s.shardings, data_iter)
        progress.step = int(latest)
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
        "final_loss": progress.last_loss,
        "eval": results,
        "wall_s": time.time() - t_start,
        "state": progress.state,
        "interrupted": progress.interrupted,
        "finished_before": finished_before,
        "evaluated_now": evaluated_now,
    }


def _train_steps(s: Setup, p: _Progress, end: int, data_iter, wd, ckpt, writer) -> None:
    """Steps `p.step` up to `end`: logs, checkpoints, evaluates midway, stops on SIGTERM or a
    non-finite loss (nothing saved then)."""
    config, total, start = s.config, s.config.num_train_steps, p.step
    with run_utils.PreemptionGuard() as guard:
        bar = run_utils.progress_bar(config.progress and start < end, total, start)
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
                    if not math.isfinite(p.last_loss):
                        ckpt.wait()
                        raise TrainingError(
                            f"non-finite loss {p.last_loss} at step {step}; stopped without "
                            f"saving. The last good checkpoint is step {ckpt.latest_step()} in "
                            f"{wd.checkpoints} (try a lower lr.base or grad_clip_norm)."
                        )
                if log_now:
                    now = time.time()
                    rate = (step - step_log) / max(now - t_log, 1e-9)
                    t_log, step_log = now, step
                    clips = rate * config.batch_size
                    writer.write(step, {**m, "steps_per_s": rate, "clips_per_s": clips})
                    if bar is not None:
                        bar.set_postfix(loss=f"{p.last_loss:.3f}", steps_s=f"{rate:.2f}",
                                        clips_s=f"{clips:.1f}")  # fmt: skip
                if bar is not None:
                    bar.update(1)
                if save_now:
                    ckpt.save(step, p.state, data_iter)
                if stop:
                    print(f"SIGTERM at step {step}: saved a checkpoint, exiting", flush=True)
                    break
                if config.eval_every_steps and step % config.eval_every_steps == 0 and step < total:
                    _evaluate(s, p.state, wd, ckpt, writer, step, final=False)
        finally:
            ckpt.wait()
            if bar is not None:
                bar.close()
    p.interrupted = guard.signal is not None


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


def summary_lines(out: dict) -> list[str]:
    """What `train.py` prints about a run's end: steps, time, loss, how it ended."""
    if out.get("finished_before"):
        done = "final evaluation run now" if out.get("evaluated_now") else "results unchanged"
        return [f"already finished: {out['steps']} steps (nothing to train; {done})"]
    line = (
        f"trained {out['steps']} steps in {out['wall_s']:.0f} s; final loss {out['final_loss']:.4f}"
    )
    if out.get("interrupted"):
        line += " (interrupted by SIGTERM: checkpoint saved; run the same command to resume)"
    return [line]
