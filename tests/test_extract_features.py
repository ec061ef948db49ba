"""Sliding-window feature extraction: windows, timestamps, numbers, batching, resume, bad files."""

import functools
import json

import av
import jax
import numpy as np
import pytest

from i3d_jax import extract_features as ef
from i3d_jax import model, preprocess
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


def test_window_math():
    assert ef.window_starts(50, 16, 8) == [0, 8, 16, 24, 32]
    assert ef.window_starts(16, 16, 8) == [0] and ef.window_starts(10, 16, 8) == [0]
    np.testing.assert_array_equal(ef.window_frames(10, 0, 16)[8:], [8, 9, 0, 1, 2, 3, 4, 5])
    np.testing.assert_allclose(ef.timestamps(10, [0], 16, 25.0), [[0.0, 0.4]])
    assert ef.crop_boxes(40, 56, 32, "three") == [(4, 0, False), (4, 12, False), (4, 24, False)]
    ten = ef.crop_boxes(40, 56, 32, "ten")
    assert len(ten) == 10 and ten[4] == (4, 12, False) and ten[9] == (4, 12, True)
    with pytest.raises(ValueError, match="smaller than the 64x64 crop"):
        ef.crop_boxes(40, 56, 64, "center")


def _direct(net, frames, start, box, endpoint="Mixed_4f"):
    """The endpoint of one window and crop, computed without the extractor, pooled."""
    m, variables = net
    x = preprocess.to_float(frames)[ef.window_frames(len(frames), start, W_)]
    x = ef.crop_clip(x, box, 32, flow=False)
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
    boxes = ef.crop_boxes(40, 56, 32, "three")
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


def test_unpooled_logits_per_time(net, videos, tmp_path):
    config = ef.ExtractConfig(endpoint="Logits_per_time", pooled=False, **CONFIG)
    ef.extract([videos / "long.mp4"], tmp_path, {"rgb": net}, config, progress=False)
    pooled = ef.ExtractConfig(endpoint="Logits", **CONFIG)
    ef.extract([videos / "long.mp4"], tmp_path / "p", {"rgb": net}, pooled, progress=False)
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

    real_write = ef._write_atomic
    writes = []

    def interrupted(dest, arrays):
        if writes:  # the second video's write is where the run gets killed
            raise KeyboardInterrupt
        writes.append(dest.name)
        real_write(dest, arrays)

    monkeypatch.setattr(ef, "_write_atomic", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ef.main(argv)
    assert sorted(p.name for p in out.iterdir()) == [writes[0]]
    first = out / writes[0]
    mtime, content = first.stat().st_mtime_ns, first.read_bytes()

    monkeypatch.setattr(ef, "_write_atomic", real_write)
    assert ef.main(argv) == 1  # the broken file makes the exit status non-zero
    captured = capsys.readouterr()
    assert "wrote 2, skipped 1 already done, failed 1" in captured.out
    assert "broken.mp4" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["long.npz", "short.npz", "zlast.npz"]
    assert first.stat().st_mtime_ns == mtime and first.read_bytes() == content
    with np.load(out / "zlast.npz") as z:
        assert z["features"].shape[:2] == (1, 1)  # 20 frames, window 16, stride 8: one window
        np.testing.assert_allclose(z["timestamps"], [[0.0, 0.64]])


def test_both_streams_with_injected_flow(net, videos, tmp_path):
    flow_net = model.tiny(input_channels=2)
    flow_vars = common.random_variables(flow_net, seed=2)
    calls = []

    def fake_flow(frames):  # a constant 4-px rightward motion, [T-1, H, W, 2]
        calls.append(frames.shape)
        return np.broadcast_to(np.float32([4.0, 0.0]), (len(frames) - 1, *frames.shape[1:3], 2))

    config = ef.ExtractConfig(endpoint="Logits", crops="ten", **CONFIG)
    streams = {"rgb": net, "flow": (flow_net, flow_vars)}
    ids = {"rgb": "a", "flow": "b"}
    ef.extract([videos / "long.mp4"], tmp_path, streams, config, ids, fake_flow, progress=False)
    assert calls == [(50, 40, 56, 3)]
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
