"""Inflation: axis order, purity, and the boring-video fixed point (T, H, W all different)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from i3d_jax import model
from i3d_jax.inception2d import InceptionV1
from i3d_jax.inflate import inflate, inflate_kernel
from i3d_jax.weights.common import random_variables

T, H, W = 40, 48, 64


@pytest.fixture(scope="module")
def nets():
    image = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (2, H, W, 3)), jnp.float32)
    net2d = InceptionV1(channels=model.tiny().channels, global_pool=True, num_classes=5)
    vars2d = random_variables(net2d)  # random BN statistics too: nothing trivially zero
    return net2d, vars2d, image


def test_kernel_axis_order_time_first():
    k = np.arange(3 * 5 * 2 * 4, dtype=np.float32).reshape(3, 5, 2, 4)  # kh != kw
    mean = inflate_kernel(k, 7, "mean")
    assert mean.shape == (7, 3, 5, 2, 4)
    np.testing.assert_allclose(mean.sum(0), k, rtol=1e-6)
    np.testing.assert_allclose(mean[3], k / 7)
    center = inflate_kernel(k, 7, "center")
    np.testing.assert_array_equal(center[3], k)
    assert np.count_nonzero(center[[0, 1, 2, 4, 5, 6]]) == 0


def test_inflate_is_pure_and_reports_names(nets):
    net2d, vars2d, _ = nets
    before = jax.tree.map(np.copy, vars2d)
    net3d = model.tiny(num_classes=5)
    target = jax.eval_shape(net3d.init, jax.random.key(0), jnp.zeros((1, T, H, W, 3)))
    out = inflate(vars2d, target, "center")
    jax.tree.map(np.testing.assert_array_equal, vars2d, before)
    assert out["params"]["Conv3d_1a_7x7"]["conv_3d"]["kernel"].shape == (7, 7, 7, 3, 4)
    broken = {**vars2d, "params": {k: v for k, v in vars2d["params"].items() if k != "Mixed_4b"}}
    with pytest.raises(ValueError, match=r"missing \['params/Mixed_4b/Branch_0"):
        inflate(broken, target)
    with pytest.raises(ValueError, match="unknown inflation method 'median'"):
        inflate(vars2d, target, "median")


@pytest.mark.parametrize("method", ["mean", "center"])
def test_boring_video_fixed_point_every_frame_with_replicate_padding(nets, method):
    net2d, vars2d, image = nets
    net3d = model.tiny(num_classes=5, temporal_padding="replicate")
    clip = jnp.repeat(image[:, None], T, axis=1)
    target = jax.eval_shape(net3d.init, jax.random.key(0), clip)
    vars3d = inflate(vars2d, target, method)
    _, ends2d = jax.jit(net2d.apply)(vars2d, image)
    _, ends3d = jax.jit(net3d.apply)(vars3d, clip)
    for name, a2d in ends2d.items():
        a3d = ends3d[name]
        if a3d.ndim == a2d.ndim + 1:  # every frame of the 3D endpoint equals the 2D one
            a2d = jnp.broadcast_to(a2d[:, None], a3d.shape)
        np.testing.assert_allclose(a3d, a2d, rtol=1e-4, atol=1e-4, err_msg=name)


def test_boring_video_with_zero_padding_holds_away_from_the_border(nets):
    net2d, vars2d, image = nets
    net3d = model.tiny(num_classes=5)
    clip = jnp.repeat(image[:, None], T, axis=1)
    vars3d = inflate(vars2d, jax.eval_shape(net3d.init, jax.random.key(0), clip))
    _, ends2d = jax.jit(net2d.apply)(vars2d, image)
    _, ends3d = jax.jit(net3d.apply)(vars3d, clip)
    # Up to Mixed_3c the temporal receptive field is <= 19 frames with stride 2: output frames
    # 5..14 of 20 see only real frames of the 40-frame clip.
    for name in ["Conv3d_1a_7x7", "Conv3d_2c_3x3", "Mixed_3b", "Mixed_3c"]:
        a3d, a2d = ends3d[name], ends2d[name]
        np.testing.assert_allclose(
            a3d[:, 5:15],
            jnp.broadcast_to(a2d[:, None], a3d[:, 5:15].shape),
            rtol=1e-4,
            atol=1e-4,
            err_msg=name,
        )
    # ...while the border frames differ: zeros beyond the clip enter the 7-frame conv1.
    assert not np.allclose(ends3d["Conv3d_1a_7x7"][:, 0], ends2d["Conv3d_1a_7x7"], atol=1e-3)
