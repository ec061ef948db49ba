"""Run utilities: the metric writer (metrics.jsonl + TensorBoard), the preemption guard (SIGTERM ->
checkpoint and exit at the same step on every process), and the progress bar."""

from __future__ import annotations

import json
import pathlib
import signal
import time
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from tqdm.auto import tqdm


def _summary_writer() -> Any:
    """tensorboardX's SummaryWriter class, imported on the first row (it imports torch when
    installed: seconds); None without tensorboardX (TensorBoard output is optional)."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter


class MetricWriter:
    """metrics.jsonl + TensorBoard (tensorboardX), written by process 0 only.

    Opening it drops the lines past `resume_step` (a resumed run redoes those steps), so every
    step appears once and in order.
    """

    def __init__(self, path: pathlib.Path, tensorboard: pathlib.Path | None, resume_step: int):
        self.enabled = jax.process_index() == 0
        self.path, self.tensorboard = path, tensorboard
        self.tb = None
        if not self.enabled or not self.path.exists():
            return
        lines = [line for line in self.path.read_text().splitlines() if line.strip()]
        keep = [line for line in lines if json.loads(line).get("step", 0) <= resume_step]
        if len(keep) < len(lines):
            self.path.write_text("".join(line + "\n" for line in keep))

    def write(self, step: int, metrics: dict, prefix: str = "") -> None:
        if not self.enabled:
            return
        row = {"step": int(step), **{prefix + k: _py(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is None and self.tensorboard is not None:
            writer = _summary_writer()
            if writer is None:
                self.tensorboard = None
            else:
                self.tb = writer(str(self.tensorboard))  # opened on the first row
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _py(v: Any) -> Any:
    v = np.asarray(v)
    return v.item() if v.size == 1 else v.tolist()


def scalars(results: dict) -> dict:
    """The float entries of a results dict (what goes to metrics.jsonl as `val_*`)."""
    return {k: v for k, v in results.items() if isinstance(v, float)}


class PreemptionGuard:
    """Context manager catching SIGTERM; `stop()` says whether any process got one (all processes
    call it at the same step, so they stop together)."""

    def __init__(self):
        self.signal: int | None = None
        self._old = None

    def __enter__(self) -> PreemptionGuard:
        try:
            self._old = signal.signal(signal.SIGTERM, self._on_signal)
        except ValueError:  # not the main thread: no handler
            self._old = None
        return self

    def _on_signal(self, signum, frame) -> None:
        self.signal = signum

    def stop(self) -> bool:
        flag = self.signal is not None
        if jax.process_count() == 1:
            return flag
        return bool(np.any(multihost_utils.process_allgather(np.array([flag]))))

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


class StepProgress:
    """The training steps' tqdm bar (process 0, when enabled). It starts after a session's first
    step, at that step, so its rate and ETA leave out the compilation; the first step's seconds
    (compilation included) show beside it as `first_step`."""

    def __init__(self, enabled: bool, total: int, start: int):
        self.enabled = enabled and jax.process_index() == 0
        self.total, self.start = total, start
        self.t0 = time.time()
        self.bar: Any = None
        self.fields: dict[str, str] = {}

    def first_step_done(self, step: int) -> float:
        """Seconds since the bar was made (the first step with its compilation); starts the bar."""
        seconds = time.time() - self.t0
        self.fields["first_step"] = f"{seconds:.1f}s"
        if self.enabled:
            self.bar = tqdm(total=self.total, initial=step, unit="step", dynamic_ncols=True)
            self.bar.set_postfix(self.fields)
        return seconds

    def postfix(self, **fields: str) -> None:
        self.fields.update(fields)
        if self.bar is not None:
            self.bar.set_postfix(self.fields, refresh=False)

    def update(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
