"""A workdir's Orbax checkpoints: the last k (state + data-iterator state) and the best by a
validation metric. The layout of a workdir is `training.workdir.Workdir` (re-exported here)."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from i3d_jax.training.config import TrainingError
from i3d_jax.training.workdir import Workdir
from i3d_jax.weights import workdir as layout

__all__ = ["Checkpoints", "Workdir", "find", "host_variables", "restore", "restore_variables"]


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
            f"cannot restore checkpoint step {step} from {mngr.directory}: {_brief(e)}. The "
            "directory may be corrupted or from another model/config (compare the workdir's "
            "config.json); move it aside to start over or point --workdir elsewhere."
        ) from e
    return restored[layout.STATE]


def _brief(error: BaseException, limit: int = 300) -> str:
    """`Type: the first line of the message`, at most `limit` characters (Orbax's messages hold
    whole trees: tens of kilobytes on one line)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


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
            f"{_brief(e)}"
        ) from e
    return dict(restored["state"])


def host_variables(path: str | os.PathLike) -> tuple[dict, str] | None:
    """(`{'params', 'batch_stats'}` as numpy, where) of a training workdir (its best checkpoint,
    else its latest) or an Orbax step directory, read as saved (any model, any device; the
    optimizer state is not read); None if `path` is neither. What `init.source=<workdir>`
    starts a new run from."""
    found = find(path) if pathlib.Path(path).is_dir() else None
    if found is None:
        return None
    mngr, step, where = found
    try:
        meta = ocp.PyTreeCheckpointer().metadata(where / "state")
        tree = getattr(meta, "item_metadata", meta)
        tree = getattr(tree, "tree", tree)
        wanted = {k: tree[k] for k in ("params", "batch_stats") if k in tree}
        item = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), wanted)
        args = jax.tree.map(lambda m: ocp.RestoreArgs(restore_type=np.ndarray), wanted)
        restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            item=item, restore_args=args, partial_restore=True)))  # fmt: skip
    except Exception as e:  # noqa: BLE001 - orbax raises many types; say which checkpoint
        raise TrainingError(f"cannot read the weights of checkpoint {where}: {_brief(e)}") from e
    state = dict(restored["state"])
    return {"params": state["params"], "batch_stats": state.get("batch_stats", {})}, str(where)
