"""The interface between the training loop and a kind of model (a "task").

The loop (`i3d_jax.training.loop`) knows only this protocol; `i3d_jax.training.video.
VideoClassification` (I3D on video clips) implements it. A new kind of model, e.g. a temporal head
over feature sequences `[B, N, D]` with a mask, implements these methods and passes
`task=MyTask()` to `train_and_evaluate`: no copy of the loop, the steps or the checkpoints.
"""

from __future__ import annotations

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

    best_metric: str  # the results key (higher is better) that picks `<workdir>/best`
    inputs: tuple[str, ...]  # batch keys the model reads; the others pass through evaluation

    def build_model(
        self, config: ml_collections.ConfigDict, bn_axis_name: str | None = None
    ) -> nn.Module:
        """The linen module (`bn_axis_name`: BatchNorm statistics averaged over that axis)."""

    def init_variables(
        self, config: ml_collections.ConfigDict, model: nn.Module, rng: jax.Array
    ) -> dict:
        """`{'params', 'batch_stats'}` from the initialisers; traceable (jit, eval_shape)."""

    def initial_variables(
        self, config: ml_collections.ConfigDict, model: nn.Module, rng: jax.Array
    ) -> dict | None:
        """Host variables of a run's start (pretrained, inflated...), or None: `init_variables`."""

    def forward(self, config: ml_collections.ConfigDict, model: nn.Module) -> Callable:
        """`(variables, batch, train, rng) -> (float32 logits, new batch_stats)`, traceable."""

    def per_example(self, logits: jax.Array, batch: dict) -> tuple[jax.Array, jax.Array]:
        """`(loss [B], correct [B])` of a batch (correct: 1/0, or the fraction right)."""

    def data(self, config: ml_collections.ConfigDict) -> Any:
        """The run's data sources (opaque to the loop; passed back to the two methods below)."""

    def train_iterator(self, config: ml_collections.ConfigDict, data: Any) -> Iterator[dict]:
        """Host batches (dicts of numpy arrays, this host's share); a Grain iterator is
        checkpointed with the state, so a resumed run continues the same sequence."""

    def evaluate(
        self,
        config: ml_collections.ConfigDict,
        model: nn.Module,
        variables: dict,
        mesh: Mesh,
        data: Any,
        checkpoint: str = "",
    ) -> dict | None:
        """Results (with `best_metric` and other float metrics), or None without eval data."""

    def write_reports(self, outdir: Any, results: dict) -> None:
        """Files beside `results.json` (plots, per-class tables)."""


def softmax_classification(logits: jax.Array, label: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`(softmax cross-entropy [B], correct [B] as 1.0/0.0)` of logits `[B, K]`, int labels `[B]`."""
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, label)
    return loss, (jnp.argmax(logits, -1) == label).astype(jnp.float32)
