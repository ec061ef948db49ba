"""predict: the release's sample clip with the real Kinetics-400 weights, errors, chunking."""

import json

import jax
import jax.numpy as jnp
import numpy as np
from videos import write_video

from i3d_jax import model, predict


def test_sample_clip_is_playing_cricket(shared_data, tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    gif = shared_data / "v_CricketShot_g04_c01_rgb.gif"
    code = predict.main(
        [
            str(gif),
            str(bad),
            str(tmp_path / "missing.mp4"),
            "--weights",
            "i3d-jax:kinetics400",
            "--labels",
            str(shared_data / "kinetics400_labels.txt"),
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
    whole = predict.Classifier(net, variables, short_side=None, crop=32, chunk=1000)
    chunked = predict.Classifier(net, variables, short_side=None, crop=32, chunk=16)
    logits_whole, n = whole(path)
    logits_chunked, n2 = chunked(path)
    assert n == n2 == 40
    # Chunks of 16, 16 and a tail of 8 (< 9, the minimum) merged into the second: 16 + 24.
    clip = predict.preprocess.to_float(
        predict.preprocess.center_crop(predict.preprocess.load_video(path, short_side=None), 32)
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
