"""Flow for datasets (i3d_jax.data.flow_build): batched TV-L1 across videos, the per-video cache,
the recorded settings, the video_folder flow build (resumable, CLI flags) and the run-side refusal
of a dataset built with other flow settings."""

import dataclasses
import hashlib
import json

import jax
import ml_collections
import numpy as np
import pytest
from videos import moving_texture, write_video

from i3d_jax import flow, preprocess
from i3d_jax.data import build, flow_build, pipeline, schema, video_folder
from i3d_jax.data.flow_build import FlowSettings, FlowSettingsMismatchError
from i3d_jax.data.video_folder import VideoFolder

# A small solver (one pyramid level) so each frame size compiles in about a second.
PARAMS = flow.TVL1Params(
    nscales=1, warps=2, inner_iterations=8, outer_iterations=2, median_filtering=3
)
SETTINGS = FlowSettings(preset=PARAMS, bound=4.0, batch_pairs=2)
# One device: the batches these tests count are per dispatch (all devices: tests/test_flow_shards).
ONE = jax.devices()[:1]


# Two frame sizes; with batch 2, `a`'s one pair shares a batch with `c`'s first.
VIDEOS = {
    "a": moving_texture(2, 32, 32, 0),
    "b": moving_texture(2, 24, 40, 1),
    "c": moving_texture(4, 32, 32, 2),
}


@pytest.fixture
def solver_calls(monkeypatch):
    """Every dispatch handed to the JAX solver: a list of (i0 [B, H, W], params)."""
    calls = []
    real = flow.tvl1_sharded

    def counting(i0, i1, params, *, mesh):
        calls.append((np.asarray(i0), params))
        return real(i0, i1, params, mesh=mesh)

    monkeypatch.setattr(flow, "tvl1_sharded", counting)
    return calls


def _run(settings=SETTINGS, **kwargs) -> list[np.ndarray]:
    kwargs.setdefault("progress", False)
    kwargs.setdefault("devices", ONE)
    return list(flow_build.flow_videos(VIDEOS.values(), settings, **kwargs))


def test_batched_flow_equals_per_pair_solver_in_order(solver_calls, monkeypatch):
    out = _run()
    assert [o.shape for o in out] == [(1, 32, 32, 2), (1, 24, 40, 2), (3, 32, 32, 2)]
    assert [o.dtype for o in out] == [np.uint8] * 3
    # Batches of 2: [a0, c0], [c1, c2] at 32x32 and [b0, b0 (padding)] at 24x40.
    assert sorted(c[0].shape for c in solver_calls) == [(2, 24, 40), (2, 32, 32), (2, 32, 32)]
    pair = jax.jit(flow.tvl1_pair, static_argnames="params")
    step = SETTINGS.bound / 127
    for name, got in zip(("a", "c"), (out[0], out[2]), strict=True):
        gray = flow.to_gray(VIDEOS[name])
        for t in range(len(gray) - 1):
            ref = np.clip(np.asarray(pair(gray[t], gray[t + 1], params=PARAMS)), -4, 4)
            deq = preprocess.dequantize_flow_pixels(got[t], SETTINGS.bound)
            np.testing.assert_array_less(np.abs(deq - ref), step / 2 + 1e-4)
    for got in out:  # the true motion, away from the borders
        inner = preprocess.dequantize_flow_pixels(got, SETTINGS.bound)[:, 6:-6, 6:-6]
        assert abs(inner[..., 0].mean() + 1) < 0.15 and abs(inner[..., 1].mean()) < 0.1
    # The same flow one video at a time (other batch companions, other padding).
    for name, got in zip(VIDEOS, out, strict=True):
        alone = next(flow_build.flow_videos([VIDEOS[name]], SETTINGS, progress=False, devices=ONE))
        np.testing.assert_array_equal(alone, got)
    # Holding at most one video (the first's partial batch is flushed early): the same flow.
    monkeypatch.setattr(flow_build, "_MAX_PENDING_VIDEOS", 1)
    solver_calls.clear()
    for got, want in zip(_run(), out, strict=True):
        np.testing.assert_array_equal(got, want)
    assert len(solver_calls) == 4  # [a0, pad], [c0, c1], [b0, pad], [c2, pad]


def test_cache_resumes_at_the_video_level(tmp_path, solver_calls):
    full = _run()
    solver_calls.clear()
    gen = flow_build.flow_videos(
        VIDEOS.values(), SETTINGS, keys=VIDEOS, cache_dir=tmp_path, progress=False, devices=ONE
    )
    np.testing.assert_array_equal(next(gen), full[0])
    gen.close()  # interrupted after the first video
    assert len(list(tmp_path.glob("*.npy"))) == 1
    solver_calls.clear()
    resumed = _run(keys=VIDEOS, cache_dir=tmp_path)
    for got, want in zip(resumed, full, strict=True):
        np.testing.assert_array_equal(got, want)
    first_a = flow.to_gray(VIDEOS["a"])[0]
    batches = [c[0] for c in solver_calls if c[0].shape[1:] == first_a.shape]
    assert batches and not any((b == first_a).all(axis=(1, 2)).any() for b in batches)
    solver_calls.clear()
    again = _run(keys=VIDEOS, cache_dir=tmp_path)
    assert solver_calls == []  # everything cached: the solver never runs
    for got, want in zip(again, full, strict=True):
        np.testing.assert_array_equal(got, want)
    # Other settings (bound) give other flow: nothing reused, a second set of files.
    other = dataclasses.replace(SETTINGS, bound=5.0)
    moved = _run(other, keys=VIDEOS, cache_dir=tmp_path)
    assert len(solver_calls) == 3 and len(list(tmp_path.glob("*.npy"))) == 6
    assert not np.array_equal(moved[2], full[2])
    with pytest.raises(ValueError, match="cache_dir needs keys"):
        _run(cache_dir=tmp_path)


def test_opencv_solver_option(solver_calls):
    out = _run(FlowSettings(solver="opencv", preset=PARAMS, bound=4.0))
    assert solver_calls == []
    jax_out = _run()
    for got, ref in zip(out, jax_out, strict=True):
        assert got.shape == ref.shape and got.dtype == np.uint8
        pixels = preprocess.dequantize_flow_pixels(got, 4.0)[:, 6:-6, 6:-6]
        assert abs(pixels[..., 0].mean() + 1) < 0.15
    want = preprocess.quantize_flow(flow.compute_flow(VIDEOS["c"], "opencv", PARAMS), 4.0)
    np.testing.assert_array_equal(out[2], want)


def test_settings_metadata_and_fingerprint():
    s = FlowSettings(solver="opencv", preset="fast", bound=10.0, batch_pairs=3)
    meta = s.as_metadata()
    assert meta == {
        "solver": "opencv",
        "preset": "fast",
        "params": dataclasses.asdict(flow.FAST),
        "bound": 10.0,
        "quantization": flow_build.QUANTIZATION,
    }
    assert dataclasses.replace(s, batch_pairs=1) == s  # batch size: speed, not flow
    assert dataclasses.replace(s, batch_pairs=1).fingerprint() == s.fingerprint()
    assert dataclasses.replace(s, bound=20.0).fingerprint() != s.fingerprint()
    assert FlowSettings(preset=flow.FAST).preset_name == "fast"
    assert FlowSettings.from_metadata(meta) == s
    assert FlowSettings.from_metadata(SETTINGS.as_metadata()).params == PARAMS
    assert SETTINGS.as_metadata()["preset"] == "custom"
    assert s.describe() == "solver=opencv preset=fast bound=10.0"
    with pytest.raises(ValueError, match=r"unknown flow solver 'cuda'; expected one of"):
        FlowSettings(solver="cuda")
    with pytest.raises(ValueError, match=r"unknown TV-L1 preset 'slow'"):
        FlowSettings(preset="slow")
    with pytest.raises(ValueError, match="batch_pairs must be >= 1"):
        FlowSettings(batch_pairs=0)
    # batch_pairs=None: 1 on CPU; on accelerators by frame size (about 16 x 224^2 pixels).
    sizes = [(32, 32), (64, 64), (112, 112), (256, 340)]
    assert [flow_build.default_batch_pairs(h, w, "cpu") for h, w in sizes] == [1, 1, 1, 1]
    assert [flow_build.default_batch_pairs(h, w, "gpu") for h, w in sizes] == [256, 196, 64, 16]


def test_expected_settings_refuse_other_ones_naming_both():
    recorded = FlowSettings(solver="opencv", preset="fast").as_metadata()
    flow_build.check_expected(recorded)  # nothing expected: accepted
    flow_build.check_expected(recorded, solver="opencv", preset="fast", bound=20.0)
    with pytest.raises(FlowSettingsMismatchError) as e:
        flow_build.check_expected(recorded, solver="jax", preset="default", where="ds X")
    msg = str(e.value)
    assert "ds X was built with flow settings solver=opencv preset=fast bound=20.0" in msg
    assert "expects solver=jax preset=default" in msg and "differing: solver, preset" in msg
    with pytest.raises(FlowSettingsMismatchError, match=r"bound=20.0.*expects bound=5.0"):
        flow_build.check_expected(recorded, bound=5.0)
    with pytest.raises(FlowSettingsMismatchError, match="records no flow settings"):
        flow_build.check_expected(None, solver="jax")


def test_jax_flow_records_the_solver_version_and_older_reads_stale():
    current = FlowSettings(solver="jax", preset="default").as_metadata()
    assert current["solver_version"] == flow.SOLVER_VERSION == 2
    flow_build.check_expected(current, solver="jax", preset="default")
    # A dataset from before the border fix (2026-12-04) records no version: version 1.
    old = {k: v for k, v in current.items() if k != "solver_version"}
    # Its cached videos were named by the fingerprint of that metadata: not reused.
    old_fingerprint = hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:16]
    assert FlowSettings(solver="jax", preset="default").fingerprint() != old_fingerprint
    flow_build.check_expected(old, preset="default")  # no solver expected: accepted
    with pytest.raises(FlowSettingsMismatchError) as e:
        flow_build.check_expected(old, solver="jax", where="ds Y")
    msg = str(e.value)
    assert "ds Y was built with flow settings solver=jax preset=default bound=20.0 " in msg
    assert "solver_version=1" in msg and "expects solver=jax solver_version=2" in msg
    assert "differing: solver_version" in msg


def _flow_cfg(data_dir, **expected) -> ml_collections.ConfigDict:
    flow_cfg = ml_collections.ConfigDict({"solver": "", "preset": "", "bound": 0.0})
    flow_cfg.update(expected)
    return ml_collections.ConfigDict(
        {
            "name": "video_folder",
            "builder_config": "flow",
            "data_dir": str(data_dir),
            "folder": "",
            "in_memory": False,
            "flow": flow_cfg,
        }
    )


def test_video_folder_flow_build_resumes_and_runs_refuse_other_settings(
    tmp_path, monkeypatch, capsys
):
    root = tmp_path / "videos"
    layout = [
        ("train", "left", 1),
        ("train", "right", 2),
        ("train", "right", 2),
        ("val", "left", 1),
    ]
    for i, (split, label, dx) in enumerate(layout):
        write_video(root / split / label / f"v{i}.mp4", moving_texture(3, 32, 32, i, dx))
    data_dir = tmp_path / "tfds"
    kwargs = dict(config="flow", folder=root, data_dir=str(data_dir), fps=None, short_side=None)
    kwargs["flow_devices"] = ONE  # one batch of 2 pairs per dispatch
    calls = []
    real = flow.tvl1_sharded

    def failing_after_two(i0, i1, params, *, mesh):
        if len(calls) == 2:
            raise RuntimeError("injected: the build stops here")
        calls.append(np.asarray(i0))
        return real(i0, i1, params, mesh=mesh)

    monkeypatch.setattr(flow, "tvl1_sharded", failing_after_two)
    builder = VideoFolder(flow=SETTINGS, **kwargs)
    cache = builder.flow_cache_dir()
    with pytest.raises(RuntimeError, match="injected"):
        builder.download_and_prepare()
    cached = len(list(cache.glob("*.npy")))
    assert cached == 1  # one video finished (one pair batch each; the second was in flight)
    calls.clear()
    monkeypatch.setattr(
        flow, "tvl1_sharded", lambda i0, i1, p, mesh: calls.append(0) or real(i0, i1, p, mesh=mesh)
    )
    builder = VideoFolder(flow=SETTINGS, **kwargs)
    builder.download_and_prepare()
    assert len(calls) == 4 - cached  # 3 frames = 2 pairs = one batch a video; cached ones skipped
    assert not cache.exists()  # removed once the dataset is complete
    meta = builder.info.metadata
    assert meta[flow_build.METADATA_KEY] == SETTINGS.as_metadata() and meta["flow_scale"] == 4.0
    assert meta["source"]["settings"]["flow"] == SETTINGS.as_metadata()
    src = schema.data_source(builder, "validation")
    stored = schema.decode_flow_frames(src[0]["video"])
    assert stored.shape == (2, 32, 32, 2)
    x = preprocess.dequantize_flow_pixels(stored, 4.0)[:, 6:-6, 6:-6, 0]
    assert abs(x.mean() + 1) < 0.15

    # Another flow setting for the same folder: refused before any work, naming both.
    other = dataclasses.replace(SETTINGS, bound=5.0)
    with pytest.raises(video_folder.SourceMismatchError, match=r"'bound': 4\.0.*'bound': 5\.0"):
        VideoFolder(flow=other, **kwargs).download_and_prepare()

    # A run: the recorded settings against config.dataset.flow.
    _, info = pipeline.load_source(_flow_cfg(data_dir, solver="jax", bound=4.0), "train")
    assert info.flow_scale == 4.0
    with pytest.raises(FlowSettingsMismatchError) as e:
        pipeline.load_source(_flow_cfg(data_dir, solver="opencv", preset="default"), "train")
    assert "was built with flow settings solver=jax preset=custom bound=4.0" in str(e.value)
    assert "params=" in str(e.value) and "expects solver=opencv preset=default" in str(e.value)

    # The CLI: OpenCV's solver and a preset by flag, recorded as such.
    out_dir = tmp_path / "cli"
    common = ["video_folder", "--data_dir", str(out_dir), "--manual_dir", str(root)]
    common += ["--fps", "none", "--short_side", "none", "--config", "flow"]
    flags = ["--flow_solver", "opencv", "--flow_preset", "fast", "--flow_bound", "10"]
    assert build.main(common + flags) == 0
    assert '"splits": {"train": 3, "validation": 1}' in capsys.readouterr().out
    built = VideoFolder(config="flow", data_dir=str(out_dir)).info.metadata
    assert built[flow_build.METADATA_KEY] == FlowSettings("opencv", "fast", 10.0).as_metadata()
    with pytest.raises(FlowSettingsMismatchError, match="solver=opencv preset=fast bound=10.0"):
        pipeline.load_source(_flow_cfg(out_dir, bound=20.0), "train")
    with pytest.raises(SystemExit):
        build.parse_args(["video_folder", "--data_dir", "d", "--flow_solver", "jax"])
    assert "--flow_solver apply to video_folder --config flow only" in capsys.readouterr().err
