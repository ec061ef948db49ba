"""Sliding-window feature extraction: windows, timestamps, numbers, batching, resume, bad files."""

import functools
import json

import av
import jax
import numpy as np
import pytest

from i3d_jax import clips, model, preprocess
from i3d_jax import extract_features as ef
from i3d_jax.extract_features import writer
from i3d_jax.extract_features.cli import main as extract_main
from i3d_jax.weights import common

W_, S_ = 16, 8  # window, stride (frames)
CONFIG = dict(window=W_, stride=S_, fps=25.0, short_side=40, crop_size=32, batch_size=3)


def write_video(path, num_frames: int, seed: int = 0, fps: int = 25) -> None:
    """An mpeg4 video of `num_frames` 56x40 frames of moving smooth noise."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 255, (40, 96, 3))
    base = (base + np.roll(base, 1, 0) + np.roll(base, 1, 1) + np.roll(base, 1, (0, 1))) / 4
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 56, 40, "yuv420p"
        stream.options = {"qscale": "2"}
        for t in range(num_frames):
            img = base[:, t % 40 : t % 40 + 56].astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def net():
    m = model.tiny()
    return m, common.random_variables(m, seed=1)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    write_video(d / "long.mp4", 50, seed=0)  # 2.0 s at 25 fps
    write_video(d / "short.mp4", 10, seed=1)  # 0.4 s: shorter than a window, looped
    return d


def test_streamed_windows_equal_window_starts():
    # The streaming cutter gives exactly clips.window_starts' windows, for any chunking.
    frames = np.arange(50)
    for n, chunk, (w, st) in [(50, 7, (16, 8)), (50, 50, (16, 8)), (16, 3, (16, 8)),
                              (10, 4, (16, 8)), (50, 5, (4, 11)), (1, 1, (16, 8))]:  # fmt: skip
        cut = clips.Windows(w, st)
        got = []
        for a in range(0, n, chunk):
            got += [(s, x["f"].tolist()) for s, x in cut.push({"f": frames[a : min(a + chunk, n)]})]
            assert len(cut.buffers["f"]) < w + chunk  # bounded, whatever the length
        got += [(s, x["f"].tolist()) for s, x in cut.finish()]
        want = [(s, clips.window_indices(n, s, w).tolist()) for s in clips.window_starts(n, w, st)]
        assert got == want, (n, chunk, w, st)


def _direct(net, frames, start, box, endpoint="Mixed_4f"):
    """The endpoint of one window and crop, computed without the extractor, pooled."""
    m, variables = net
    x = preprocess.to_float(frames)[clips.window_indices(len(frames), start, W_)]
    x = clips.crop(x, box, 32)
    out = _jit_endpoint(m.clone(final_endpoint=endpoint))(variables, x[None])
    return np.asarray(out).mean(axis=(1, 2, 3))[0]


@functools.cache
def _jit_endpoint(m):
    return jax.jit(lambda v, x: m.apply(v, x)[0])


def test_shapes_timestamps_and_values(net, videos, tmp_path):
    config = ef.ExtractConfig(endpoint="Mixed_4f", crops="three", **CONFIG)
    files = ef.list_videos(videos)
    result = ef.extract(files, tmp_path, {"rgb": net}, config, "tiny-random", progress=False)
    assert sorted(result.written) == ["long.mp4", "short.mp4"] and not result.failed

    with np.load(tmp_path / "long.npz") as z:
        feats, stamps = z["features"], z["timestamps"]
        assert str(z["endpoint"]) == "Mixed_4f" and str(z["weights"]) == "tiny-random"
        meta = json.loads(str(z["preprocessing"]))
    assert meta["window"] == W_ and meta["crops"] == "three" and meta["fps"] == 25.0
    c = dict(net[0].channels)["Mixed_4f"]
    assert feats.shape == (5, 3, sum((c[0], c[2], c[4], c[5]))) and feats.dtype == np.float32
    expected = [[0.0, 0.64], [0.32, 0.96], [0.64, 1.28], [0.96, 1.6], [1.28, 1.92]]
    np.testing.assert_allclose(stamps, expected, atol=1e-9)

    # Windows of both videos shared batches of 3 (5*3 + 1*3 crops): values equal a direct run.
    frames = preprocess.load_video(videos / "long.mp4", fps=25, short_side=40)
    assert frames.shape == (50, 40, 56, 3)
    boxes = clips.crop_boxes(40, 56, 32, "three")
    for w, k in [(0, 0), (3, 2), (4, 1)]:
        np.testing.assert_allclose(
            feats[w, k], _direct(net, frames, 8 * w, boxes[k]), rtol=1e-4, atol=1e-5
        )
    assert np.abs(feats[0, 0] - feats[1, 0]).max() > 1e-3  # windows differ

    with np.load(tmp_path / "short.npz") as z:
        short, short_stamps = z["features"], z["timestamps"]
    np.testing.assert_allclose(short_stamps, [[0.0, 0.4]])
    short_frames = preprocess.load_video(videos / "short.mp4", fps=25, short_side=40)
    assert len(short_frames) == 10
    np.testing.assert_allclose(short[0, 1], _direct(net, short_frames, 0, boxes[1]), rtol=1e-4,
                               atol=1e-5)  # fmt: skip


def test_unpooled_logits_per_time(net, videos, tmp_path, capsys):
    config = ef.ExtractConfig(endpoint="Logits_per_time", pooled=False, **CONFIG)
    ef.extract([videos / "long.mp4"], tmp_path, {"rgb": net}, config, progress=False)
    pooled = ef.ExtractConfig(endpoint="Logits", **CONFIG)
    ef.extract([videos / "long.mp4"], tmp_path / "p", {"rgb": net}, pooled, progress=True)
    # Finding 10: the bar counts crops per batch (5 windows x 1 crop; batches of 3), not videos.
    bar = capsys.readouterr().err.replace("\r", "\n")
    assert "3/5" in bar and "5/5" in bar and "long.mp4: 50 frames decoded" in bar
    with np.load(tmp_path / "long.npz") as z, np.load(tmp_path / "p" / "long.npz") as p:
        per_time, logits = z["features"], p["features"]
    assert per_time.shape[:2] == (5, 1) and per_time.shape[-1] == 10 and per_time.ndim == 4
    np.testing.assert_allclose(per_time.mean(axis=2), logits, rtol=1e-5, atol=1e-6)


def test_resume_after_interrupt_and_bad_file(net, videos, tmp_path, monkeypatch, capsys):
    from i3d_jax.weights import orbax_dir

    orbax_dir.save(net[1], net[0], tmp_path / "weights")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("long.mp4", "short.mp4"):
        (inputs / name).write_bytes((videos / name).read_bytes())
    (inputs / "broken.mp4").write_bytes(b"not a video at all" * 10)
    write_video(inputs / "zlast.mp4", 20, seed=2)
    out = tmp_path / "out"
    argv = [str(inputs), "--weights", str(tmp_path / "weights"), "--out", str(out),
            "--endpoint", "Mixed_4f", "--window", "16", "--stride", "8", "--short-side", "40",
            "--crop-size", "32", "--batch-size", "3", "--no-progress"]  # fmt: skip

    real_write = writer.write_atomic
    writes = []

    def interrupted(dest, arrays):
        if writes:  # the second video's write is where the run gets killed
            raise KeyboardInterrupt
        writes.append(dest.name)
        real_write(dest, arrays)

    monkeypatch.setattr(writer, "write_atomic", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract_main(argv)
    assert sorted(p.name for p in out.iterdir()) == [writes[0]]
    first = out / writes[0]
    mtime, content = first.stat().st_mtime_ns, first.read_bytes()

    monkeypatch.setattr(writer, "write_atomic", real_write)
    assert extract_main(argv) == 1  # the broken file makes the exit status non-zero
    captured = capsys.readouterr()
    assert "wrote 2, skipped 1 already done, failed 1" in captured.out
    assert "broken.mp4" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["long.npz", "short.npz", "zlast.npz"]
    assert first.stat().st_mtime_ns == mtime and first.read_bytes() == content
    with np.load(out / "zlast.npz") as z:
        assert z["features"].shape[:2] == (1, 1)  # 20 frames, window 16, stride 8: one window
        np.testing.assert_allclose(z["timestamps"], [[0.0, 0.64]])


def test_both_streams_with_injected_flow(net, videos, tmp_path, capsys):
    flow_net = model.tiny(input_channels=2)
    flow_vars = common.random_variables(flow_net, seed=2)
    calls = []

    def fake_flow(frames):  # a constant 4-px rightward motion, [T-1, H, W, 2]
        calls.append(frames.shape)
        return np.broadcast_to(np.float32([4.0, 0.0]), (len(frames) - 1, *frames.shape[1:3], 2))

    config = ef.ExtractConfig(endpoint="Logits", crops="ten", **CONFIG)
    streams = {"rgb": net, "flow": (flow_net, flow_vars)}
    ids = {"rgb": "a", "flow": "b"}
    ef.extract([videos / "long.mp4"], tmp_path, streams, config, ids, fake_flow, progress=True)
    assert sum(c[0] - 1 for c in calls) == 49  # flow of every pair, in chunks
    # Finding 7: the bar sat at 0/N while flow ran; it now says which pairs are computed.
    assert "long.mp4: TV-L1 flow of pairs 1-" in capsys.readouterr().err
    assert all(c[1:] == (40, 56, 3) for c in calls)
    with np.load(tmp_path / "long.npz") as z:
        both, rgb, flow = z["features"], z["features_rgb"], z["features_flow"]
        assert str(z["stream"]) == "both" and json.loads(str(z["weights"])) == ids
        assert len(z["timestamps"]) == 5  # windows on the 49 flow frames
    assert both.shape == (5, 10, 20)
    np.testing.assert_array_equal(both, np.concatenate([rgb, flow], axis=-1))
    # The flipped centre crop of a uniform +x flow sees -x flow: the input is 0.2 / -0.2.
    x = np.full((1, W_, 32, 32, 2), [0.2, 0.0], np.float32)
    logits = _jit_endpoint(flow_net)(flow_vars, np.concatenate([x, x * np.float32([-1, 1])]))
    np.testing.assert_allclose(flow[0, 4], np.asarray(logits)[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(flow[0, 9], np.asarray(logits)[1], rtol=1e-4, atol=1e-5)
    assert np.abs(flow[0, 4] - flow[0, 9]).max() > 1e-4


def test_other_settings_are_recomputed_or_refused(net, videos, tmp_path):
    # Finding 5: a rerun with another endpoint used to report "skipped" and keep old features.
    short = [videos / "short.mp4"]
    first = ef.ExtractConfig(endpoint="Mixed_4f", **CONFIG)
    ef.extract(short, tmp_path, {"rgb": net}, first, "w", progress=False)
    with np.load(tmp_path / "short.npz") as z:
        c = dict(net[0].channels)["Mixed_4f"]
        assert z["features"].shape == (1, 1, sum((c[0], c[2], c[4], c[5])))
        old_fp = str(z["settings_fingerprint"])
        assert json.loads(str(z["settings"]))["endpoint"] == "Mixed_4f"
    assert ef.extract(short, tmp_path, {"rgb": net}, first, "w", progress=False).skipped == [
        "short.mp4"
    ]

    other = ef.ExtractConfig(endpoint="Logits", **CONFIG)
    content = (tmp_path / "short.npz").read_bytes()
    logs = []
    refused = ef.extract(short, tmp_path, {"rgb": net}, other, "w", progress=False,
                         log=logs.append, on_mismatch="refuse")  # fmt: skip
    assert [n for n, _ in refused.failed] == ["short.mp4"] and not refused.written
    assert "endpoint 'Mixed_4f' -> 'Logits'" in refused.failed[0][1]
    assert (tmp_path / "short.npz").read_bytes() == content

    again = ef.extract(short, tmp_path, {"rgb": net}, other, "w", progress=False, log=logs.append)
    assert again.written == again.recomputed == ["short.mp4"] and not again.skipped
    assert any("recomputing" in m and "endpoint 'Mixed_4f' -> 'Logits'" in m for m in logs)
    with np.load(tmp_path / "short.npz") as z:
        assert z["features"].shape == (1, 1, 10) and str(z["settings_fingerprint"]) != old_fp
    # Other weights are other settings too.
    assert ef.extract(short, tmp_path, {"rgb": net}, other, "w2", progress=False).recomputed


def test_memory_does_not_grow_with_video_length(net, tmp_path):
    # Finding 6: the whole video was decoded and converted to float32 before the first window.
    import tracemalloc

    write_video(tmp_path / "a.mp4", 40, seed=3)
    write_video(tmp_path / "b.mp4", 600, seed=3)
    config = ef.ExtractConfig(endpoint="Mixed_3c", window=16, stride=200, fps=25.0,
                              short_side=40, crop_size=32, batch_size=2)  # fmt: skip
    peaks = []
    for name in ("a.mp4", "b.mp4"):
        tracemalloc.start()
        ef.extract([tmp_path / name], tmp_path / "out", {"rgb": net}, config, progress=False)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    with np.load(tmp_path / "out" / "b.npz") as z:
        assert z["features"].shape[0] == 3  # windows at 0, 200, 400
    # 600 frames of 40x56 float32 would be 16 MB; the streamed run stays near the short one.
    assert peaks[1] < peaks[0] + 3_000_000, peaks


def test_flow_stream_with_rgb_weights_is_refused_at_once(net, videos, tmp_path, capsys):
    from i3d_jax.weights import orbax_dir

    orbax_dir.save(net[1], net[0], tmp_path / "rgb_weights")
    code = extract_main([str(videos), "--stream", "flow", "--flow-weights", str(tmp_path / "rgb_weights"),
                    "--out", str(tmp_path / "out"), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "error: --flow_weights" in err and "3 input channels" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="needs a model with 2 input channels"):
        ef.extract([videos / "short.mp4"], tmp_path / "o", {"flow": net}, progress=False)
    for bad, why in [(["--window", "0"], "window must be >= 1"),
                     (["--endpoint", "Mixed_9z"], "unknown endpoint"),
                     (["--short-side", "100"], "smaller than crop_size")]:  # fmt: skip
        code = extract_main([str(videos), "--weights", str(tmp_path / "rgb_weights"), "--out",
                        str(tmp_path / "out"), *bad])  # fmt: skip
        assert code == 2 and why in capsys.readouterr().err


def test_a_file_is_reused_only_for_the_video_that_made_it(net, tmp_path):
    """Finding 4: `cricket.mp4` then `cricket.webm` into one --out, a video replaced under its
    name, same-named videos of two folders, and a moved folder (reused, not recomputed)."""
    config = ef.ExtractConfig(endpoint="Logits", **CONFIG)
    out, a, b = tmp_path / "out", tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    write_video(a / "clip.mp4", 20, seed=0)
    write_video(a / "clip.avi", 20, seed=1)
    write_video(b / "clip.mp4", 20, seed=2)

    def run(*paths):
        return ef.extract(list(paths), out, {"rgb": net}, config, "tiny", progress=False)

    def source(name):
        with np.load(out / name) as z:
            return json.loads(str(z["source"])), z["features"]

    first = run(a / "clip.mp4")
    second = run(a / "clip.avi")  # another video, same stem: its own file, not a skip
    assert second.written == ["clip.avi"] and not second.skipped
    assert first.outputs == {str(a / "clip.mp4"): "clip.npz"} and first.written == ["clip.mp4"]
    assert second.outputs == {str(a / "clip.avi"): "clip.avi.npz"}
    (mp4, f_mp4), (avi, f_avi) = source("clip.npz"), source("clip.avi.npz")
    assert mp4["path"] == str((a / "clip.mp4").resolve()) and avi["name"] == "clip.avi"
    assert mp4["size"] == (a / "clip.mp4").stat().st_size and len(mp4["stream"]) == 16
    assert np.abs(f_mp4 - f_avi).max() > 1e-4

    both = run(a / "clip.mp4", a / "clip.avi", b / "clip.mp4")
    assert sorted(both.skipped) == ["clip.avi", "clip.mp4"] and both.written == ["clip.mp4"]
    other = both.outputs[str(b / "clip.mp4")]
    assert other.startswith("clip.mp4.") and source(other)[0]["path"] == str(
        (b / "clip.mp4").resolve()
    )

    write_video(a / "clip.mp4", 30, seed=3)  # replaced under the same name
    replaced = run(a / "clip.mp4")
    assert (
        replaced.recomputed == ["clip.mp4"] and replaced.outputs[str(a / "clip.mp4")] == "clip.npz"
    )
    assert source("clip.npz")[0]["size"] == (a / "clip.mp4").stat().st_size

    moved = tmp_path / "moved"
    (a).rename(moved)
    again = run(moved / "clip.mp4", moved / "clip.avi")
    assert sorted(again.skipped) == ["clip.avi", "clip.mp4"] and not again.written
