"""FVD: distance properties, agreement with a NumPy/SciPy reference, the stats cache, the CLI."""

import json

import numpy as np
import pytest
import scipy.linalg

from i3d_jax import fvd, model
from i3d_jax.weights import common

N, T, S = 32, 10, 40  # videos per set, frames, frame size (resized to 32 for the tiny model)


def _videos(seed: int, n: int = N) -> np.ndarray:
    """Moving bright blobs with random start, velocity and colour on noise, uint8 [n, T, S, S, 3]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:S, 0:S]
    out = np.empty((n, T, S, S, 3), np.uint8)
    for i in range(n):
        p, v = rng.uniform(8, 32, 2), rng.uniform(-2, 2, 2)
        colour = rng.uniform(80, 255, 3)
        for t in range(T):
            cy, cx = p + v * t
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 30.0)[..., None] * colour
            out[i, t] = np.clip(blob + rng.normal(20, 5, (S, S, 3)), 0, 255)
    return out


@pytest.fixture(scope="module")
def feature_fn():
    net = model.tiny(num_classes=10)
    variables = common.random_variables(net, seed=0)
    return fvd.make_feature_fn(net, variables, size=32, batch_size=16)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A stats cache shared by the property tests, so each set is featurised once."""
    return tmp_path_factory.mktemp("fvd_cache")


@pytest.fixture(scope="module")
def real():
    return _videos(0)


def test_identical_is_zero_and_symmetric(feature_fn, real):
    other = _videos(1)
    assert abs(fvd.fvd(real, real, feature_fn)) < 1e-6
    ab, ba = fvd.fvd(real, other, feature_fn), fvd.fvd(other, real, feature_fn)
    assert ab > 1e-3
    assert ab == pytest.approx(ba, rel=1e-9)


def test_matches_numpy_reference(feature_fn, real):
    other = _videos(1)
    fa, fb = (feature_fn(v).astype(np.float64) for v in (real, other))
    assert fa.shape == (N, 10)
    mu_a, mu_b = fa.mean(0), fb.mean(0)
    sa, sb = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    covmean = scipy.linalg.sqrtm(sa @ sb).real
    ref = ((mu_a - mu_b) ** 2).sum() + np.trace(sa + sb - 2 * covmean)
    got = fvd.fvd(real, other, feature_fn)
    assert got == pytest.approx(ref, rel=1e-8, abs=1e-10)


def test_increases_with_noise(feature_fn, real, cache):
    rng = np.random.default_rng(2)
    noise = rng.normal(0, 1, real.shape)
    values = [
        fvd.fvd(
            real, np.clip(real + s * noise, 0, 255).astype(np.uint8), feature_fn, cache_dir=cache
        )
        for s in (0, 8, 24, 64)
    ]
    print("FVD vs noise sigma 0/8/24/64:", np.round(values, 4))
    assert values[0] < 1e-6
    assert all(b > 1.5 * a for a, b in zip(values[1:], values[2:], strict=False)), values
    assert values[1] > 1e-3


def test_increases_with_frame_shuffling(feature_fn, real, cache):
    rng = np.random.default_rng(3)
    values = []
    for k in (0, 3, 6, T):  # shuffle the order of the first k frames of every video
        out = real.copy()
        for v in out:
            v[:k] = v[rng.permutation(k)]
        values.append(fvd.fvd(real, out, feature_fn, cache_dir=cache))
    print("FVD vs shuffled frames 0/3/6/10:", np.round(values, 4))
    assert values[0] < 1e-6 and values[1] > 0
    assert values[1] < values[2] < values[3], values


def test_stats_cache(feature_fn, real, tmp_path):
    calls = []

    def counting(videos):
        calls.append(len(videos))
        return feature_fn(videos)

    first = fvd.fvd(real, real[:16], counting, cache_dir=tmp_path)
    assert calls == [N, 16] and len(list(tmp_path.glob("*.npz"))) == 2
    again = fvd.fvd(real, real[:16], counting, cache_dir=tmp_path)
    assert calls == [N, 16] and again == first  # both sets came from the cache
    changed = real[:16].copy()
    changed[0, 0, 0, 0, 0] ^= 1  # one bit differs: a new key
    fvd.fvd(real, changed, counting, cache_dir=tmp_path)
    assert calls == [N, 16, 16]


def test_list_of_videos_of_different_lengths(feature_fn, real):
    # A list is grouped by shape; the result equals the features of each group.
    videos = [real[0], real[1][:9], real[2], real[3][:9]]
    stats = fvd.video_stats(videos, feature_fn)
    f = np.concatenate([feature_fn(real[[0, 2]]), feature_fn(np.stack([real[1][:9], real[3][:9]]))])
    ref = fvd.compute_stats(f[[0, 2, 1, 3]])
    np.testing.assert_allclose(stats.mu, ref.mu, rtol=1e-6)


def test_cli_npz(monkeypatch, tmp_path, capsys, feature_fn, real):
    np.savez(tmp_path / "a.npz", videos=real)
    np.savez(tmp_path / "b.npz", real[::-1][:, ::-1])  # a single unnamed array: time reversed
    # The CLI's network is the protocol's; swap in the tiny one through make_feature_fn.
    monkeypatch.setattr(fvd, "make_feature_fn", lambda *a, **k: feature_fn)
    import i3d_jax.weights as weights

    monkeypatch.setattr(weights, "load_pretrained", lambda source: (None, None))
    rc = fvd.main([str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--no-cache"])
    assert rc == 0
    line = capsys.readouterr().out.splitlines()[0]
    result = json.loads(line)
    assert result["fvd"] == pytest.approx(fvd.fvd(real, real[:, ::-1], feature_fn), rel=1e-9)
    assert result["protocol"]["size"] == 224 and result["n_real"] == N
    assert fvd.main([str(tmp_path / "missing.npz"), str(tmp_path / "b.npz")]) == 1


def test_cli_video_dirs(monkeypatch, tmp_path, capsys, feature_fn, real):
    import av

    from i3d_jax import preprocess

    for name, videos in (("a", real[:4]), ("b", real[4:8])):
        (tmp_path / name).mkdir()
        for i, video in enumerate(videos):
            with av.open(str(tmp_path / name / f"{i}.mp4"), "w") as container:
                stream = container.add_stream("mpeg4", rate=25)
                stream.width, stream.height, stream.pix_fmt = S, S, "yuv420p"
                for frame in video:
                    container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
                container.mux(stream.encode())
    (tmp_path / "a" / "notes.txt").write_text("not a video")  # ignored by suffix
    monkeypatch.setattr(fvd, "make_feature_fn", lambda *a, **k: feature_fn)
    import i3d_jax.weights as weights

    monkeypatch.setattr(weights, "load_pretrained", lambda source: (None, None))
    assert fvd.main([str(tmp_path / "a"), str(tmp_path / "b"), "--no-cache"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[0])
    decoded = [
        np.stack(
            [preprocess.load_video(p, fps=None, short_side=None) for p in sorted(d.glob("*.mp4"))]
        )
        for d in (tmp_path / "a", tmp_path / "b")
    ]
    assert decoded[0].shape == (4, T, S, S, 3)
    assert result["n_real"] == 4 and result["fvd"] > 0
    assert result["fvd"] == pytest.approx(fvd.fvd(*decoded, feature_fn), rel=1e-9)
    (tmp_path / "empty").mkdir()
    assert fvd.main([str(tmp_path / "empty"), str(tmp_path / "b"), "--no-cache"]) == 1
    assert "no video files" in capsys.readouterr().err
