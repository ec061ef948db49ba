"""Evaluation: clip and video top-1/top-5 under the paper's protocol or multi-view, two-stream
fusion, per-class accuracy and a confusion matrix.

Protocols (see `i3d_jax.data.pipeline`): "whole" runs each (looped to `eval.max_frames`) video
through the fully convolutional network once, so clip and video metrics coincide; "multiview" runs
`num_clips x num_crops` views and averages their logits per video. Fusion averages the two streams'
*video* logits with `eval.fusion_weights` (the paper: equal weights).

`results.json` holds `clip_top1`, `clip_top5`, `video_top1`, `video_top5` (fractions in [0, 1]),
`num_videos`, `num_views`, `protocol`, `checkpoint`, `dataset`, `label_set`, `per_class_top1` and
`confusion` (rows = true class, columns = predicted).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from i3d_jax import sharding
from i3d_jax.data import pipeline

EVAL_KEYS = ("video", "label", "index", "view", "mask")


def eval_spec(config, info: pipeline.SourceInfo) -> pipeline.EvalSpec:
    e = config.eval
    return pipeline.EvalSpec(
        protocol=e.protocol,
        crop_size=config.input.crop_size,
        max_frames=e.max_frames,
        clip_length=e.clip_length,
        num_clips=e.num_clips,
        num_crops=e.num_crops,
        modality=config.modality,
        flow_scale=info.flow_scale,
    )


def make_eval_step(model, mesh, dtype):
    """jit `(variables, batch) -> (logits, label, index, view, mask)`, outputs replicated."""

    def step(variables, batch):
        x = pipeline.to_float(batch["video"], dtype)
        _, endpoints = model.apply(variables, x, train=False)
        logits = endpoints["Logits"].astype(jnp.float32)
        return logits, batch["label"], batch["index"], batch["view"], batch["mask"]

    return jax.jit(step, out_shardings=sharding.replicated(mesh))


def predict(config, model, variables, source, info, mesh, dtype=None) -> dict:
    """Logits of every real view on every process: numpy dict of `logits [N, C]`, `label`,
    `index`, `view` (padding removed, sorted by (index, view))."""
    from i3d_jax.train_lib import DTYPES

    dtype = dtype or DTYPES[config.model.dtype]
    spec = eval_spec(config, info)
    nproc = jax.process_count()
    max_videos = config.eval.max_videos or None
    ds = pipeline.eval_dataset(
        source,
        spec,
        config.eval.batch_size // nproc,
        num_threads=config.input.num_threads,
        num_workers=config.input.num_workers,
        prefetch=config.input.prefetch,
        max_videos=max_videos,
    )
    step = make_eval_step(model, mesh, dtype)
    parts: dict[str, list] = {k: [] for k in ("logits", "label", "index", "view", "mask")}
    for host in ds:
        batch = sharding.global_batch({k: host[k] for k in EVAL_KEYS}, mesh)
        out = jax.device_get(step(variables, batch))
        for k, v in zip(parts, out, strict=True):
            parts[k].append(np.asarray(v))
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    real = cat.pop("mask") > 0
    cat = {k: v[real] for k, v in cat.items()}
    order = np.lexsort((cat["view"], cat["index"]))
    return {k: v[order] for k, v in cat.items()}


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


def fuse(a: dict, b: dict, weights=(0.5, 0.5)) -> dict:
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


def summarize(preds: dict, num_classes: int, video: dict | None = None) -> dict:
    """Clip and video top-1/top-5, per-class video top-1 and the confusion matrix."""
    video = video if video is not None else video_logits(preds)
    labels, pred = video["label"], np.argmax(video["logits"], -1)
    if len(labels) and labels.max() >= num_classes:
        raise ValueError(
            f"eval data has label {labels.max()} but the model has {num_classes} classes"
        )
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, pred), 1)
    per_class = {
        int(c): float(confusion[c, c] / confusion[c].sum()) for c in range(num_classes)
        if confusion[c].sum()
    }  # fmt: skip
    out = {
        "video_top1": float(topk_correct(video["logits"], labels, 1).mean()),
        "video_top5": float(topk_correct(video["logits"], labels, 5).mean()),
        "num_videos": int(len(labels)),
        "per_class_top1": per_class,
        "confusion": confusion.tolist(),
    }
    if preds is not None:
        out["clip_top1"] = float(topk_correct(preds["logits"], preds["label"], 1).mean())
        out["clip_top5"] = float(topk_correct(preds["logits"], preds["label"], 5).mean())
        out["num_views"] = int(len(preds["label"]))
    return out


def _describe(config, info: pipeline.SourceInfo, checkpoint: str) -> dict:
    return {
        "protocol": config.eval.protocol
        + (
            ""
            if config.eval.protocol == "whole"
            else f" ({config.eval.num_clips} clips x {config.eval.num_crops} crops)"
        ),
        "checkpoint": checkpoint,
        "dataset": f"{info.name}:{config.dataset.eval_split}",
        "label_set": list(info.label_names),
        "modality": config.modality,
    }


def evaluate_state(config, setup, state, source, info, checkpoint: str = "") -> dict:
    """Evaluates a train state (during/after training)."""
    variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
    model = setup.model.clone(bn_axis_name=None)
    preds = predict(config, model, variables, source, info, setup.mesh)
    return {**summarize(preds, config.model.num_classes), **_describe(config, info, checkpoint)}


def scalar_results(results: dict) -> dict:
    keys = ("clip_top1", "clip_top5", "video_top1", "video_top5")
    return {k: results[k] for k in keys if k in results}


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
    """confusion.png and per_class.json beside results.json."""
    from i3d_jax import plots

    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    names = results.get("label_set") or [str(i) for i in range(len(results["confusion"]))]
    per_class = {
        names[int(c)] if int(c) < len(names) else str(c): v
        for c, v in results["per_class_top1"].items()
    }
    (outdir / "per_class.json").write_text(json.dumps(per_class, indent=2) + "\n")
    plots.plot_confusion(np.asarray(results["confusion"]), names, outdir / "confusion.png")


# ----------------------------------------------------------------------------- eval.py


def load_variables(config, checkpoint: str, model, mesh) -> tuple[dict, str]:
    """Variables from a workdir (its best, else latest checkpoint), an Orbax step directory, or a
    `load_pretrained` source. Returns (variables, description)."""
    from i3d_jax import train_lib

    path = pathlib.Path(checkpoint).absolute()
    if path.exists():
        import orbax.checkpoint as ocp

        candidates = []
        if (path / "best").is_dir() or (path / "checkpoints").is_dir():
            for sub in ("best", "checkpoints"):
                if (path / sub).is_dir():
                    m = ocp.CheckpointManager(path / sub)
                    step = m.best_step() if sub == "best" else m.latest_step()
                    if step is not None:
                        candidates.append((m, step, path / sub / str(step)))
                        break
        elif path.name.isdigit() and path.parent.is_dir():
            m = ocp.CheckpointManager(path.parent)
            candidates.append((m, int(path.name), path))
        if not candidates:
            raise FileNotFoundError(f"no checkpoint found under {str(path)!r}")
        m, step, where = candidates[0]
        tx, _ = train_lib.make_optimizer(config)
        _, shardings, abstract = _abstract_state(config, model, tx, mesh)
        state = train_lib.restore_checkpoint(m, step, abstract, shardings)
        return {"params": state["params"], "batch_stats": state["batch_stats"]}, str(where)
    from i3d_jax.weights import load_pretrained

    _, variables = load_pretrained(checkpoint)
    return dict(variables), checkpoint


def _abstract_state(config, model, tx, mesh):
    from i3d_jax import train_lib

    rng = jax.random.key(0)
    abstract_vars = jax.eval_shape(lambda r: train_lib.init_variables(config, model, r), rng)
    abstract = jax.eval_shape(lambda v: train_lib.new_state(v, tx), abstract_vars)
    return None, sharding.state_shardings(abstract, mesh, config.mesh.fsdp_min_size), abstract


def evaluate(config, workdir: str, checkpoint: str | None = None, out: str | None = None) -> dict:
    """eval.py: evaluates `checkpoint` (default: `workdir`), optionally fused with a second stream
    (`config.eval.fuse_with` + `config.eval.fuse_config`); writes results.json and reports."""
    from i3d_jax import train_lib

    train_lib.validate_config(config)
    mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp)
    source, info = pipeline.load_source(config.dataset, config.dataset.eval_split)
    model = train_lib.build_model(config)
    variables, where = load_variables(config, checkpoint or workdir, model, mesh)
    preds = predict(config, model, variables, source, info, mesh)
    results = {**summarize(preds, config.model.num_classes), **_describe(config, info, where)}
    if config.eval.fuse_with:
        other_cfg = (
            _load_config_file(config.eval.fuse_config) if config.eval.fuse_config else config
        )
        other_src, other_info = pipeline.load_source(
            other_cfg.dataset, other_cfg.dataset.eval_split
        )
        other_model = train_lib.build_model(other_cfg)
        other_vars, other_where = load_variables(
            other_cfg, config.eval.fuse_with, other_model, mesh
        )
        other = predict(other_cfg, other_model, other_vars, other_src, other_info, mesh)
        fused = fuse(video_logits(preds), video_logits(other), tuple(config.eval.fusion_weights))
        fused_res = summarize(None, config.model.num_classes, video=fused)
        other_name = other_cfg.modality
        if other_name == config.modality:
            other_name += "_2"
        results["streams"] = {
            config.modality: scalar_results(results),
            other_name: scalar_results(summarize(other, other_cfg.model.num_classes)),
        }
        results.update(
            {k: v for k, v in fused_res.items() if k != "num_videos"},
            clip_top1=None,
            clip_top5=None,
            protocol=results["protocol"] + " + late fusion",
            fusion_weights=list(config.eval.fusion_weights),
            checkpoint=[where, other_where],
        )
    out_path = pathlib.Path(out) if out else pathlib.Path(workdir) / "eval" / "results.json"
    if jax.process_index() == 0:
        write_results(out_path, results)
        write_reports(out_path.parent, results)
    return results


def _load_config_file(path: str) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("_fuse_config", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"config file {path!r} not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def format_summary(results: dict) -> str:
    """One human line per metric."""
    lines = [f"{results.get('dataset', '')} [{results.get('protocol', '')}]"]
    for k in ("clip_top1", "clip_top5", "video_top1", "video_top5"):
        if results.get(k) is not None:
            lines.append(f"  {k:11s} {100 * results[k]:6.2f}%")
    lines.append(f"  videos      {results.get('num_videos')}")
    return "\n".join(lines)
