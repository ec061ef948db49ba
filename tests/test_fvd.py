"""FVD: the resize, the clip protocol, distance properties, refusals before the network, the CLI."""

import json

import cv2
import jax
import numpy as np
import pytest
import scipy.linalg
from videos import write_video

from i3d_jax import model
from i3d_jax.fvd import cli as fvd_cli
from i3d_jax.fvd import clips as fvd_clips
from i3d_jax.fvd import distance as fvd
from i3d_jax.weights import common

N, T, S = 24, 10, 40  # videos per set, frames, frame size (resized to 32 for the tiny model)
P = fvd.Protocol(num_frames=T, size=32)  # the tiny model needs >= 9 frames


def _videos(seed: int, n: int = N, t: int = T, h: int = S, w: int = S) -> np.ndarray:
    """Moving bright blobs with random start, velocity and colour on noise, uint8 [n, t, h, w, 3]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.empty((n, t, h, w, 3), np.uint8)
    for i in range(n):
        p, v = rng.uniform(8, 32, 2), rng.uniform(-2, 2, 2)
        colour = rng.uniform(80, 255, 3)
        for k in range(t):
            cy, cx = p + v * k
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 30.0)[..., None] * colour
            out[i, k] = np.clip(blob + rng.normal(20, 5, (h, w, 3)), 0, 255)
    return out


class Counting:
    """The tiny network's feature function, counting the clips it sees."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, clips):
        self.calls.append(clips.shape)
        return self.fn(clips)


@pytest.fixture(scope="module")
def feature_fn():
    net = model.tiny(num_classes=10)
    return fvd.make_feature_fn(net, common.random_variables(net, seed=0))


@pytest.fixture(scope="module")
def real():
    return _videos(0)


def _clip_features(feature_fn, clips: np.ndarray, method: str = "tf1") -> np.ndarray:
    x = fvd_clips.resize_bilinear(clips, (32, 32), method) / np.float32(127.5) - 1
    return np.concatenate([feature_fn(x[i : i + 8]) for i in range(0, len(x), 8)])


def test_tf1_resize_against_hand_computation():
    row = np.array([[0, 10, 20, 40]], np.uint8)[..., None]  # 1 x 4, to 1 x 3 (scale 4/3)
    # TF1 (half_pixel_centers=False): source x = i * 4/3 = 0, 1.333, 2.667.
    np.testing.assert_allclose(
        fvd_clips.resize_bilinear(row, (1, 3), "tf1")[0, :, 0], [0, 13.333333, 33.333333], 1e-6
    )
    # Half-pixel: source x = (i + 0.5) * 4/3 - 0.5 = 0.1667, 1.5, 2.8333.
    np.testing.assert_allclose(
        fvd_clips.resize_bilinear(row, (1, 3), "half-pixel")[0, :, 0],
        [1.666667, 15, 36.666667],
        1e-6,
    )
    # Upsampling 2x2 -> 4x4 in TF1: sources 0, 0.5, 1, 1.5 (the last clamps to the edge).
    img = np.array([[0, 10], [20, 30]], np.uint8)[..., None]
    expect = [[0, 5, 10, 10], [10, 15, 20, 20], [20, 25, 30, 30], [20, 25, 30, 30]]
    np.testing.assert_array_equal(fvd_clips.resize_bilinear(img, (4, 4), "tf1")[..., 0], expect)
    # The half-pixel variant is the usual bilinear (OpenCV INTER_LINEAR, jax "linear" upsampling).
    x = np.random.default_rng(1).integers(0, 255, (2, 7, 9, 3)).astype(np.float32)
    ours = fvd_clips.resize_bilinear(x, (4, 5), "half-pixel")
    np.testing.assert_allclose(ours[1], cv2.resize(x[1], (5, 4), cv2.INTER_LINEAR), atol=1e-3)
    up = jax.image.resize(x, (2, 16, 20, 3), "linear", antialias=False)
    np.testing.assert_allclose(fvd_clips.resize_bilinear(x, (16, 20), "half-pixel"), up, atol=1e-3)
    assert np.abs(fvd_clips.resize_bilinear(x, (4, 5), "tf1") - ours).max() > 5  # they differ


def test_identical_sets_are_exactly_zero_even_when_covariance_is_singular():
    # 30 clips of 400 features (rank-29 covariance): the old code gave -0.0012 here.
    f = np.random.default_rng(0).normal(size=(30, 400)) * 5
    with pytest.warns(UserWarning, match="30 clips of 400 features: the covariance is singular"):
        stats = fvd.compute_stats(f)
    same = fvd.frechet_distance(stats, stats)
    assert 0.0 <= same < 1e-12 * 2 * np.trace(stats.sigma)
    other = fvd.compute_stats(np.random.default_rng(1).normal(size=(30, 400)) * 5)
    assert fvd.frechet_distance(stats, other) > 100


def test_matches_scipy_reference_and_covariance_choice(feature_fn, real):
    other = _videos(1)
    fa, fb = (_clip_features(feature_fn, v).astype(np.float64) for v in (real, other))
    assert fa.shape == (N, 10)
    for ddof, name in ((1, "N-1"), (0, "N")):
        sa, sb = np.cov(fa, rowvar=False, ddof=ddof), np.cov(fb, rowvar=False, ddof=ddof)
        covmean = scipy.linalg.sqrtm(sa @ sb).real
        ref = ((fa.mean(0) - fb.mean(0)) ** 2).sum() + np.trace(sa + sb - 2 * covmean)
        got = fvd.fvd(real, other, feature_fn, dataclasses_replace(P, covariance=name))
        assert got == pytest.approx(ref, rel=1e-6)
    assert fvd.fvd(real, other, feature_fn, P) > 1.01 * fvd.fvd(
        real, other, feature_fn, dataclasses_replace(P, covariance="N")
    )
    assert 0.0 <= fvd.fvd(real, real, feature_fn, P) < 1e-9
    assert fvd.fvd(other, real, feature_fn, P) == pytest.approx(fvd.fvd(real, other, feature_fn, P))


def dataclasses_replace(p, **kw):
    import dataclasses

    return dataclasses.replace(p, **kw)


def test_clips_are_fixed_length_first_or_random_start(feature_fn):
    long = _videos(5, n=6, t=30)  # 30-frame videos; clips of 10 frames
    other = _videos(6, n=6, t=30)  # another set (the same set reordered has FVD 0 exactly)
    counting = Counting(feature_fn)
    # "first": the features are those of frames 0..9 (not of the whole 30-frame video).
    reports = []
    got = fvd.fvd(long, other, counting, P, batch_size=4, reports=reports)
    assert counting.calls == [(4, T, 32, 32, 3)] * 4  # 6 clips a set: 4 + 2 padded with zeros
    assert [(r.role, r.clips) for r in reports] == [("real", 6), ("generated", 6)]
    fa = _clip_features(feature_fn, long[:, :T])
    fb = _clip_features(feature_fn, other[:, :T])
    ref = fvd.frechet_distance(fvd.compute_stats(fa), fvd.compute_stats(fb))
    assert got == pytest.approx(ref, rel=1e-6) and got > 0
    # "random": seeded starts inside the video; the same seed gives the same number.
    rnd = dataclasses_replace(P, sampling="random", frame_stride=2, clips_per_video=2, seed=3)
    plan = fvd_clips.plan_clips(
        fvd_clips.items_from_arrays(long, "x"), length=T, stride=2, clips_per_video=2,
        random_start=True, seed=3, strict=False,
    )  # fmt: skip
    starts = [c.start for c in plan.clips]
    assert len(starts) == 12 and 0 <= min(starts) and max(starts) <= 30 - 19
    assert len(set(starts)) > 3
    clips = np.stack([long[c.item, c.start : c.start + 19 : 2] for c in plan.clips])
    fa = _clip_features(feature_fn, clips)
    a = fvd.fvd(long, long[:, :, ::-1], feature_fn, rnd)
    assert a == fvd.fvd(long, long[:, :, ::-1], feature_fn, rnd)
    fb = _clip_features(feature_fn, np.stack([long[:, :, ::-1][c.item] for c in plan.clips]))
    assert fa.shape == (12, 10) and np.isfinite(fb).all()


def test_too_short_and_one_clip_refused_before_the_network(feature_fn, real, tmp_path):
    counting = Counting(feature_fn)
    short = [real[0], real[1][:7], real[2]]
    with pytest.raises(fvd.FVDError, match=r"real\[1\] \(7 frames\)"):
        fvd.fvd(short, real, counting, P)
    write_video(tmp_path / "short.mp4", real[0][:5])
    items = fvd.load_video_set(tmp_path)
    with pytest.raises(fvd.FVDError, match=r"shorter than a clip of 10.*short\.mp4 \(5 frames\)"):
        fvd.fvd(real, items + items, counting, P)
    with pytest.raises(fvd.FVDError, match="generated: 1 clip.*at least 2"):
        fvd.fvd(real, real[:1], counting, P)
    assert counting.calls == []  # nothing reached the network


def test_bad_files_skipped_and_counted_unless_strict(feature_fn, real, tmp_path):
    for i in range(3):
        write_video(tmp_path / f"v{i}.mp4", real[i])
    (tmp_path / "broken.mp4").write_bytes(b"\x00garbage" * 100)
    items = fvd.load_video_set(tmp_path)
    reports = []
    value = fvd.fvd(real, items, feature_fn, P, reports=reports)
    assert reports[1].clips == 3 and list(reports[1].skipped) == [str(tmp_path / "broken.mp4")]
    assert value > 0
    with pytest.raises(fvd.preprocess.VideoDecodeError, match="broken.mp4"):
        fvd.fvd(real, items, feature_fn, P, strict=True)


def test_clip_read_streams_only_the_frames_it_needs(tmp_path):
    # A file whose tail is cut off: a first-frames clip never decodes that far.
    frames = _videos(7, n=1, t=60, h=48, w=64)[0]
    write_video(tmp_path / "long.mp4", frames)
    item = fvd.load_video_set(tmp_path)[0]
    clip = fvd_clips.read_clip(item, fvd_clips.Clip(0, 20), 10, 2)
    assert clip.shape == (10, 48, 64, 3)
    ref = fvd.preprocess.load_video(tmp_path / "long.mp4", fps=None, short_side=None)
    np.testing.assert_array_equal(clip, ref[20:40:2])


def test_stats_cache(feature_fn, real, tmp_path):
    counting = Counting(feature_fn)
    first = fvd.fvd(real, real[:16], counting, P, cache_dir=tmp_path, batch_size=8)
    assert len(counting.calls) == 5 and len(list(tmp_path.glob("*.npz"))) == 2
    again = fvd.fvd(real, real[:16], counting, P, cache_dir=tmp_path, batch_size=8)
    assert len(counting.calls) == 5 and again == first  # both sets came from the cache
    changed = real[:16].copy()
    changed[0, 0, 0, 0, 0] ^= 1  # one bit differs: a new key
    fvd.fvd(real, changed, counting, P, cache_dir=tmp_path, batch_size=8)
    assert len(counting.calls) == 7
    fvd.fvd(
        real, changed, counting, dataclasses_replace(P, resize="half-pixel"), cache_dir=tmp_path
    )
    assert len(counting.calls) == 7 + 3 + 2  # another protocol: another key for both sets


@pytest.fixture
def cli(monkeypatch, feature_fn):
    """The CLI with the protocol's network swapped for the tiny one (size 32)."""
    import i3d_jax.weights as weights

    monkeypatch.setattr(fvd, "make_feature_fn", lambda *a, **k: feature_fn)
    monkeypatch.setattr(weights, "load_pretrained", lambda source: (None, None))
    real_protocol = fvd.Protocol
    monkeypatch.setattr(fvd, "Protocol", lambda **k: real_protocol(**{**k, "size": 32}))
    return fvd_cli.main


def test_cli_npz_prints_the_protocol(cli, tmp_path, capsys, feature_fn, real):
    np.savez(tmp_path / "a.npz", videos=real)
    np.savez(tmp_path / "b.npz", real[::-1][:, ::-1])  # a single unnamed array: time reversed
    argv = [str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--no-cache", "--num-frames", "10"]
    assert cli(argv) == 0
    out = capsys.readouterr().out.splitlines()
    result = json.loads(out[0])
    # The same clips in the same order (hence the same batches) as the CLI's: equal to rounding.
    same = fvd.fvd(real, real[::-1][:, ::-1], feature_fn, P)
    assert result["fvd"] == pytest.approx(same, rel=1e-9)
    assert result["protocol_name"] == "fvdall_10f" and result["protocol"]["resize"] == "tf1"
    assert result["real"] == {"videos": N, "clips": N, "skipped": 0, "cached": None}
    assert "fvdall_10f" in out[1] and "num_frames=10" in out[1] and "covariance=N-1" in out[1]


def test_cli_errors_and_skips(cli, tmp_path, capsys, real):
    for name, videos in (("a", real[:4]), ("b", real[4:8])):
        for i, video in enumerate(videos):
            write_video(tmp_path / name / f"{i}.mp4", video)
    (tmp_path / "a" / "notes.txt").write_text("not a video")  # ignored by suffix
    (tmp_path / "a" / "z_bad.mp4").write_bytes(b"\x00garbage" * 100)
    base = [str(tmp_path / "a"), str(tmp_path / "b"), "--no-cache", "--no-progress"]
    assert cli([*base, "--num-frames", "10"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out.splitlines()[0])
    assert (
        result["real"] == {"videos": 5, "clips": 4, "skipped": 1, "cached": None}
        and result["fvd"] > 0
    )
    assert "skipped" in captured.err and "z_bad.mp4" in captured.err
    assert "the covariance is singular" in captured.err  # 4 clips, 10 features
    cases = {  # (flags): (exit status, message); 2: found before any work, 1: during it
        ("--num-frames", "10", "--strict"): (1, "z_bad.mp4"),
        ("--num-frames", "16"): (1, "shorter than a clip of 16 frames"),
        ("--weights", str(tmp_path / "missing.pt")): (2, "weights not found"),
    }
    for extra, (code, message) in cases.items():
        assert cli([*base, *extra]) == code
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert cli([str(tmp_path / "empty"), str(tmp_path / "b")]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli([*base, "--num-frames", "0"])
    assert "expected an integer >= 1" in capsys.readouterr().err


def test_cached_stats_say_so_warn_alike_and_a_corrupt_cache_is_recomputed(
    feature_fn, real, tmp_path
):
    """Finding 7: the singular-covariance warning vanished with cached statistics, nothing said the
    cache was used, and a corrupt cache file gave numpy's allow_pickle advice."""
    import warnings

    counting = Counting(feature_fn)
    a, b = real[:3], real[3:6]  # 3 clips each: fewer than the features, a singular covariance
    reports: list = []
    with warnings.catch_warnings(record=True) as fresh:
        warnings.simplefilter("always")
        first = fvd.fvd(a, b, counting, P, cache_dir=tmp_path, reports=reports)
    assert [r.cached for r in reports] == [None, None]
    reports.clear()
    with warnings.catch_warnings(record=True) as cached:
        warnings.simplefilter("always")
        assert fvd.fvd(a, b, counting, P, cache_dir=tmp_path, reports=reports) == first
    singular = lambda ws: sorted(str(w.message) for w in ws if "singular" in str(w.message))  # noqa: E731
    assert singular(cached) == singular(fresh) and len(singular(fresh)) == 2
    assert all(r.cached and r.cached.endswith(".npz") for r in reports)
    for f in tmp_path.glob("*.npz"):
        f.write_bytes(b"\x93NUMPY garbage")
    calls = len(counting.calls)
    with warnings.catch_warnings(record=True) as corrupt:
        warnings.simplefilter("always")
        assert fvd.fvd(a, b, counting, P, cache_dir=tmp_path) == pytest.approx(first)
    text = " ".join(str(w.message) for w in corrupt)
    assert "not a readable statistics file" in text and "allow_pickle" not in text
    assert len(counting.calls) > calls  # recomputed
    assert fvd.fvd(a, b, counting, P, cache_dir=tmp_path) == pytest.approx(first)
