"""predict --head: a tiny head trained for a few steps on features of real videos classifies a
video with the same logits as the head over its training features; heads whose extraction
settings or width differ from what predict would extract are refused before any decoding."""

import json
import shutil

import jax
import numpy as np
import pytest
from test_heads import _config
from videos import write_video

from i3d_jax import extract_features as ef
from i3d_jax import model, sharding
from i3d_jax.data import feature_files
from i3d_jax.predict import cli as predict
from i3d_jax.training import loop
from i3d_jax.training.tasks import features
from i3d_jax.weights import common, orbax_dir

CONFIG = ef.ExtractConfig(window=16, stride=8, fps=25.0, short_side=32, crop_size=32, batch_size=4)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(workdir, weights dir, videos, training state): 2 videos per class, 4 training steps."""
    d = tmp_path_factory.mktemp("head")
    net = model.tiny()
    orbax_dir.save(common.random_variables(net, seed=5), net, d / "tiny")
    rng = np.random.default_rng(0)
    videos = {}
    for i in range(4):
        frames = rng.integers(0, 255, (30 + 8 * i, 40, 40, 3), dtype=np.uint8)
        videos[i] = d / "videos" / f"c{i % 2}" / f"v{i}.mp4"
        write_video(videos[i], frames)
    weights = ef.weights_identity(d / "tiny")  # what the CLI records
    nets = {"rgb": orbax_dir.load(d / "tiny")}
    for c in ("c0", "c1"):
        files = sorted((d / "videos" / c).glob("*.mp4"))
        result = ef.extract(files, d / "feats/train" / c, nets, CONFIG, weights, progress=False)
        assert len(result.written) == 2
    config = _config(d / "feats")
    config.batch_size = config.eval.batch_size = 4
    config.dataset.eval_split = ""
    out = loop.train_and_evaluate(
        config, d / "wd", mesh=sharding.make_mesh(devices=jax.devices()[:1])
    )
    return d / "wd", d, videos, out["state"]


def test_predict_head_equals_the_head_over_its_training_features(run, capsys):
    wd, d, videos, state = run
    (d / "bad.mp4").write_text("not a video")
    args = [str(videos[3]), str(d / "bad.mp4"), "--head", str(wd), "--json", "--top", "2"]
    assert predict.main(args) == 1  # one video failed, the other was classified
    out, err = capsys.readouterr()
    assert "error: " in err and "bad.mp4" in err and "1 of 2 videos failed" in err
    record = json.loads(out.strip().splitlines()[-1])
    ex = feature_files.read_feature_file(d / "feats/train/c1/v3.npz")
    assert record["video"] == str(videos[3]) and record["windows"] == len(ex["features"]) == 5
    c = _config(d / "feats")
    head = features.FeatureSequenceClassification(c).build_model()
    n = len(ex["features"])
    want = head.apply({"params": jax.device_get(state["params"])}, ex["features"][None],
                      np.ones((1, n), bool), ex["times"][None])[0][0]  # fmt: skip
    got = {t["label"]: t["logit"] for t in record["top"]}
    assert sorted(got) == ["c0", "c1"]  # the head's training classes
    np.testing.assert_allclose([got["c0"], got["c1"]], np.asarray(want), rtol=1e-5, atol=1e-5)
    assert abs(got["c0"] - got["c1"]) > 1e-4  # a real output, not a constant


def test_heads_with_other_settings_or_width_are_refused(run, tmp_path, capsys):
    wd, d, videos, _ = run
    video = str(videos[0])
    other = model.tiny()
    orbax_dir.save(common.random_variables(other, seed=6), other, tmp_path / "other")
    assert predict.main([video, "--head", str(wd), "--weights", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --head {wd}: its features were extracted with other settings")
    assert "weights '" in err and "other (" in err and "Traceback" not in err
    # the same settings, a head expecting another width
    narrow = tmp_path / "narrow"
    shutil.copytree(wd, narrow)
    card = json.loads((narrow / "data.json").read_text())  # what the run recorded of its data
    width = card["feature_dim"]
    card["feature_dim"] = 7
    (narrow / "data.json").write_text(json.dumps(card))
    assert predict.main([video, "--head", str(narrow)]) == 2
    err = capsys.readouterr().err
    assert (
        f"takes features of width 7; the weights ['{d / 'tiny'}'] give {width} at Mixed_5c" in err
    )
    # not a head's workdir; no weights and no head
    assert predict.main([video, "--head", str(tmp_path)]) == 2
    assert "no config.json (expected the workdir of a head" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        predict.main([video])
    assert "--weights is required (or --head)" in capsys.readouterr().err


def test_a_head_trained_from_a_tfds_build_reads_its_settings_from_the_metadata(run, tmp_path):
    from i3d_jax.data.feature_dataset import FeatureSequences
    from i3d_jax.predict import head as predict_head

    wd, d, _, _ = run
    b = FeatureSequences(folder=d / "feats", data_dir=tmp_path / "tfds")
    b.download_and_prepare()
    built = tmp_path / "built_run"
    shutil.copytree(wd, built)
    cfg = json.loads((built / "config.json").read_text())
    cfg["dataset"]["folder"], cfg["features"]["tfds_dir"] = "", str(b.data_dir)
    (built / "config.json").write_text(json.dumps(cfg))
    a = predict_head.load_run(built)  # dataset.folder is empty: only the build can answer
    assert a.label_names == ["c0", "c1"] and a.settings["window"] == 16
    assert a.fingerprint == ef.fingerprint(a.settings) and a.settings["stride"] == 8
    assert a.settings["weights"] == ef.weights_identity(d / "tiny")
