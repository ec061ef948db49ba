"""Evaluation metrics, view averaging, two-stream fusion, reports, and eval of a trained run."""

import json
import shutil

import numpy as np
import pytest
from multihost_worker import micro_config, micro_source

from i3d_jax import sharding
from i3d_jax.training import evaluate, evaluation
from i3d_jax.training.tasks import video


def test_topk_correct():
    logits = np.array([[0.1, 0.5, 0.2, 0.0, 0.9, 0.3], [3.0, 2.0, 1.0, 0.0, -1.0, -2.0]])
    labels = np.array([1, 5])
    np.testing.assert_array_equal(evaluation.topk_correct(logits, labels, 1), [False, False])
    np.testing.assert_array_equal(evaluation.topk_correct(logits, labels, 2), [True, False])
    np.testing.assert_array_equal(evaluation.topk_correct(logits, labels, 5), [True, False])
    np.testing.assert_array_equal(evaluation.topk_correct(logits, labels, 6), [True, True])


def _preds():
    # Video 0 (label 0): clip views vote 0, 1, 0 -> mean favours 0. Video 3 (label 2): 1 view.
    logits = np.array(
        [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.5, 0.4]], np.float32
    )
    return {
        "logits": logits,
        "label": np.array([0, 0, 0, 2]),
        "index": np.array([0, 0, 0, 3]),
        "view": np.array([0, 1, 2, 0]),
    }


def test_video_logits_average_views_and_summary_numbers():
    v = evaluation.video_logits(_preds())
    np.testing.assert_array_equal(v["index"], [0, 3])
    np.testing.assert_allclose(v["logits"][0], [4 / 3, 1 / 3, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(v["label"], [0, 2])
    r = evaluation.summarize(_preds(), 3)
    assert r["clip_top1"] == 0.5  # views: right, wrong, right, wrong
    assert r["clip_top5"] is None and r["video_top5"] is None  # 3 classes: always in the top 5
    assert r["video_top1"] == 0.5 and r["num_videos"] == 2 and r["num_views"] == 4
    assert r["confusion"] == [[1, 0, 0], [0, 0, 0], [0, 1, 0]]
    assert r["per_class_top1"] == {"0": 1.0, "2": 0.0}  # no names given: the index
    named = evaluation.summarize(_preds(), 3, label_names=("run", "jump", "swim"))
    assert named["per_class_top1"] == {"run": 1.0, "swim": 0.0}


def test_fusion_weights_and_mismatch():
    a = {
        "logits": np.array([[1.0, 0.0], [0.0, 1.0]]),
        "label": np.array([0, 0]),
        "index": np.array([4, 7]),
    }
    b = {
        "logits": np.array([[0.0, 3.0], [0.0, 0.0]]),
        "label": np.array([0, 0]),
        "index": np.array([7, 4]),
    }
    f = evaluation.fuse(a, b, (0.5, 0.5))
    np.testing.assert_allclose(f["logits"], [[0.5, 0.0], [0.0, 2.0]])  # matched by video index
    assert evaluation.summarize(None, 2, video=f)["video_top1"] == 0.5
    f = evaluation.fuse(a, b, (1.0, 0.0))
    np.testing.assert_allclose(f["logits"], a["logits"])
    with pytest.raises(ValueError, match="different videos"):
        evaluation.fuse(a, {**b, "index": np.array([7, 5])})


def test_evaluate_trained_run_writes_results_and_reports(micro_run, tmp_path, monkeypatch):
    workdir, res = micro_run
    results = json.loads((workdir / "eval" / "results.json").read_text())
    for key in ("clip_top1", "clip_top5", "video_top1", "video_top5", "protocol", "checkpoint",
                "dataset", "label_set"):  # fmt: skip
        assert key in results, key
    assert results["num_videos"] == 16 and results["label_set"] == ["a", "b", "c", "d"]
    assert results["video_top1"] == res["eval"]["video_top1"]
    assert results["checkpoint"] == str(workdir / "checkpoints" / "12")
    assert (workdir / "eval" / "confusion.png").stat().st_size > 1000
    assert (workdir / "metrics.png").stat().st_size > 1000
    # Multi-view evaluation of the same checkpoint, restored by eval.py's loader from a relative
    # workdir (Orbax itself needs absolute paths): 3 crops x 2 clips, variables only.
    shutil.copytree(workdir, tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    mv = micro_config(**{"eval.protocol": "multiview", "eval.num_clips": 2, "eval.num_crops": 3})
    mesh = sharding.make_mesh()
    task = video.VideoClassification(mv)
    model = task.build_model()
    variables, where = evaluate.load_variables(task, None, "run", model, mesh)
    assert where.endswith("best/12") and set(variables) == {"params", "batch_stats"}
    src, info = micro_source()
    preds = video.predict(mv, task.forward(model), variables, src, info, mesh)
    assert len(preds["label"]) == 16 * 6
    np.testing.assert_array_equal(np.bincount(preds["index"]), [6] * 16)
    r = evaluation.summarize(preds, 4)
    assert 0.0 <= r["clip_top1"] <= 1.0 and r["num_videos"] == 16
    # "whole" through the same path reproduces the training run's final numbers exactly.
    config = micro_config()
    whole = video.predict(config, task.forward(model), variables, src, info, mesh)
    assert evaluation.summarize(whole, 4)["video_top1"] == results["video_top1"]
