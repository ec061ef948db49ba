"""Temporal heads (`i3d_jax.heads`) and their task (`i3d_jax.training.tasks.features`): masking, batch
invariance, time positions, bad feature files, and a head trained through the loop on 8 devices
equal to 1 device. Tiny shapes: D = 5, N <= 16."""

import importlib
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from multihost_worker import ROOT

from configs.heads import tcn
from i3d_jax import heads, sharding
from i3d_jax.data import feature_files
from i3d_jax.extract_features import fingerprint
from i3d_jax.training import config as config_lib
from i3d_jax.training import evaluate, loop, task
from i3d_jax.training.tasks import features

D, K = 5, 3
SETTINGS = {"window": 16, "stride": 4, "fps": 25.0, "endpoint": "Mixed_5c"}


def _batch(lengths, n, seed=0, pad_value=50.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(lengths), n, D)).astype(np.float32)
    mask = np.arange(n)[None] < np.asarray(lengths)[:, None]
    x[~mask] = pad_value  # what the mask must hide
    times = np.broadcast_to(np.arange(n, dtype=np.float32) * 0.64 + 0.32, mask.shape)
    return x, mask, np.ascontiguousarray(times)


@pytest.fixture(scope="module", params=sorted(heads.HEADS))
def head(request):
    model = heads.build_head(request.param, K, **({} if request.param == "mean" else {"hidden": 8}))
    x, mask, times = _batch([16], 16)
    return (
        request.param,
        jax.jit(model.apply),
        jax.jit(model.init)(jax.random.key(1), x, mask, times),
    )


def test_padding_never_changes_a_prediction(head):
    name, apply, variables = head
    lengths = [16, 4, 9]
    x, mask, times = _batch(lengths, 16)
    video, window = apply(variables, x, mask, times)
    assert video.shape == (3, K) and window.shape == (3, 16, K)
    for i, n in list(enumerate(lengths))[1:]:  # the padded sequences alone, unpadded
        v1, w1 = apply(variables, x[i : i + 1, :n], mask[i : i + 1, :n], times[i : i + 1, :n])
        np.testing.assert_allclose(video[i], v1[0], atol=1e-5, err_msg=name)
        np.testing.assert_allclose(window[i, :n], w1[0], atol=1e-5, err_msg=name)
    assert np.abs(np.asarray(video[1] - video[2])).max() > 1e-3  # not a constant output
    x2, _, _ = _batch(lengths, 16, pad_value=-7.0)  # other padding values: the same outputs
    np.testing.assert_allclose(apply(variables, x2, mask, times)[0], video, atol=1e-5)


def test_a_sequence_does_not_depend_on_its_batch(head):
    name, apply, variables = head
    x, mask, times = _batch([12, 5, 16, 8], 16, seed=3)
    other, omask, otimes = _batch([16, 3, 10, 7], 16, seed=4)
    alone = apply(variables, x, mask, times)[0]
    mixed = apply(
        variables,
        np.concatenate([other[:2], x[1:2], other[2:]]),
        np.concatenate([omask[:2], mask[1:2], omask[2:]]),
        np.concatenate([otimes[:2], times[1:2], otimes[2:]]),
    )[0]
    np.testing.assert_allclose(mixed[2], alone[1], atol=1e-5, err_msg=name)


def _write(path, n, dim=D, settings=SETTINGS, shift=0.0, stride=4, seed=0, fps=25.0):
    """An extract_features-style file: features [n, 1, dim], timestamps [n, 2] in seconds."""
    rng = np.random.default_rng(seed)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    start = np.arange(n) * stride / fps
    np.savez(
        path,
        features=(rng.normal(size=(n, 1, dim)) + shift).astype(np.float32),
        timestamps=np.stack([start, start + settings["window"] / fps], 1),
        settings=json.dumps(settings, sort_keys=True),
        settings_fingerprint=fingerprint(settings),
    )
    return path


def test_time_positions_line_up_across_strides(tmp_path):
    """The same video at stride 4 and 8: window j at stride 8 starts where window 2j at stride 4
    does; their times (window centres, seconds) and encodings are equal, unlike by index."""
    s4 = feature_files.read_feature_file(_write(tmp_path / "s4.npz", 20, stride=4))
    s8 = feature_files.read_feature_file(_write(tmp_path / "s8.npz", 10, stride=8))
    np.testing.assert_allclose(s4["times"][:3], [0.32, 0.48, 0.64], rtol=1e-6)  # (4i + 8) / 25
    np.testing.assert_allclose(s8["times"], s4["times"][::2], rtol=1e-6)
    e4 = heads.time_encoding(s4["times"], 16)
    e8 = heads.time_encoding(s8["times"], 16)
    np.testing.assert_allclose(e8, e4[::2], atol=1e-6)
    assert np.abs(np.asarray(e8[1] - e4[1])).max() > 0.1  # the same index, another time


def test_bad_files_are_skipped_with_their_reason_and_counted(tmp_path, capsys):
    root = tmp_path / "feats"
    _write(root / "train/a/good.npz", 6)
    _write(root / "train/b/good2.npz", 3)
    _write(root / "train/a/wide.npz", 6, dim=D + 2)
    _write(root / "train/b/empty.npz", 0)
    _write(root / "train/unlabelled.npz", 4)
    items = feature_files.folder_items(root, "train")
    out = feature_files.scan(items, ("a", "b"))
    assert sorted(pathlib.Path(e["path"]).name for e in out.examples) == ["good.npz", "good2.npz"]
    assert [int(e["label"]) for e in out.examples] == [0, 1]
    msgs = out.skipped  # in scan order: the split folder's own files, then class by class
    assert len(msgs) == 3
    assert "unlabelled.npz: no label (expected the file in a class folder" in msgs[0]
    assert "wide.npz: features of width 7; expected 5" in msgs[1]
    assert "empty.npz: an empty sequence (0 windows); expected at least 1" in msgs[2]
    assert "skipped 3 of 5 feature files" in capsys.readouterr().out
    # the CSV layout: a row without a label, a label not in the class list
    (root / "list.csv").write_text(
        "path,label,split\ntrain/a/good.npz,a,train\ntrain/b/good2.npz,,train\n"
        "train/a/good.npz,zebra,train\ntrain/a/good.npz,a,validation\n"
    )
    out = feature_files.scan(feature_files.csv_items(root / "list.csv", "train"), ("a", "b"))
    assert len(out.examples) == 1 and len(out.skipped) == 2
    assert "good2.npz: no label" in out.skipped[0]
    assert "label 'zebra' is not one of ['a', 'b']" in out.skipped[1]


def test_mixed_extraction_settings_are_refused_naming_both_files(tmp_path):
    root = tmp_path / "feats"
    first = _write(root / "train/a/v1.npz", 5)
    other = _write(root / "train/b/v2.npz", 5, settings={**SETTINGS, "stride": 16})
    with pytest.raises(ValueError) as e:
        feature_files.scan(feature_files.folder_items(root, "train"), ("a", "b"))
    assert f"{other} was extracted with other settings than {first} (stride 4 -> 16)" in str(
        e.value
    )
    # through train.py: `error: ...`, exit 1, no traceback
    cmd = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs/heads/mean.py"),
           "--workdir", str(tmp_path / "run"), f"--config.dataset.folder={root}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith(f"error: {other} was extracted with other settings")


def _dataset(root, n_train=16, n_eval=8):
    for split, n in (("train", n_train), ("validation", n_eval)):
        for i in range(n):
            c = i % 2
            _write(root / split / f"c{c}" / f"v{i}.npz", 4 + i % 9, shift=c - 0.5, seed=i)
    return root


def _config(root):
    c = tcn.get_config()
    c.dataset.folder = str(root)
    c.model.num_classes = 2
    c.batch_size = 8
    c.num_train_steps = 4
    c.features.max_windows = 8
    c.features.feature_dropout = 0.2  # numpy, in the pipeline: the same on any mesh
    c.head.hidden = 8
    c.head.num_layers = 2
    c.head.dropout_rate = 0.0
    c.eval.batch_size = 8
    c.lr.warmup_steps = 0
    c.lr.base = 1e-2
    c.checkpoint.every_steps = 4
    c.log_every_steps = 1
    c.progress = False
    return c


def test_a_head_trains_the_same_on_8_devices_as_on_1(tmp_path):
    root = _dataset(tmp_path / "feats")
    one = loop.train_and_evaluate(
        _config(root), tmp_path / "one", mesh=sharding.make_mesh(devices=jax.devices()[:1])
    )
    eight = loop.train_and_evaluate(_config(root), tmp_path / "eight")
    assert len(jax.devices()) == 8
    assert eight["state"]["params"]["Input"]["kernel"].sharding.mesh.size == 8
    np.testing.assert_allclose(eight["final_loss"], one["final_loss"], rtol=1e-5)
    p1, p8 = jax.device_get(one["state"]["params"]), jax.device_get(eight["state"]["params"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), p1, p8)
    rows = [json.loads(r) for r in (tmp_path / "one/metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 4 and losses[-1] < losses[0]
    r1, r8 = one["eval"], eight["eval"]
    assert r1["num_videos"] == r8["num_videos"] == 8 and r1["video_top1"] == r8["video_top1"]
    assert r1["protocol"] == "whole feature sequence, head tcn"
    saved = json.loads((tmp_path / "eight/eval/results.json").read_text())
    assert saved["video_top1"] == r8["video_top1"] and saved["settings_fingerprint"]
    # stopped after 2 steps, then resumed (state and data iterator from the checkpoint)
    loop.train_and_evaluate(_config(root), tmp_path / "resumed", stop_after=2)
    resumed = loop.train_and_evaluate(_config(root), tmp_path / "resumed")
    assert resumed["steps"] == 4 and resumed["eval"]["video_top1"] == r8["video_top1"]
    pr = jax.device_get(resumed["state"]["params"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), pr, p8)
    # eval.py's unit on the workdir: the best checkpoint, the same numbers
    again = evaluate.evaluate(_config(root), tmp_path / "eight", out=str(tmp_path / "ev.json"))
    assert again["video_top1"] == r8["video_top1"] and again["num_videos"] == 8
    assert again["checkpoint"] == str(tmp_path / "eight/best/4")


@pytest.mark.parametrize("name", ["temporal_head", "heads.mean", "heads.tcn", "heads.transformer",
                                  "heads.lstm"])  # fmt: skip
def test_head_configs_are_valid(name):
    c = importlib.import_module(f"configs.{name}").get_config()
    config_lib.validate_config(c)
    assert c.task == "features"
    model = features.FeatureSequenceClassification(c).build_model()
    assert model.name is None and type(model) is heads.HEADS[c.head.name]


def test_unknown_task_and_head_options_are_named():
    c = tcn.get_config()
    c.task = "audio"
    with pytest.raises(
        ValueError, match=r"config.task='audio' is not one of \['features', 'multilabel', 'video'\]"
    ):
        task.task_for(c)
    with pytest.raises(ValueError, match=r"head 'mean' has no option \['hidden'\]"):
        heads.build_head("mean", 2, hidden=3)
    with pytest.raises(ValueError, match=r"unknown head 'gru'"):
        heads.build_head("gru", 2)
    c = tcn.get_config()
    c.eval.fuse_with = "other_run"
    with pytest.raises(ValueError, match=r"late fusion is for two video streams"):
        evaluate.evaluate(c, "unused")


def test_tfds_builder_packs_the_folder_records_settings_and_refuses_a_mix(tmp_path):
    from i3d_jax.data.feature_dataset import FeatureSequences

    root = _dataset(tmp_path / "feats", n_train=6, n_eval=4)
    _write(root / "train/c1/wide.npz", 5, dim=D + 1)
    b = FeatureSequences(folder=root, data_dir=tmp_path / "tfds")
    b.download_and_prepare()
    meta = b.info.metadata
    assert meta["settings"] == SETTINGS and meta["settings_fingerprint"] == fingerprint(SETTINGS)
    assert meta["skipped"] == {"train": 1, "validation": 0}
    c = _config(root)
    from_folder = features.load_data(c)
    c.features.tfds_dir = b.data_dir
    built = features.load_data(c)
    assert built.label_names == from_folder.label_names == ("c0", "c1") and built.feature_dim == D
    for mine, ref in ((built.train, from_folder.train), (built.eval, from_folder.eval)):
        assert [e["path"] for e in mine.examples] == [e["path"] for e in ref.examples]
        for a, r in zip(mine.examples, ref.examples, strict=True):
            np.testing.assert_array_equal(a["features"], r["features"])
            np.testing.assert_array_equal(a["times"], r["times"])
            assert a["label"] == r["label"]
    assert len(built.train.examples) == 6 and built.train.fingerprint == fingerprint(SETTINGS)
    other = _write(root / "validation/c0/late.npz", 5, settings={**SETTINGS, "fps": 30.0})
    with pytest.raises(ValueError, match=rf"{other} was extracted with other settings than .*"
                       r"\(fps 25.0 -> 30.0\)"):  # fmt: skip
        FeatureSequences(folder=root, data_dir=tmp_path / "tfds2").download_and_prepare()


def _order_task(root, n_train=128, n_eval=64, n=24, seed=0):
    """Two events (feature 0 up, feature 1 up) at least 10 windows apart; the label is their order:
    the same multiset of windows either way, so a mean over windows cannot tell them apart."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", n_train), ("validation", n_eval)):
        for i in range(count):
            order = i % 2
            x = rng.normal(0, 0.3, (n, 1, D)).astype(np.float32)
            a = int(rng.integers(0, 6))
            b = int(rng.integers(a + 10, n))
            x[a, 0, order] += 3.0
            x[b, 0, 1 - order] += 3.0
            start = np.arange(n) * 4 / 25.0
            path = root / split / f"order{order}" / f"v{i}.npz"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, features=x, timestamps=np.stack([start, start + 16 / 25], 1),
                     settings=json.dumps(SETTINGS), settings_fingerprint=fingerprint(SETTINGS))  # fmt: skip
    return root


def test_order_of_distant_events_needs_a_temporal_head(tmp_path):
    """Measured (2-core CPU, 150 steps): mean 0.45, tcn 1.0, transformer 0.98, lstm 0.98."""
    root = _order_task(tmp_path / "feats")
    top1 = {}
    for name in ("mean", "tcn"):
        c = importlib.import_module(f"configs.heads.{name}").get_config()
        c.dataset.folder = str(root)
        c.model.num_classes = 2
        c.batch_size, c.num_train_steps, c.eval.batch_size = 16, 150, 64
        c.features.max_windows = 24
        c.head.hidden, c.head.num_layers, c.head.dropout_rate = 16, 4, 0.0
        c.lr.warmup_steps, c.lr.base = 10, 3e-3
        c.eval_every_steps, c.log_every_steps, c.progress = 0, 50, False
        top1[name] = loop.train_and_evaluate(c, tmp_path / name)["eval"]["video_top1"]
    assert top1["mean"] <= 0.65 and top1["tcn"] >= 0.95, top1
