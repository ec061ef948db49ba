"""The workdir layout and its Orbax checkpoints: the last k (state + data-iterator state), the best
by a validation metric, and where results, metrics and the config go.

    <workdir>/config.json            the resolved config
    <workdir>/data.json              what the run's data was (class names, feature width, ...)
    <workdir>/checkpoints/<step>/    `state` (+ `data`: every host's Grain iterator state); last k
    <workdir>/best/<step>/           `state` with the best validation metric (one kept)
    <workdir>/metrics.jsonl, tb/, metrics.png
    <workdir>/eval/results.json      (+ the task's reports beside it)

The names of the layout are `i3d_jax.weights.workdir`'s, the reader that loads a run as weights
(`load_pretrained(<workdir>)`).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp

from i3d_jax.training.config import TrainingError
from i3d_jax.weights import workdir as layout


@dataclasses.dataclass(frozen=True)
class Workdir:
    """The paths of one run (absolute: Orbax needs absolute paths)."""

    root: pathlib.Path

    @classmethod
    def at(cls, path: str | os.PathLike) -> Workdir:
        return cls(pathlib.Path(path).absolute())

    checkpoints = property(lambda self: self.root / layout.CHECKPOINTS)
    best = property(lambda self: self.root / layout.BEST)
    config = property(lambda self: self.root / layout.CONFIG)
    data_card = property(lambda self: self.root / layout.DATA_CARD)
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


class Checkpoints:
    """The last-k and best checkpoint managers of a workdir."""

    def __init__(self, workdir: Workdir, config: ml_collections.ConfigDict, best_metric: str):
        self.workdir, self.best_metric = workdir, best_metric
        self.last = ocp.CheckpointManager(
            workdir.checkpoints,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=config.checkpoint.keep,
                create=True,
                enable_async_checkpointing=config.checkpoint.async_save,
                cleanup_tmp_directories=True,
            ),
        )
        self.best = ocp.CheckpointManager(
            workdir.best,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1,
                create=True,
                best_fn=lambda m: m[best_metric],
                best_mode="max",
                enable_async_checkpointing=False,
                cleanup_tmp_directories=True,
            ),
        )

    def latest_step(self) -> int | None:
        return self.last.latest_step()

    def save(self, step: int, state: Any, data_iter: Any = None) -> None:
        """Saves `state` (and the iterator state) as `checkpoints/<step>` (async if configured)."""
        items = {layout.STATE: ocp.args.StandardSave(state)}
        if data_iter is not None:
            items[layout.DATA] = grain.checkpoint.CheckpointSave(data_iter)
        self.last.save(step, args=ocp.args.Composite(**items), force=True)

    def save_best(self, step: int, state: Any, results: dict) -> bool:
        """Offers `state` as best; a step already saved (a re-run, a resumed run) is not redone."""
        if step in self.best.all_steps():
            return False
        self.best.save(
            step,
            args=ocp.args.Composite(**{layout.STATE: ocp.args.StandardSave(state)}),
            metrics={self.best_metric: float(results[self.best_metric])},
            force=True,
        )
        return True

    def restore(self, step: int, abstract: Any, shardings: Any, data_iter: Any = None) -> Any:
        """The state of `checkpoints/<step>` (onto `shardings`, any mesh) and the iterator state."""
        return restore(self.last, step, abstract, shardings, data_iter)

    def wait(self) -> None:
        self.last.wait_until_finished()

    def close(self) -> None:
        self.last.close()
        self.best.close()


def restore(mngr: Any, step: int, abstract: Any, shardings: Any, data_iter: Any = None) -> Any:
    """State of `step` of an Orbax manager, placed on `shardings`; TrainingError naming it."""
    target = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
    )
    items = {layout.STATE: ocp.args.StandardRestore(target)}
    if data_iter is not None:
        items[layout.DATA] = grain.checkpoint.CheckpointRestore(data_iter)
    try:
        restored = mngr.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # noqa: BLE001 - orbax raises many types; say which checkpoint
        raise TrainingError(
            f"cannot restore checkpoint step {step} from {mngr.directory}: {type(e).__name__}: "
            f"{e}. The directory may be corrupted or from another model/config; move it aside "
            "to start over or point --workdir elsewhere."
        ) from e
    return restored[layout.STATE]


def find(path: str | os.PathLike) -> tuple[Any, int, pathlib.Path] | None:
    """(manager, step, directory) of a workdir's best checkpoint (else its latest) or of an Orbax
    step directory `.../<step>`; None if `path` is neither."""
    path = pathlib.Path(path).absolute()
    wd = Workdir(path)
    for sub, pick in ((wd.best, "best_step"), (wd.checkpoints, "latest_step")):
        if sub.is_dir():
            mngr = ocp.CheckpointManager(sub)
            step = getattr(mngr, pick)()
            if step is not None:
                return mngr, step, sub / str(step)
    if path.name.isdigit() and path.is_dir():
        return ocp.CheckpointManager(path.parent), int(path.name), path
    return None


def restore_variables(mngr: Any, step: int, abstract: Any, shardings: Any) -> dict:
    """Only `{'params', 'batch_stats'}` of a train-state checkpoint (no optimizer state needed)."""
    restore_args = jax.tree.map(lambda s: ocp.ArrayRestoreArgs(sharding=s), shardings)
    args = ocp.args.PyTreeRestore(abstract, restore_args=restore_args, partial_restore=True)
    try:
        restored = mngr.restore(step, args=ocp.args.Composite(**{layout.STATE: args}))
    except Exception as e:  # noqa: BLE001 - orbax raises many types; say which checkpoint
        raise TrainingError(
            f"cannot restore the variables of checkpoint step {step} from {mngr.directory}: "
            f"{type(e).__name__}: {e}"
        ) from e
    return dict(restored[layout.STATE])
