"""extract_features --preset: the field's formats, explicit flags over a preset, the preset's name
in the settings (not the fingerprint), window centre times at native and resampled fps."""

import json

import numpy as np
import pytest
from videos import write_video

from i3d_jax import extract_features as ef
from i3d_jax import model
from i3d_jax.extract_features import presets as feature_presets
from i3d_jax.extract_features.cli import main as extract_main
from i3d_jax.weights import common, orbax_dir


def test_presets_are_the_fields_numbers_and_flags_override_them():
    af = feature_presets.resolve("actionformer_thumos14", {})
    assert af == {"window": 16, "stride": 4, "fps": None, "short_side": 256, "crop_size": 224,
                  "crops": "center", "endpoint": "Mixed_5c", "pooled": True,
                  "preset": "actionformer_thumos14"}  # fmt: skip
    anet = feature_presets.resolve("activitynet", {"stride": None, "crops": None})
    assert (anet["window"], anet["stride"], anet["fps"]) == (16, 16, 25.0)
    vf = feature_presets.resolve("video_features", {})
    assert (vf["window"], vf["stride"], vf["fps"], vf["crop_size"]) == (64, 64, None, 224)
    # explicit values win; None means "not given"; "native" is an explicit None fps
    mixed = feature_presets.resolve("activitynet", {"stride": 8, "fps": "native", "window": None})
    assert (mixed["window"], mixed["stride"], mixed["fps"]) == (16, 8, None)
    assert feature_presets.resolve(None, {"stride": 8}) == {"stride": 8, "preset": ""}
    assert feature_presets.parse_fps("Native") == "native" and feature_presets.parse_fps("30") == 30
    with pytest.raises(ValueError, match="unknown preset 'thumos'; expected one of"):
        feature_presets.resolve("thumos", {})
    with pytest.raises(ValueError, match="unknown preset 'x'"):
        ef.ExtractConfig(preset="x")
    # the preset's name is recorded, but the same numbers are the same features
    a = ef.settings(ef.ExtractConfig(**af), ["rgb"], "w")
    b = ef.settings(ef.ExtractConfig(**{**af, "preset": ""}), ["rgb"], "w")
    assert a["preset"] == "actionformer_thumos14" and b["preset"] == ""
    assert ef.fingerprint(a) == ef.fingerprint(b)
    c = ef.settings(ef.ExtractConfig(**{**af, "stride": 5}), ["rgb"], "w")
    assert ef.fingerprint(c) != ef.fingerprint(a)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("presets")
    net = model.tiny()
    orbax_dir.save(common.random_variables(net, seed=2), net, d / "tiny")
    rng = np.random.default_rng(0)
    write_video(d / "v30.mp4", rng.integers(0, 255, (40, 40, 48, 3), dtype=np.uint8), fps=30)
    return d


def _run(tiny, out, *flags):
    args = [str(tiny / "v30.mp4"), "--weights", str(tiny / "tiny"), "--out", str(out),
            "--short-side", "32", "--crop-size", "32", "--no-progress", *flags]  # fmt: skip
    assert extract_main(args) == 0
    with np.load(out / "v30.npz") as z:
        return (z["features"], z["timestamps"], z["times"], json.loads(str(z["settings"])),
                json.loads(str(z["preprocessing"])))  # fmt: skip


def test_actionformer_preset_at_native_fps_and_an_fps_override(tiny, tmp_path):
    feats, stamps, times, settings, meta = _run(tiny, tmp_path / "af", "--preset",
                                                "actionformer_thumos14")  # fmt: skip
    assert settings["preset"] == "actionformer_thumos14" and settings["fps"] is None
    assert (settings["window"], settings["stride"], settings["crops"]) == (16, 4, "center")
    assert settings["endpoint"] == "Mixed_5c" and settings["short_side"] == 32  # flag won
    assert meta["video_fps"] == 30.0
    # 40 native frames: windows start at 0, 4, ..., 24 (start + 16 <= 40)
    starts = np.arange(7) * 4
    assert feats.shape[:2] == (7, 1)
    np.testing.assert_allclose(times, (starts + 8) / 30.0, rtol=1e-12)
    np.testing.assert_allclose(stamps, np.stack([starts, starts + 16], 1) / 30.0, rtol=1e-12)
    np.testing.assert_allclose(times, stamps.mean(1), rtol=1e-12)  # full windows: the centre
    # --fps 25 overrides the preset's native rate: 34 frames, windows at 0, 4, ..., 16
    feats25, _, times25, s25, _ = _run(tiny, tmp_path / "af25", "--preset",
                                       "actionformer_thumos14", "--fps", "25")  # fmt: skip
    assert s25["fps"] == 25.0 and s25["preset"] == "actionformer_thumos14"
    np.testing.assert_allclose(times25, (np.arange(5) * 4 + 8) / 25.0, rtol=1e-12)
    assert feats25.shape[0] == 5


def test_a_looped_short_video_has_its_centre_by_the_formula(tiny, tmp_path):
    # video_features' 64-frame stacks on a 40-frame video: one looped window, centre 32 / 30 s
    _, stamps, times, settings, _ = _run(tiny, tmp_path / "vf", "--preset", "video_features")
    assert (settings["window"], settings["stride"], settings["preset"]) == (
        64,
        64,
        "video_features",
    )
    np.testing.assert_allclose(times, [32 / 30.0])
    np.testing.assert_allclose(stamps, [[0.0, 40 / 30.0]])  # ends where the video ends
