"""The interface between the training loop and a kind of model (a "task"), and the task registry.

The loop (`i3d_jax.training.loop`) and `eval.py`'s unit know only this protocol. A task is built
with the run's config (`task_for(config)`, or `MyTask(config)` passed to `train_and_evaluate`);
its data object carries what the model needs of the data (e.g. the feature width), so nothing is
written back into the config. Implemented by `tasks.video.VideoClassification` (I3D on clips),
`tasks.features.FeatureSequenceClassification` (a temporal head over window features) and
`tasks.multilabel.MultiLabelVideo` (I3D with per-frame sigmoid outputs, Charades).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh


class Task(Protocol):
    """What the loop needs: a model, its variables, a forward pass and loss, data, evaluation."""

    config: ml_collections.ConfigDict
    best_metric: str  # the results key (higher is better) that picks `<workdir>/best`
    inputs: tuple[str, ...]  # batch keys the model reads; the others pass through evaluation

    def data(self) -> Any:
        """The run's data sources and what the model needs of them (opaque to the loop)."""

    def data_card(self, data: Any) -> dict:
        """JSON facts of the data a run recorded (`<workdir>/data.json`: class names, ...)."""

    def build_model(self, bn_axis_name: str | None = None) -> nn.Module:
        """The linen module (`bn_axis_name`: BatchNorm statistics averaged over that axis)."""

    def init_variables(self, model: nn.Module, data: Any, rng: jax.Array) -> dict:
        """`{'params', 'batch_stats'}` from the initialisers; traceable (jit, eval_shape)."""

    def initial_variables(self, model: nn.Module, data: Any, rng: jax.Array) -> dict | None:
        """Host variables of a run's start (pretrained, inflated...), or None: `init_variables`."""

    def forward(self, model: nn.Module) -> Callable:
        """`(variables, batch, train, rng) -> (float32 logits, new batch_stats)`, traceable."""

    def per_example(self, logits: jax.Array, batch: dict) -> tuple[jax.Array, jax.Array]:
        """`(loss [B], correct [B])` of a batch (correct: 1/0, or the fraction right)."""

    def train_iterator(self, data: Any) -> Iterator[dict]:
        """Host batches (dicts of numpy arrays, this host's share); a Grain iterator is
        checkpointed with the state, so a resumed run continues the same sequence."""

    def evaluate(
        self, model: nn.Module, variables: dict, mesh: Mesh, data: Any, checkpoint: str = ""
    ) -> dict | None:
        """Results (with `best_metric` and other float metrics), or None without eval data."""

    def write_reports(self, outdir: Any, results: dict) -> None:
        """Files beside `results.json` (plots, per-class tables)."""


def softmax_classification(logits: jax.Array, label: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`(softmax cross-entropy [B], correct [B] as 1.0/0.0)` of logits `[B, K]`, int labels `[B]`."""
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, label)
    return loss, (jnp.argmax(logits, -1) == label).astype(jnp.float32)


# `config.task` -> "module:class" of the task (imported when picked: the loop imports no task).
TASKS: dict[str, str | Callable[[ml_collections.ConfigDict], Task]] = {
    "video": "i3d_jax.training.tasks.video:VideoClassification",
    "features": "i3d_jax.training.tasks.features:FeatureSequenceClassification",
    "multilabel": "i3d_jax.training.tasks.multilabel:MultiLabelVideo",
}


def register_task(name: str, factory: Callable[[ml_collections.ConfigDict], Task]) -> None:
    """Makes `config.task = name` build `factory(config)` (a task of one's own)."""
    TASKS[name] = factory


def task_class(name: str) -> Callable[[ml_collections.ConfigDict], Task]:
    """The factory `config.task = name` picks (ValueError naming the known tasks)."""
    if name not in TASKS:
        raise ValueError(f"config.task={name!r} is not one of {sorted(TASKS)}")
    factory = TASKS[name]
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory


def task_for(config: ml_collections.ConfigDict) -> Task:
    """The task `config.task` names, built with `config` ("video": I3D on clips, the default)."""
    return task_class(config.get("task", "video"))(config)
