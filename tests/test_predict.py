"""predict: the release's sample clip with the real Kinetics-400 weights, errors, chunking."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from videos import write_video

from i3d_jax import model, preprocess, samples
from i3d_jax.predict import classify
from i3d_jax.predict.cli import main as predict_main
from i3d_jax.weights import common, convert, orbax_dir


def test_sample_clip_is_playing_cricket(shared_data, tmp_path, capsys):
    # The shipped sample and the shipped Kinetics-400 names (used by default for these weights).
    assert (
        samples.CRICKET.read_bytes() == (shared_data / "v_CricketShot_g04_c01_rgb.gif").read_bytes()
    )
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    gif = samples.CRICKET
    code = predict_main(
        [
            str(gif),
            str(bad),
            str(tmp_path / "missing.mp4"),
            "--weights",
            "i3d-jax:kinetics400",
            "--top",
            "3",
            "--json",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1  # two of three videos failed
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(records) == 1
    rec = records[0]
    assert rec["frames"] == 79 and rec["video"].endswith("v_CricketShot_g04_c01_rgb.gif")
    assert rec["top"][0]["label"] == "playing cricket"
    assert rec["top"][0]["prob"] >= 0.98
    assert 15.0 < rec["top"][0]["logit"] < 22.0
    assert len(rec["top"]) == 3 and rec["top"][1]["prob"] < 0.02
    assert rec["logits_norm"] > 0
    assert "broken.mp4" in err and "missing.mp4" in err and "2 of 3 videos failed" in err


def test_chunks_average_per_time_logits(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (40, 48, 48, 3), dtype=np.uint8)
    path = tmp_path / "clip.mp4"
    write_video(path, frames)
    net = model.tiny(num_classes=4)
    variables = jax.jit(net.init)(jax.random.key(0), jnp.zeros((1, 16, 32, 32, 3)))
    whole = classify.Classifier(net, variables, short_side=None, crop=32, chunk=1000)
    chunked = classify.Classifier(net, variables, short_side=None, crop=32, chunk=16)
    logits_whole, n = whole(path)
    logits_chunked, n2 = chunked(path)
    assert n == n2 == 40
    # Chunks of 16, 16 and a tail of 8 (< 9, the minimum) merged into the second: 16 + 24.
    clip = preprocess.to_float(
        preprocess.center_crop(preprocess.load_video(path, short_side=None), 32)
    )[None]
    per_time = [
        np.asarray(jax.jit(net.apply)(variables, clip[:, a:b])[1]["Logits_per_time"][0])
        for a, b in ((0, 16), (16, 40))
    ]
    expected = np.concatenate(per_time).mean(0)
    np.testing.assert_allclose(logits_chunked, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        logits_whole,
        np.asarray(jax.jit(net.apply)(variables, clip)[1]["Logits"][0]),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A tiny 10-class RGB model (global pooling: any crop size) as a weights directory, and a
    short video."""
    d = tmp_path_factory.mktemp("tiny")
    net = model.tiny()
    orbax_dir.save(common.random_variables(net, seed=3), net, d / "tiny")
    rng = np.random.default_rng(1)
    write_video(d / "clip.mp4", rng.integers(0, 255, (12, 40, 40, 3), dtype=np.uint8))
    return d


def test_bad_weights_labels_and_chunks_are_errors_not_tracebacks(tiny_weights, capsys):
    # Findings 8 and 9: each of these used to end in a traceback or in a failure of every video.
    clip, weights = str(tiny_weights / "clip.mp4"), str(tiny_weights / "tiny")
    common_args = ["--short_side", "32", "--crop", "32"]
    cases = [
        (["--weights", str(tiny_weights / "missing.pt")], "missing.pt"),
        (["--weights", "i3d-jax:kinetics600"], "unknown weights name 'i3d-jax:kinetics600'"),
        (["--weights", weights, "--labels", "kinetics600"], "600 names, but the model has 10"),
        (["--weights", weights, "--labels", "no_such_labels.txt"], "label file not found"),
        (["--weights", weights, "--chunk", "4"], "chunk must be at least 9 frames"),
    ]
    for args, message in cases:
        assert predict_main([clip, *args, *common_args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err, (args, err)
    for bad in (["--chunk", "0"], ["--top", "0"], ["--short_side", "16"]):
        with pytest.raises(SystemExit) as exit_:
            predict_main([clip, "--weights", weights, *common_args, *bad])
        assert exit_.value.code == 2 and bad[0] in capsys.readouterr().err
    net = model.tiny()
    with pytest.raises(ValueError, match="at least 9 frames"):
        classify.Classifier(net, {}, chunk=8)
    assert classify.Classifier(net, {}, chunk=9).min_frames == 9


def test_labels_stored_by_convert_are_used(tiny_weights, tmp_path, capsys):
    names = [f"action {chr(97 + i)}" for i in range(10)]
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
    dest = tmp_path / "converted"
    src = str(tiny_weights / "tiny")
    assert convert.main([src, str(dest), "--labels", str(tmp_path / "names.txt")]) == 0
    (tmp_path / "names.txt").unlink()  # the names travel in the card, not by path
    clip = str(tiny_weights / "clip.mp4")
    args = [clip, "--weights", str(dest), "--short_side", "32", "--crop", "32", "--json"]
    assert predict_main(args) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [t["label"] for t in record["top"]] == [names[t["index"]] for t in record["top"]]
    assert predict_main([*args, "--labels", "kinetics400"]) == 2  # 400 names for 10 classes
