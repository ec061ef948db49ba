"""Metrics and reports of a classifier's predictions (numpy only; knows nothing of training).

Predictions are `{"logits" [N, C], "label" [N], "index" [N] (video), "view" [N]}` with one row per
view (clip x crop) of a video. Video metrics average the views' logits per video; two-stream
fusion averages the streams' *video* logits with weights (the paper: equal).

`results.json` holds `clip_top1`, `clip_top5`, `video_top1`, `video_top5` (fractions in [0, 1]),
`num_videos`, `num_views`, `protocol`, `checkpoint`, `dataset`, `label_set`, `per_class_top1`
(keyed by class name) and `confusion` (rows = true class, columns = predicted). The top-5 numbers
are None (null) with 5 classes or fewer, where every label is among the top 5.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

import numpy as np

from i3d_jax import plots

SCALARS = ("clip_top1", "clip_top5", "video_top1", "video_top5", "video_mAP", "frame_mAP")


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Bool `[N]`: label among the k largest logits (k clipped to the class count)."""
    k = min(k, logits.shape[-1])
    top = np.argsort(-logits, axis=-1, kind="stable")[:, :k]
    return (top == labels[:, None]).any(-1)


def video_logits(preds: dict) -> dict:
    """Average the views of each video: `{"logits" [V, C], "label" [V], "index" [V]}`."""
    idx, inverse = np.unique(preds["index"], return_inverse=True)
    sums = np.zeros((len(idx), preds["logits"].shape[-1]), np.float64)
    np.add.at(sums, inverse, preds["logits"])
    counts = np.bincount(inverse, minlength=len(idx))[:, None]
    labels = np.zeros(len(idx), np.int64)
    labels[inverse] = preds["label"]
    return {"logits": (sums / counts).astype(np.float32), "label": labels, "index": idx}


def fuse(a: dict, b: dict, weights: Sequence[float] = (0.5, 0.5)) -> dict:
    """Two-stream late fusion of video-level logits (`video_logits` outputs) by video index."""
    common, ia, ib = np.intersect1d(a["index"], b["index"], return_indices=True)
    if len(common) != len(a["index"]) or len(common) != len(b["index"]):
        raise ValueError(
            f"fusion: the streams cover different videos ({len(a['index'])} vs {len(b['index'])},"
            f" {len(common)} shared)"
        )
    if not np.array_equal(a["label"][ia], b["label"][ib]):
        raise ValueError("fusion: the streams disagree on labels (different datasets/splits?)")
    wa, wb = weights
    return {
        "logits": wa * a["logits"][ia] + wb * b["logits"][ib],
        "label": a["label"][ia],
        "index": common,
    }


def summarize(
    preds: dict | None,
    num_classes: int,
    video: dict | None = None,
    label_names: Sequence[str] | None = None,
) -> dict:
    """Clip and video top-1/top-5, per-class video top-1 (keyed by class name, or by the index as
    a string past `label_names`) and the confusion matrix. Top-5 is None with 5 classes or fewer
    (every label is then among the top 5)."""
    video = video if video is not None else video_logits(preds)
    labels, pred = video["label"], np.argmax(video["logits"], -1)
    if len(labels) and labels.max() >= num_classes:
        raise ValueError(
            f"eval data has label {labels.max()} but the model has {num_classes} classes"
        )
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, pred), 1)
    names = class_names(label_names, num_classes)
    per_class = {
        names[c]: float(confusion[c, c] / confusion[c].sum()) for c in range(num_classes)
        if confusion[c].sum()
    }  # fmt: skip
    top5 = num_classes > 5
    out = {
        "video_top1": float(topk_correct(video["logits"], labels, 1).mean()),
        "video_top5": float(topk_correct(video["logits"], labels, 5).mean()) if top5 else None,
        "num_videos": int(len(labels)),
        "per_class_top1": per_class,
        "confusion": confusion.tolist(),
    }
    if preds is not None:
        out["clip_top1"] = float(topk_correct(preds["logits"], preds["label"], 1).mean())
        out["clip_top5"] = (
            float(topk_correct(preds["logits"], preds["label"], 5).mean()) if top5 else None
        )
        out["num_views"] = int(len(preds["label"]))
    return out


def class_names(label_names: Sequence[str] | None, num_classes: int) -> list[str]:
    """One name per model output: the dataset's names, then the index (as a string) for outputs
    past them (a head larger than the dataset, `model.allow_extra_classes`)."""
    names = [str(n) for n in (label_names or [])][:num_classes]
    return names + [str(i) for i in range(len(names), num_classes)]


def scalar_results(results: dict) -> dict:
    """The top-1/top-5 numbers of a results dict (those present and not None)."""
    return {k: results[k] for k in SCALARS if results.get(k) is not None}


def write_results(path: str | pathlib.Path, results: dict) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=_jsonable) + "\n")


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def write_reports(outdir: str | pathlib.Path, results: dict) -> None:
    """confusion.png and per_class.json in `outdir` (beside results.json)."""
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    n = len(results["confusion"])
    names = class_names(results.get("label_set"), n)
    per_class = {
        names[int(c)] if isinstance(c, int) and c < n else str(c): v
        for c, v in results["per_class_top1"].items()
    }  # results written before per_class_top1 was keyed by name had int keys
    (outdir / "per_class.json").write_text(json.dumps(per_class, indent=2) + "\n")
    plots.plot_confusion(np.asarray(results["confusion"]), names, outdir / "confusion.png")


def format_summary(results: dict) -> str:
    """One human line per metric."""
    lines = [f"{results.get('dataset', '')} [{results.get('protocol', '')}]"]
    for k in SCALARS:
        if results.get(k) is not None:
            lines.append(f"  {k:11s} {100 * results[k]:6.2f}%")
    lines.append(f"  videos      {results.get('num_videos')}")
    return "\n".join(lines)
