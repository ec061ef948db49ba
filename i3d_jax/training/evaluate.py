"""`eval.py`'s unit: evaluate a checkpoint (a workdir's best, else latest; an Orbax step
directory; or a `load_pretrained` source), optionally fused with a second stream, and write
`results.json` and the reports. Never imports the training loop."""

from __future__ import annotations

import functools
import os
import pathlib
from typing import Any

import flax.linen as nn
import jax
import ml_collections
from jax.sharding import Mesh

from i3d_jax import sharding
from i3d_jax.cli import UsageError, message
from i3d_jax.data import pipeline
from i3d_jax.training import checkpoints, evaluation
from i3d_jax.training.config import (
    load_config_file,
    parse_assignment,
    validate_config,
    with_overrides,
)
from i3d_jax.training.task import Task, task_for
from i3d_jax.training.tasks import video
from i3d_jax.weights import load_pretrained

FUSED = "fused"  # the fusion's entry in results["streams"], beside each stream's modality


def load_variables(
    task: Task, data: Any, checkpoint: str | os.PathLike, model: nn.Module, mesh: Mesh
) -> tuple[dict, str]:
    """(variables placed on `mesh`, where they came from). `checkpoint`: a workdir (its best,
    else latest checkpoint), an Orbax step directory, or a `load_pretrained` source."""
    if pathlib.Path(checkpoint).exists():
        found = checkpoints.find(checkpoint)
        if found is None:
            raise FileNotFoundError(f"no checkpoint found under {str(checkpoint)!r}")
        mngr, step, where = found
        init_fn = functools.partial(task.init_variables, model, data)
        abstract = jax.eval_shape(init_fn, jax.random.key(0, impl="rbg"))
        shardings = sharding.state_shardings(abstract, mesh, task.config.mesh.fsdp_min_size)
        return checkpoints.restore_variables(mngr, step, abstract, shardings), str(where)
    _, variables = load_pretrained(str(checkpoint))
    return dict(variables), str(checkpoint)


def evaluate_stream(
    config: ml_collections.ConfigDict, checkpoint: str | os.PathLike, mesh: Mesh
) -> tuple[dict, dict, str]:
    """(predictions, results, where) of one video stream on its config's eval split."""
    source, info = pipeline.load_source(config.dataset, config.dataset.eval_split)
    video.check_data(config, info)
    task = video.VideoClassification(config)
    model = task.build_model()
    variables, where = load_variables(task, None, checkpoint, model, mesh)
    preds = task.predict(model, variables, mesh, source, info)
    summary = evaluation.summarize(preds, config.model.num_classes, label_names=info.label_names)
    return preds, {**summary, **video.describe(config, info, where)}, where


def second_stream_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The second stream's config: `eval.fuse_config` (a file; default this config) with the
    `eval.fuse_overrides` assignments (`field=value; ...`, typed as the fields) applied."""
    try:
        other = load_config_file(config.eval.fuse_config) if config.eval.fuse_config else config
        return with_overrides(other, fuse_overrides(config.eval.fuse_overrides, other))
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(message(e)) from e


def fuse_overrides(text: str, other: ml_collections.ConfigDict) -> list[tuple[str, Any]]:
    """`[(field, value)]` of `"a.b=1; c=x"` (";" or newlines between assignments); ValueError
    naming `config.eval.fuse_overrides` and the bad assignment."""
    out = []
    for part in (p.strip() for p in text.replace("\n", ";").split(";")):
        if not part:
            continue
        try:
            out.append(parse_assignment(part, other, many=False))
        except ValueError as e:
            raise ValueError(f"config.eval.fuse_overrides: {e}") from None
    return out


def evaluate_task(
    config: ml_collections.ConfigDict, checkpoint: str | os.PathLike, mesh: Mesh
) -> dict:
    """Results of any other task (e.g. a temporal head, `config.task = "features"`)."""
    if config.eval.fuse_with:
        why = (
            " (a temporal head takes both streams' features at once: extract_features --stream "
            "both)"
            if config.task == "features"
            else ""
        )
        raise ValueError(
            f"config.eval.fuse_with: late fusion is for two video streams, not task "
            f"{config.task!r}{why}"
        )
    task = task_for(config)
    data = task.data()
    model = task.build_model()
    variables, where = load_variables(task, data, checkpoint, model, mesh)
    results = task.evaluate(model, variables, mesh, data, where)
    if results is None:
        raise ValueError(f"no evaluation data in split {config.dataset.eval_split!r}")
    return results


def evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    checkpoint: str | None = None,
    out: str | None = None,
    fuse_config: ml_collections.ConfigDict | None = None,
) -> dict:
    """Evaluates `checkpoint` (default: `workdir`), optionally fused with a second stream
    (`config.eval.fuse_with` + `config.eval.fuse_config` and `eval.fuse_overrides`, or the
    config itself as `fuse_config`); writes results.json (with `streams`: each stream and the
    fusion side by side) and reports. Both configs are checked before any work (`UsageError`)."""
    validate_config(config)
    other_cfg = None
    if config.eval.fuse_with:
        other_cfg = fuse_config if fuse_config is not None else second_stream_config(config)
        try:
            validate_config(other_cfg)
        except ValueError as e:
            raise UsageError(f"the second stream's config (eval.fuse_config): {e}") from e
    mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp)
    if config.get("task", "video") != "video":
        results = evaluate_task(config, checkpoint or workdir, mesh)
    else:
        preds, results, where = evaluate_stream(config, checkpoint or workdir, mesh)
    if other_cfg is not None:
        other, other_res, other_where = evaluate_stream(other_cfg, config.eval.fuse_with, mesh)
        _fuse_into(results, config, other_cfg, preds, other, other_res, [where, other_where])
    out_path = pathlib.Path(out) if out else checkpoints.Workdir.at(workdir).results
    if jax.process_index() == 0:
        evaluation.write_results(out_path, results)
        task_for(config).write_reports(out_path.parent, results)
    return results


def _fuse_into(
    results: dict, config, other_cfg, preds: dict, other: dict, other_res: dict, where: list
) -> None:
    """The late fusion of two streams' predictions into `results` (with `streams`)."""
    weights = tuple(config.eval.fusion_weights)
    fused = evaluation.fuse(evaluation.video_logits(preds), evaluation.video_logits(other), weights)
    fused_res = evaluation.summarize(
        None, config.model.num_classes, video=fused, label_names=results.get("label_set")
    )
    other_name = other_cfg.modality + ("_2" if other_cfg.modality == config.modality else "")
    results["streams"] = {
        config.modality: evaluation.scalar_results(results),
        other_name: evaluation.scalar_results(other_res),
        FUSED: evaluation.scalar_results(fused_res),
    }
    results.update(
        {k: v for k, v in fused_res.items() if k != "num_videos"},
        clip_top1=None,
        clip_top5=None,
        protocol=results["protocol"] + " + late fusion",
        fusion_weights=list(weights),
        checkpoint=where,
    )


def format_streams(results: dict) -> str:
    """results["streams"] (each stream and the fusion) as a small table; "" without fusion."""
    streams = results.get("streams")
    if not streams:
        return ""
    cols = ("clip_top1", "video_top1", "video_top5")
    lines = [f"{'stream':8s}" + "".join(f"{c.replace('_top', ' top-'):>13s}" for c in cols)]
    for name, res in streams.items():
        cells = (
            f"{100 * res[c]:12.2f}%" if res.get(c) is not None else f"{'-':>13s}" for c in cols
        )
        lines.append(f"{name:8s}" + "".join(cells))
    return "\n".join(lines)
