"""The CPU max-pool (separable, gradient from strided slices) equals XLA's, ties included."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from i3d_jax import model
from i3d_jax.pooling import max_pool_separable, max_pool_window_taps
from i3d_jax.weights.common import random_variables

# Every pool of the network (3D) and of the 2D source network, on small odd sizes.
POOLS = [
    ((2, 5, 9, 7, 3), (1, 3, 3), (1, 2, 2)),
    ((2, 5, 9, 7, 3), (3, 3, 3), (1, 1, 1)),
    ((1, 5, 7, 9, 2), (3, 3, 3), (2, 2, 2)),
    ((1, 4, 6, 7, 2), (2, 2, 2), (2, 2, 2)),
    ((2, 9, 7, 3), (3, 3), (2, 2)),
]


@pytest.mark.parametrize("pool", [max_pool_separable, max_pool_window_taps])
@pytest.mark.parametrize("shape, window, stride", POOLS)
def test_pool_and_gradient_equal_xla_with_ties(pool, shape, window, stride):
    rng = np.random.default_rng(0)
    # Values in {0, 1, 2}: most windows hold several maxima, so tie-breaking is exercised.
    x = jnp.asarray(rng.integers(0, 3, shape), jnp.float32)

    def reference(x):
        return nn.max_pool(x, window, strides=stride, padding="SAME")

    def value_and_vjp(f, x, g):
        y, vjp = jax.vjp(f, x)
        return y, vjp(g)[0]

    g = jnp.asarray(rng.normal(size=reference(x).shape), jnp.float32)
    y_ref, dx_ref = jax.jit(lambda x, g: value_and_vjp(reference, x, g))(x, g)
    y, dx = jax.jit(lambda x, g: value_and_vjp(lambda x: pool(x, window, stride), x, g))(x, g)
    np.testing.assert_array_equal(y, y_ref)
    # Same elements receive gradient; only the summation order of overlapping windows differs.
    np.testing.assert_array_equal(dx != 0, dx_ref != 0)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-6, atol=1e-6)
    assert float(jnp.abs(dx).sum()) > 0


def test_pool_gradient_goes_to_first_maximum():
    x = jnp.ones((1, 1, 2, 2, 1))  # one window, four equal maxima
    dx = jax.grad(lambda x: max_pool_separable(x, (1, 2, 2), (1, 2, 2)).sum())(x)
    np.testing.assert_array_equal(dx[0, 0, :, :, 0], [[1.0, 0.0], [0.0, 0.0]])


def test_network_gradients_equal_with_xla_pooling_under_jit():
    """The whole network, compiled: XLA may fuse and recompute the pools' inputs differently."""
    net = model.tiny(bn_scale=True, graph="plain", final_endpoint="Mixed_3c")  # XLA's pools
    variables = random_variables(net)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 16, 40, 36, 3))

    def grads(pool: str):
        with jax.enable_x64(True):
            net64 = net.clone(
                dtype=jnp.float64, param_dtype=jnp.float64, graph=net.graph.replace(pool=pool)
            )
            v = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)

            def loss(params, x):
                (out, _), _ = net64.apply(
                    {"params": params, "batch_stats": v["batch_stats"]},
                    x,
                    train=True,
                    mutable=["batch_stats"],
                )
                return (out**2).sum()

            return jax.jit(jax.grad(loss))(v["params"], jnp.asarray(x, jnp.float64))

    ours, xla = grads("taps"), grads("xla")

    def close(a, b):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * float(jnp.abs(b).max()))

    jax.tree.map(close, ours, xla)
