"""The camouflage task of `synthetic_motion` (i3d_jax/data/synthetic_camouflage.py): the tint is in
any single RGB frame and absent from the luma the flow is computed on; the direction needs two
frames; the flow builder config stores TV-L1 flow with its scale and settings."""

import dataclasses

import numpy as np
import pytest

from i3d_jax import flow as flow_lib
from i3d_jax import preprocess
from i3d_jax.data import flow_build, schema
from i3d_jax.data import synthetic_camouflage as sc
from i3d_jax.data import synthetic_motion as sm


def _render(seed: int, label: int, size: int = 32, frames: int = 6) -> np.ndarray:
    return sc.render_camouflage(np.random.default_rng(seed), label, num_frames=frames, size=size)


def _tint_from_one_frame(frame: np.ndarray) -> int:
    red, _, blue = frame.reshape(-1, 3).mean(0)
    return int(blue > red)  # warm (0) is red-heavy, cool (1) blue-heavy


def _direction_from_two_frames(f0: np.ndarray, f1: np.ndarray, step: int) -> int:
    """The direction whose shift of frame 0 best explains frame 1 where the frames differ."""
    g0, g1 = flow_lib.to_gray(f0[None])[0], flow_lib.to_gray(f1[None])[0]
    changed = np.abs(g1 - g0) > 12
    errors = [
        np.abs(g1 - np.roll(g0, (dy * step, dx * step), axis=(0, 1)))[changed].mean()
        for dx, dy in sc._STEPS
    ]
    return int(np.argmin(errors))


def test_class_names_and_tints_of_equal_luma():
    assert sc.CLASS_NAMES[:4] == ("right_warm", "right_cool", "left_warm", "left_cool")
    assert [sc.split_label(k) for k in (0, 1, 6, 7)] == [(0, 0), (0, 1), (3, 0), (3, 1)]
    np.testing.assert_allclose(sc.TINTS @ flow_lib.LUMA, [1.0, 1.0], rtol=1e-6)
    assert sc.TINTS[0, 0] > 3 * sc.TINTS[0, 2] and sc.TINTS[1, 2] > 2 * sc.TINTS[1, 0]
    config = dataclasses.replace(sm.SyntheticMotion.BUILDER_CONFIGS[0], task="camouflage")
    assert sm.class_names(dataclasses.replace(config, num_classes=8)) == sc.CLASS_NAMES
    with pytest.raises(ValueError, match="modality"):
        sm.generate_dataset(dataclasses.replace(config, modality="depth"), num=1)
    with pytest.raises(ValueError, match="in memory only RGB"):
        sm.generate_dataset(dataclasses.replace(config, modality="flow"), num=1)
    with pytest.raises(ValueError, match="preset"):
        sm.generate_dataset(dataclasses.replace(config, modality="flow", flow_preset="slow"), num=1)


def test_one_frame_gives_the_tint_but_not_the_direction_two_frames_give_it():
    for seed in range(8):
        videos = [_render(seed, label) for label in range(8)]
        for label, video in enumerate(videos):
            direction, tint = sc.split_label(label)
            assert _tint_from_one_frame(video[seed % 6]) == tint
            assert _direction_from_two_frames(video[2], video[3], step=2) == direction
        # Same generator, another direction: the first frame is the same image, so no
        # single-frame cue can tell directions apart; the next frames differ.
        for tint in (0, 1):
            same_tint = [videos[2 * d + tint] for d in range(4)]
            for v in same_tint[1:]:
                np.testing.assert_array_equal(v[0], same_tint[0][0])
                assert np.abs(v[1].astype(int) - same_tint[0][1]).max() > 50
    # The disc is camouflaged: frame 0 with and without it has the same grey-level statistics.
    video = _render(3, 0, frames=1)
    g = flow_lib.to_gray(video)[0]
    assert 25 < g.mean() < 110 and g.std() > 15


def test_flow_sees_the_direction_and_not_the_tint():
    """The luma (what TV-L1 reads) is the same for both tints up to rounding and noise."""
    warm, cool = _render(5, 4, frames=4), _render(5, 5, frames=4)  # down_warm, down_cool
    assert _tint_from_one_frame(warm[0]) == 0 and _tint_from_one_frame(cool[0]) == 1
    g_warm, g_cool = flow_lib.to_gray(warm), flow_lib.to_gray(cool)
    assert np.abs(g_warm - g_cool).mean() < 0.6 and np.abs(warm - cool.astype(int)).mean() > 30


def test_flow_config_builds_on_disk_with_scale_and_settings(tmp_path):
    flow_cfg = next(c for c in sm.SyntheticMotion.BUILDER_CONFIGS if c.name == "camouflage_flow")
    rgb_cfg = next(c for c in sm.SyntheticMotion.BUILDER_CONFIGS if c.name == "camouflage")
    assert (flow_cfg.modality, rgb_cfg.modality, flow_cfg.num_classes) == ("flow", "rgb", 8)
    small = dict(num_frames=4, size=16, num_train=4, num_validation=2)
    tiny = dataclasses.replace(flow_cfg, name="camouflage_flow_tiny", **small)
    builder = sm.SyntheticMotion(config=tiny, data_dir=str(tmp_path), file_format="array_record")
    builder.download_and_prepare()
    meta = builder.info.metadata
    assert meta[schema.MODALITY_KEY] == "flow" and meta[schema.FLOW_SCALE_KEY] == 20.0
    settings = meta[sc.FLOW_SETTINGS_KEY]
    assert (settings["solver"], settings["preset"], settings["bound"]) == ("jax", "fast", 20.0)
    assert settings["params"]["warps"] == flow_lib.FAST.warps == 3
    flow_build.check_expected(settings, solver="jax", preset="fast", bound=20.0)  # what runs ask
    with pytest.raises(flow_build.FlowSettingsMismatchError, match="fast"):
        flow_build.check_expected(settings, preset="default")
    assert meta["config"]["modality"] == "flow" and meta["config"]["task"] == "camouflage"
    src = schema.data_source(builder, "train")
    assert len(src) == 4
    for i in range(4):
        ex = src[i]
        flow_u8 = schema.decode_flow_frames(ex[schema.VIDEO])
        assert flow_u8.shape == (3, 16, 16, 2) and int(ex[schema.NUM_FRAMES]) == 3
        # The same video's flow, computed again from its rendered frames, is what was stored.
        index = int(schema.example_to_numpy(ex)[schema.VIDEO_ID].split("_")[-1])  # shuffled
        frames = sm._render_from_config(tiny, "train", index, index % 8)
        np.testing.assert_array_equal(flow_u8, next(sc.quantized_flow([frames], preset="fast")))
        moving = preprocess.dequantize_flow_pixels(flow_u8, 20.0)
        mean_x = moving[..., 0][np.abs(moving[..., 0]) > 0.4].mean()
        direction = sc.split_label(int(ex[schema.LABEL]))[0]  # labels 0..3: right, right, left..
        assert np.sign(mean_x) == (1 if direction == 0 else -1), (i, mean_x)
