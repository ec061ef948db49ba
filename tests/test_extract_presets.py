"""extract_features --preset: the field's formats, explicit flags over a preset, the preset's name
in the settings (not the fingerprint), window times at native and resampled fps (presentation
times of variable-frame-rate video, looped windows inside the video), rotated videos."""

import json

import numpy as np
import pytest
from videos import rotated_for_display, write_vfr_video, write_video

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


def _run(tiny, out, *flags, video=None):
    video = video or tiny / "v30.mp4"
    args = [str(video), "--weights", str(tiny / "tiny"), "--out", str(out),
            "--short-side", "32", "--crop-size", "32", "--no-progress", *flags]  # fmt: skip
    assert extract_main(args) == 0
    with np.load(out / f"{video.stem}.npz") as z:
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


def test_a_looped_short_video_has_its_centre_inside_the_video(tiny, tmp_path):
    # video_features' 64-frame stacks on a 40-frame video: one looped window over the whole
    # video; its centre is the video's middle, 20 / 30 s (not 32 / 30, frame 32 of the loop)
    _, stamps, times, settings, _ = _run(tiny, tmp_path / "vf", "--preset", "video_features")
    assert (settings["window"], settings["stride"], settings["preset"]) == (
        64,
        64,
        "video_features",
    )
    np.testing.assert_allclose(stamps, [[0.0, 40 / 30.0]])  # ends where the video ends
    np.testing.assert_allclose(times, [20 / 30.0])


def test_a_looped_5_frame_video_at_25_fps_keeps_its_time_inside_the_video(tiny, tmp_path):
    # activitynet: 16-frame windows at 25 fps; 5 frames (0.2 s) loop to fill one window
    rng = np.random.default_rng(3)
    video = tmp_path / "five.mp4"
    write_video(video, rng.integers(0, 255, (5, 40, 48, 3), dtype=np.uint8), fps=25)
    _, stamps, times, _, _ = _run(tiny, tmp_path / "anet", "--preset", "activitynet", video=video)
    np.testing.assert_allclose(stamps, [[0.0, 0.2]], atol=1e-9)
    np.testing.assert_allclose(times, [0.1], atol=1e-9)  # was 8 / 25 = 0.32, after the end


def test_native_fps_times_of_a_variable_frame_rate_video_are_its_presentation_times(tiny, tmp_path):
    # 20 frames at 10 fps, then 50 at 50 fps (3 s; the average rate is 70 / 3 = 23.3 fps)
    seconds = np.r_[np.arange(20) / 10, 2 + np.arange(50) / 50]
    rng = np.random.default_rng(4)
    video = tmp_path / "vfr.mp4"
    write_vfr_video(video, rng.integers(0, 255, (70, 40, 48, 3), dtype=np.uint8), seconds)
    _, stamps, times, settings, meta = _run(tiny, tmp_path / "af", "--preset",
                                            "actionformer_thumos14", video=video)  # fmt: skip
    assert settings["fps"] is None and meta["video_fps"] == pytest.approx(70 / 3, rel=0.01)
    # windows of 16 frames every 4: starts 0, 4, ..., 52; a window runs from its first frame's
    # timestamp to the next frame after its last (frames 52..67 end at frame 68's 2.72 s)
    starts = np.arange(0, 70 - 16 + 1, 4)
    truth = np.stack([seconds[starts], seconds[starts + 16]], 1)
    np.testing.assert_allclose(stamps, truth, atol=1e-9)
    np.testing.assert_allclose(times, truth.mean(1), atol=1e-9)
    # window 8 (frames 32..47, 2.24 to 2.56 s): centre 2.40 s, not (32 + 8) / 23.3 = 1.71 s;
    # window 2 spans both rates (frames 8..23, 0.8 to 2.08 s): 1.44 s
    assert times[8] == pytest.approx(2.40) and times[2] == pytest.approx(1.44)


def test_a_rotated_video_gives_the_upright_features_and_old_files_of_it_are_stale(
    tiny, tmp_path, capsys
):
    # The same 24 frames (40 high, 48 wide), stored upright and as a phone stores them (turned,
    # display matrix -90): the same features; the rotation is recorded, not in the fingerprint.
    rng = np.random.default_rng(5)
    upright = rng.integers(0, 255, (1, 40, 48, 3), dtype=np.uint8).repeat(24, 0)
    upright = (upright * 0.6 + np.linspace(0, 100, 24)[:, None, None, None]).astype(np.uint8)
    src = tmp_path / "src"
    write_video(src / "flat.mp4", upright)
    write_video(src / "phone.mp4", rotated_for_display(upright, -90), rotation=-90)
    out = tmp_path / "out"
    argv = [str(src), "--weights", str(tiny / "tiny"), "--out", str(out), "--window", "16",
            "--stride", "8", "--short-side", "32", "--crop-size", "32", "--no-progress"]  # fmt: skip
    assert extract_main(argv) == 0
    files = {}
    for name in ("flat", "phone"):
        with np.load(out / f"{name}.npz") as z:
            files[name] = {k: z[k] for k in z.files}
    flat, phone = files["flat"], files["phone"]
    assert json.loads(str(phone["settings"]))["rotation"] == -90
    assert json.loads(str(phone["preprocessing"]))["rotation"] == -90
    assert json.loads(str(flat["settings"]))["rotation"] == 0
    assert str(phone["settings_fingerprint"]) == str(flat["settings_fingerprint"])
    diff = np.abs(phone["features"] - flat["features"]).max()
    assert diff < 0.1 * np.abs(flat["features"]).max(), diff  # codec noise, not another picture
    np.testing.assert_allclose(phone["timestamps"], flat["timestamps"])

    # Files made before rotations were recorded (no "rotation", the same fingerprint): the
    # rotated video's is stale and recomputed, naming the change; the upright one's is kept.
    for name, arrays in files.items():
        old = json.loads(str(arrays["settings"]))
        del old["rotation"]
        np.savez(out / f"{name}.npz", **{**arrays, "settings": json.dumps(old, sort_keys=True)})
    capsys.readouterr()
    assert extract_main(argv) == 0
    captured = capsys.readouterr()
    assert "wrote 1 (1 recomputed: other settings), skipped 1 already done" in captured.out
    assert "recomputing" in captured.err and "phone.mp4" in captured.err
    assert "rotation None -> -90" in captured.err and "flat.mp4" not in captured.err
    with np.load(out / "phone.npz") as z:
        assert json.loads(str(z["settings"]))["rotation"] == -90
    assert extract_main(argv) == 0  # now current: both skipped
    assert "wrote 0, skipped 2 already done" in capsys.readouterr().out
