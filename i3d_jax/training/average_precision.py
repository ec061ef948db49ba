"""Average precision and mAP as the Charades protocol computes them (numpy only).

Per class (`Charades_v1_classify` and `Charades_v1_localize`, adapted there from THUMOS): the
items (videos, or frames) sorted by descending score, ties kept in their order (a stable sort,
as Matlab's `sort`); the precision at each positive item averaged over the positives. A class
without positives has no AP and is left out of the mean (the mAP is over the classes that have
positives). This equals `sklearn.metrics.average_precision_score` on untied scores.

The localisation protocol scores 25 equally spaced frames per video: frame ``floor(j * n / 25)``
of a video of ``n`` frames for ``j = 0..24``, the frame shown at time ``j / 25`` of its length
(`localize_frames`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LOCALIZE_FRAMES = 25


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """AP of one class: `scores [N]` (higher: more likely), `positives [N]` (bool or 0/1);
    NaN when there is no positive."""
    scores = np.asarray(scores, np.float64).reshape(-1)
    hits = np.asarray(positives).reshape(-1) > 0
    if scores.shape != hits.shape:
        raise ValueError(f"scores {scores.shape} and positives {hits.shape} differ in shape")
    if not hits.any():
        return float("nan")
    ranked = hits[np.argsort(-scores, kind="stable")]
    precision = np.cumsum(ranked) / np.arange(1, len(ranked) + 1)
    return float(precision[ranked].mean())


def mean_ap(scores: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """(mAP over the classes with a positive, per-class AP `[K]` with NaN for the others) of
    `scores [N, K]` against multi-hot `targets [N, K]`; the mAP is NaN if no class has one."""
    scores, targets = np.asarray(scores), np.asarray(targets)
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise ValueError(f"expected scores and targets [N, K] alike, got {scores.shape}, "
                         f"{targets.shape}")  # fmt: skip
    per_class = np.array(
        [average_precision(scores[:, k], targets[:, k]) for k in range(scores.shape[1])]
    )
    have = ~np.isnan(per_class)
    return (float(per_class[have].mean()) if have.any() else float("nan")), per_class


def localize_frames(num_frames: int, points: int = LOCALIZE_FRAMES) -> np.ndarray:
    """Indices int `[points]` of the localisation protocol's equally spaced frames of a video
    of `num_frames` frames: ``floor(j * num_frames / points)``."""
    if num_frames < 1:
        raise ValueError(f"a video of {num_frames} frames has none to score")
    return (np.arange(points) * num_frames) // points


def by_name(per_class: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """`{class name: AP}` of the classes that have one (NaN entries left out)."""
    return {str(n): float(v) for n, v in zip(names, per_class, strict=True) if not np.isnan(v)}
