"""The optimised paths compute the same function as the plain model (random weights, inputs)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from i3d_jax import deploy, model
from i3d_jax.model import space_to_depth
from i3d_jax.weights.common import random_variables


@pytest.mark.parametrize("size, stride", [((9, 20, 17), (2, 2, 2)), ((8, 15, 22), (1, 2, 2))])
def test_space_to_depth_conv_equals_strided_conv(size, stride):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, *size, 3)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(7, 7, 7, 3, 5)), jnp.float32)
    pads = [model.same_padding(n, 7, s) for n, s in zip(size, stride, strict=True)]
    dn = ("NDHWC", "DHWIO", "NDHWC")
    ref = jax.lax.conv_general_dilated(x, k, stride, pads, dimension_numbers=dn)
    xs, ks = space_to_depth(x, k, stride, pads)
    assert xs.shape[-1] == 3 * int(np.prod(stride))
    got = jax.lax.conv_general_dilated(xs, ks, (1, 1, 1), "VALID", dimension_numbers=dn)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)


def train_loss(params, net, variables, x):
    """Sum of squared logits with BatchNorm in training mode (batch statistics)."""
    out, _ = net.apply(
        {"params": params, "batch_stats": variables["batch_stats"]},
        x,
        train=True,
        mutable=["batch_stats"],
    )[0]
    return (out**2).sum()


@pytest.fixture(scope="module")
def plain():
    net = model.tiny(bn_scale=True)
    x = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (2, 16, 40, 36, 3)), jnp.float32)
    variables = random_variables(net)
    return net, variables, x


def test_space_to_depth_model_same_logits_and_grads(plain):
    net, variables, x = plain
    fast = net.clone(conv1_space_to_depth=True)
    np.testing.assert_allclose(
        fast.apply(variables, x)[0], net.apply(variables, x)[0], rtol=1e-5, atol=1e-5
    )

    g_plain = jax.grad(train_loss)(variables["params"], net, variables, x)
    g_fast = jax.grad(train_loss)(variables["params"], fast, variables, x)
    k = ("Conv3d_1a_7x7", "conv_3d", "kernel")
    a = g_fast[k[0]][k[1]][k[2]]
    b = g_plain[k[0]][k[1]][k[2]]
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.abs(b).max()))


def test_remat_same_gradients(plain):
    net, variables, x = plain

    g1 = jax.grad(train_loss)(variables["params"], net, variables, x)
    g2 = jax.grad(train_loss)(variables["params"], net.clone(remat=True), variables, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g1, g2)


@pytest.mark.parametrize("fuse", [False, True])
def test_folded_and_fused_inference_same_logits(plain, fuse):
    net, variables, x = plain
    fast, fast_vars = deploy.to_inference(net, variables, fuse=fuse)
    assert "batch_stats" not in fast_vars
    if fuse:
        fused = fast_vars["params"]["Mixed_4b"]["Fused_1x1"]["conv_3d"]["kernel"]
        c = dict(net.channels)["Mixed_4b"]
        assert fused.shape[-1] == c[0] + c[1] + c[3]
    _, ref = net.apply(variables, x)
    _, got = fast.apply(fast_vars, x)
    for name in ("Mixed_3b", "Mixed_5c", "Logits"):
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-4, atol=1e-4, err_msg=name)
