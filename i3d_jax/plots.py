"""PNG plots: training curves (loss, accuracy, learning rate) and the confusion matrix."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_metrics(path: str | pathlib.Path) -> list[dict]:
    return [
        json.loads(line) for line in pathlib.Path(path).read_text().splitlines() if line.strip()
    ]


def plot_metrics(metrics_jsonl: str | pathlib.Path, out_png: str | pathlib.Path) -> None:
    """Three panels vs step: loss, train/val accuracy, learning rate."""
    rows = read_metrics(metrics_jsonl)
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))

    def series(key):
        pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        return np.array(pts).T if pts else (np.array([]), np.array([]))

    axes[0].plot(*series("loss"), label="train loss")
    axes[0].set_title("loss")
    for key, label in (("accuracy", "train clip"), ("val_clip_top1", "val clip"),
                       ("val_video_top1", "val video")):  # fmt: skip
        s, v = series(key)
        if len(s):
            axes[1].plot(s, v, "o-" if key.startswith("val") else "-", label=label)
    axes[1].set_title("top-1 accuracy")
    axes[1].set_ylim(0, 1)
    axes[1].legend()
    axes[2].plot(*series("learning_rate"))
    axes[2].set_title("learning rate")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def plot_confusion(
    confusion: np.ndarray, names: Sequence[str], out_png: str | pathlib.Path, max_labels: int = 60
) -> None:
    """Row-normalised confusion matrix (rows = true class); tick labels up to `max_labels`."""
    plt = _pyplot()
    cm = np.asarray(confusion, np.float64)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(cm)
    size = min(4 + 0.25 * n, 20)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if n <= max_labels:
        ax.set_xticks(range(n), list(names)[:n], rotation=90)
        ax.set_yticks(range(n), list(names)[:n])
        if n <= 20:
            for i in range(n):
                for j in range(n):
                    if cm[i, j]:
                        ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                                color="white" if norm[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
