"""Two-stream late fusion (`evaluation.fuse`), cross-modality initialisation (RGB -> flow), and
the flow-stream configs."""

import pathlib

import jax
import numpy as np
import pytest
from flax import traverse_util

from i3d_jax.data import video_folder
from i3d_jax.inflate import cross_modality
from i3d_jax.training import config as config_lib
from i3d_jax.training import evaluation
from i3d_jax.training.tasks import video_model as state
from i3d_jax.weights import common, orbax_dir

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def _stream(seed: int, order=None) -> dict:
    """Video-level outputs of a stream: 6 videos, 5 classes, in `order` of video index."""
    rng = np.random.default_rng(seed)
    index = np.array([3, 8, 11, 20, 21, 40])
    labels = np.array([0, 4, 2, 2, 1, 3])
    logits = rng.normal(size=(6, 5)).astype(np.float32)
    order = np.arange(6) if order is None else np.asarray(order)
    return {"logits": logits[order], "label": labels[order], "index": index[order]}


def test_fusing_a_stream_with_itself_is_that_stream():
    a = _stream(0)
    fused = evaluation.fuse(a, a)
    np.testing.assert_array_equal(fused["logits"], a["logits"])
    np.testing.assert_array_equal(fused["index"], a["index"])
    assert evaluation.summarize(None, 5, video=fused) == evaluation.summarize(None, 5, video=a)


def test_fused_prediction_is_the_average_of_logits_by_video():
    a = _stream(0)
    b = _stream(1, order=[5, 2, 0, 4, 1, 3])  # the other stream lists the videos in another order
    fused = evaluation.fuse(a, b)
    by_index = {int(i): row for i, row in zip(b["index"], b["logits"], strict=True)}
    expected = np.stack(
        [(row + by_index[int(i)]) / 2 for i, row in zip(a["index"], a["logits"], strict=True)]
    )
    np.testing.assert_allclose(fused["logits"], expected, rtol=1e-6)
    np.testing.assert_array_equal(fused["label"], a["label"])
    # The fused prediction is the argmax of the averaged logits, which differs from a's here.
    pred = fused["logits"].argmax(-1)
    assert not np.array_equal(pred, a["logits"].argmax(-1))
    top1 = evaluation.summarize(None, 5, video=fused)["video_top1"]
    assert top1 == pytest.approx(np.mean(pred == fused["label"]))
    weighted = evaluation.fuse(a, b, (0.25, 0.75))
    np.testing.assert_allclose(
        weighted["logits"],
        0.25 * a["logits"] + 0.75 * (2 * expected - a["logits"]),
        rtol=1e-5,
        atol=1e-6,
    )


def test_cross_modality_averages_first_kernel_over_colour():
    rng = np.random.default_rng(0)
    first = rng.normal(size=(3, 5, 7, 3, 4)).astype(np.float32)  # T, H, W all different
    other = rng.normal(size=(1, 1, 1, 3, 6)).astype(np.float32)  # 3 inputs too, not the first
    variables = {
        "params": {
            "Conv3d_1a_7x7": {"conv_3d": {"kernel": first}},
            "Mixed_5c": {"conv_3d": {"kernel": other}},
        },
        "batch_stats": {"Conv3d_1a_7x7": {"batch_norm": {"mean": np.ones(4, np.float32)}}},
    }
    out = cross_modality(variables, 2)
    k = out["params"]["Conv3d_1a_7x7"]["conv_3d"]["kernel"]
    assert k.shape == (3, 5, 7, 2, 4) and k.dtype == np.float32
    mean = (first[..., 0, :] + first[..., 1, :] + first[..., 2, :]) / 3
    np.testing.assert_allclose(k[..., 0, :], mean, rtol=1e-6)
    np.testing.assert_array_equal(k[..., 1, :], k[..., 0, :])
    np.testing.assert_array_equal(out["params"]["Mixed_5c"]["conv_3d"]["kernel"], other)
    assert variables["params"]["Conv3d_1a_7x7"]["conv_3d"]["kernel"].shape[-2] == 3  # untouched
    # A flow input constant over its 2 channels gives the RGB network's response to grey.
    x = rng.normal(size=(3, 5, 7))
    np.testing.assert_allclose(
        np.einsum("thw,thwo->o", x, k.sum(-2)),
        np.einsum("thw,thwo->o", x, first.sum(-2)) * 2 / 3,
        rtol=1e-5,
    )
    with pytest.raises(ValueError, match="Conv3d_1a_7x7"):
        cross_modality({"params": {"Mixed_5c": {"conv_3d": {"kernel": other}}}})


def test_flow_configs_are_the_recipe_with_two_channels(tmp_path):
    demo = config_lib.load_config_file(str(CONFIGS / "synthetic_motion_flow.py"))
    rgb_demo = config_lib.load_config_file(str(CONFIGS / "synthetic_motion.py"))
    config_lib.validate_config(demo)
    assert demo.modality == "flow" and state.input_channels(demo) == 2
    assert state.input_shape(demo, 4) == (4, 12, 32, 32, 2)
    assert (demo.dataset.name, demo.dataset.builder_config) == ("video_folder", "flow")
    d, r = demo.to_dict(), rgb_demo.to_dict()
    for key in ("batch_size", "num_train_steps", "lr", "optimizer", "model", "input"):
        assert d[key] == r[key], key  # the RGB demo's scale and recipe
    demo.init.method, demo.init.source = "cross_modality", "runs/demo"
    config_lib.validate_config(demo)  # a known init method
    kinetics = config_lib.load_config_file(str(CONFIGS / "kinetics400_flow.py"))
    config_lib.validate_config(kinetics)
    assert (kinetics.modality, kinetics.input.crop_size, kinetics.input.clip_length) == (
        "flow",
        224,
        64,
    )
    assert kinetics.input.flip  # flips negate the flow's x (pipeline.flip_clip)
    assert kinetics.optimizer.name == "sgd" and kinetics.optimizer.momentum == 0.9
    # The dataset names a builder config that exists and holds flow (it named "kinetics400_flow").
    folder = video_folder.VideoFolder(
        config=kinetics.dataset.builder_config, data_dir=str(tmp_path)
    )
    assert folder.builder_config.modality == "flow"


def test_cross_modality_init_from_rgb_weights(tmp_path):
    """`init.method=cross_modality`: RGB weights (a weights directory) onto the flow model."""
    flow_cfg = config_lib.load_config_file(str(CONFIGS / "synthetic_motion_flow.py"))
    rgb_cfg = config_lib.load_config_file(str(CONFIGS / "synthetic_motion.py"))
    rgb_model = state.build_model(rgb_cfg)
    rgb = common.random_variables(rgb_model, seed=3)
    orbax_dir.save(rgb, rgb_model, tmp_path / "rgb")
    flow_cfg.init.method, flow_cfg.init.source = "cross_modality", str(tmp_path / "rgb")
    config_lib.validate_config(flow_cfg)
    model = state.build_model(flow_cfg)
    out = state.initial_variables(flow_cfg, model, jax.random.key(0, impl="rbg"))
    k_rgb = np.asarray(rgb["params"]["Conv3d_1a_7x7"]["conv_3d"]["kernel"])
    k = out["params"]["Conv3d_1a_7x7"]["conv_3d"]["kernel"]
    assert k_rgb.shape[-2] == 3 and k.shape == (*k_rgb.shape[:-2], 2, k_rgb.shape[-1])
    np.testing.assert_allclose(k, np.repeat(k_rgb.mean(-2, keepdims=True), 2, -2), rtol=1e-6)
    flat_in = traverse_util.flatten_dict(rgb, sep="/")
    flat_out = traverse_util.flatten_dict(out, sep="/")
    assert set(flat_in) == set(flat_out)
    for name, value in flat_in.items():
        if "Conv3d_1a_7x7/conv_3d" not in name:
            np.testing.assert_array_equal(flat_out[name], value, err_msg=name)
