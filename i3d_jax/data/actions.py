"""Action intervals of multi-label videos and the multi-hot targets they give frames.

An example of a multi-label dataset carries ``actions`` (:data:`i3d_jax.data.schema.ACTIONS`):
parallel lists ``label`` (class index), ``start`` and ``end`` (seconds from the video's start).
Frame ``k`` of a video stored at ``fps`` is at time ``k / fps`` (the input contract,
:mod:`i3d_jax.preprocess`), and it shows action ``a`` when ``start_a <= k / fps <= end_a``: the
closed interval of the Charades localisation protocol (its ground truth at a time point uses
``start <= t <= end``). Times are compared with a tolerance of :data:`TOLERANCE_S`, far below a
frame, so intervals stored as float32 that fall on a frame time keep that frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from i3d_jax.data import schema

TOLERANCE_S = 1e-4


def intervals(example: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(labels int32 [A], starts float64 [A], ends float64 [A])` of an example's actions
    (empty arrays for a video without any); KeyError naming the feature if it has none."""
    if schema.ACTIONS not in example:
        raise KeyError(
            f"example has no {schema.ACTIONS!r} feature (action intervals): a multi-label task "
            "needs a dataset built with them (video_folder --charades_csv, synthetic_motion/"
            "multilabel)"
        )
    acts = example[schema.ACTIONS]
    return (
        np.asarray(acts["label"], np.int32).reshape(-1),
        np.asarray(acts["start"], np.float64).reshape(-1),
        np.asarray(acts["end"], np.float64).reshape(-1),
    )


def as_feature(actions: Iterable[tuple[int, float, float]]) -> dict:
    """The :data:`~i3d_jax.data.schema.ACTIONS` value of `(label, start, end)` triples."""
    actions = list(actions)
    return {
        "label": [int(a[0]) for a in actions],
        "start": [float(a[1]) for a in actions],
        "end": [float(a[2]) for a in actions],
    }


def frame_targets(example: dict, frame_indices: Sequence[int], num_classes: int) -> np.ndarray:
    """Multi-hot targets float32 `[len(frame_indices), num_classes]` of the example's frames
    `frame_indices` (indices of its stored frames, e.g. a looped clip's), each at time
    `index / fps` with the example's ``fps``."""
    fps = float(example[schema.FPS])
    times = np.asarray(frame_indices, np.float64) / fps
    return targets_at(example, times, num_classes)


def targets_at(example: dict, times: np.ndarray, num_classes: int) -> np.ndarray:
    """Multi-hot targets float32 `[len(times), num_classes]` at `times` (seconds)."""
    labels, starts, ends = intervals(example)
    _check_labels(labels, num_classes)
    times = np.asarray(times, np.float64).reshape(-1)
    out = np.zeros((len(times), num_classes), np.float32)
    if len(labels):
        inside = (times[:, None] >= starts[None] - TOLERANCE_S) & (
            times[:, None] <= ends[None] + TOLERANCE_S
        )  # [T, A]
        for a, k in enumerate(labels):
            out[inside[:, a], k] = 1.0
    return out


def video_targets(example: dict, num_classes: int) -> np.ndarray:
    """Multi-hot float32 `[num_classes]`: the classes of any of the video's actions (what the
    Charades classification protocol scores a video against)."""
    labels, _, _ = intervals(example)
    _check_labels(labels, num_classes)
    out = np.zeros(num_classes, np.float32)
    out[labels] = 1.0
    return out


def first_action(actions: Sequence[tuple[int, float, float]]) -> int:
    """The class of the earliest action (ties: the longer, then the lower index), -1 if none:
    the single ``label`` a multi-label example carries beside its intervals."""
    if not actions:
        return -1
    return int(min(actions, key=lambda a: (a[1], -(a[2] - a[1]), a[0]))[0])


def _check_labels(labels: np.ndarray, num_classes: int) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"action label {int(labels.max() if labels.max() >= num_classes else labels.min())}"
            f" is outside the {num_classes} classes of the targets"
        )
