"""predict: the release's sample clip with the real Kinetics-400 weights, errors, chunking."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from videos import write_video

from i3d_jax import model, preprocess, samples, schedules
from i3d_jax.predict import classify, segments
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


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """A 300-frame video, a tiny 4-class network and the logits of one pass over all of it."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("long") / "clip.mp4"
    write_video(path, rng.integers(0, 255, (300, 40, 40, 3), dtype=np.uint8))
    net = model.tiny(num_classes=4)
    variables = jax.jit(net.init)(jax.random.key(0), jnp.zeros((1, 16, 32, 32, 3)))
    clip = preprocess.to_float(
        preprocess.center_crop(preprocess.load_video(path, short_side=None), 32)
    )[None]
    out = jax.jit(net.apply)(variables, clip)[1]
    return path, net, variables, np.asarray(out["Logits"][0]), np.asarray(out["Logits_per_time"][0])


@pytest.mark.parametrize("chunk", [16, 64, 256])
def test_any_chunk_gives_the_logits_of_one_pass_over_the_whole_video(long_clip, chunk):
    path, net, variables, whole, _ = long_clip
    classifier = classify.Classifier(net, variables, short_side=None, crop=32, chunk=chunk)
    logits, frames = classifier(path)
    assert frames == 300
    assert np.abs(logits - whole).max() < 1e-5 * max(1.0, np.abs(whole).max())
    assert classifier.compiled_programs == 1  # every pass has one length


def test_a_wrong_frame_estimate_is_corrected(long_clip, monkeypatch):
    """The plan's frame count comes from the packets; a wrong one is found and the video rerun."""
    path, net, variables, whole, _ = long_clip
    monkeypatch.setattr(preprocess, "expected_frames", lambda *a, **k: 297)
    logits, frames = classify.Classifier(net, variables, short_side=None, crop=32, chunk=16)(path)
    assert frames == 300
    np.testing.assert_allclose(logits, whole, rtol=1e-5, atol=1e-6)


def test_each_output_step_is_kept_once_from_passes_of_one_length():
    for schedule in schedules.SCHEDULES:
        for frames in (9, 40, 57, 200, 301, 302, 303, 1000):
            for chunk in (9, 16, 64, 256):
                g = segments.geometry(schedule, frames)
                plan = segments.plan(schedule, frames, chunk)
                kept = [t for s in plan for t in range(s.keep_from, s.keep_to)]
                assert kept == list(range(g.steps)), (schedule, frames, chunk)
                assert len({s.end - s.start for s in plan}) == 1
                for s in plan:
                    assert s.start % g.stride == 0 and 0 <= s.start < s.end <= frames
                    assert (s.end - s.start) % g.stride == frames % g.stride or len(plan) == 1
                    # every kept step's receptive field is inside the pass or past the video's end
                    lo = s.keep_from * g.stride - g.offset
                    hi = (s.keep_to - 1) * g.stride - g.offset + g.receptive_field
                    assert s.start <= max(lo, 0) and min(hi, frames) <= s.end


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


def test_a_folder_of_videos_is_classified_with_frame_progress(tiny_weights, tmp_path, capsys):
    """Finding 7: predict refused a directory that extract_features and fvd accept, and a long
    video showed no progress."""
    folder = tmp_path / "videos"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for name, n in (("a.mp4", 12), ("b.mp4", 20)):
        write_video(folder / name, rng.integers(0, 255, (n, 40, 40, 3), dtype=np.uint8))
    (folder / "notes.txt").write_text("not a video")
    weights = str(tiny_weights / "tiny")
    args = [str(folder), "--weights", weights, "--short_side", "32", "--crop", "32", "--json"]
    assert predict_main(args) == 0
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [pathlib.Path(r["video"]).name for r in records] == ["a.mp4", "b.mp4"]
    assert [r["frames"] for r in records] == [12, 20]
    # each video's bar shows its expected frames (the bar is removed once the video is done)
    assert "0/12" in err and "0/20" in err and "b.mp4" in err and "frame" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert predict_main([str(empty), "--weights", weights]) == 2
    assert "no video files" in capsys.readouterr().err


def test_videos_of_many_lengths_share_a_few_programs(long_clip, tmp_path):
    """Issue 25: predict compiled one program per video length; passes now have one length per
    residue of the video's length modulo the network's stride (8): at most 8 programs."""
    _, net, variables, _, _ = long_clip
    classifier = classify.Classifier(net, variables, short_side=None, crop=32, chunk=64)
    rng = np.random.default_rng(5)
    for n in (300, 308, 316, 301):
        path = tmp_path / f"v{n}.mp4"
        write_video(path, rng.integers(0, 255, (n, 40, 40, 3), dtype=np.uint8))
        assert classifier(path)[1] == n
    assert classifier.compiled_programs == 2  # 300, 308, 316 = 4 (mod 8); 301 = 5
