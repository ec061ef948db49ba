"""The CPU max-pool (separable, gradient from strided slices) equals XLA's, ties included."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from i3d_jax.pooling import max_pool_separable, max_pool_window_taps

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

    y_ref, vjp_ref = jax.vjp(reference, x)
    y, vjp = jax.vjp(lambda x: pool(x, window, stride), x)
    np.testing.assert_array_equal(y, y_ref)
    g = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
    (dx_ref,), (dx,) = vjp_ref(g), vjp(g)
    # Same elements receive gradient; only the summation order of overlapping windows differs.
    np.testing.assert_array_equal(dx != 0, dx_ref != 0)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-6, atol=1e-6)
    assert float(jnp.abs(dx).sum()) > 0


def test_pool_gradient_goes_to_first_maximum():
    x = jnp.ones((1, 1, 2, 2, 1))  # one window, four equal maxima
    dx = jax.grad(lambda x: max_pool_separable(x, (1, 2, 2), (1, 2, 2)).sum())(x)
    np.testing.assert_array_equal(dx[0, 0, :, :, 0], [[1.0, 0.0], [0.0, 0.0]])
