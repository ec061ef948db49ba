"""Flow on every device: the TV-L1 split over the local devices (`flow.tvl1_sharded`,
`flow_build.flow_videos(devices=...)`) gives the flow of one device."""

import jax
import numpy as np
import pytest
from videos import moving_texture

from i3d_jax import flow, preprocess
from i3d_jax.data import flow_build
from i3d_jax.data.flow_build import FlowSettings

# Three videos of 32x40 and two of 24x32, moving left by 1 or 2 pixels a frame.
VIDEOS = [
    moving_texture(6, 32, 40, 0, dx=1),
    moving_texture(4, 24, 32, 1, dx=2),
    moving_texture(6, 32, 40, 2, dx=2),
    moving_texture(3, 24, 32, 3, dx=1),
    moving_texture(5, 32, 40, 4, dx=1),
]
DX = [1, 2, 2, 1, 1]


@pytest.fixture
def dispatches(monkeypatch):
    """(pairs, devices) of every dispatch to the JAX solver."""
    calls = []
    real = flow.tvl1_sharded

    def counting(i0, i1, params, *, mesh):
        calls.append((len(i0), mesh.devices.size))
        return real(i0, i1, params, mesh=mesh)

    monkeypatch.setattr(flow, "tvl1_sharded", counting)
    return calls


def test_eight_devices_give_the_flow_of_one(dispatches):
    assert len(jax.local_devices()) == 8  # tests/conftest.py
    settings = FlowSettings(preset="fast", batch_pairs=2)  # 2 pairs per device
    one = list(flow_build.flow_videos(VIDEOS, settings, progress=False, devices=jax.devices()[:1]))
    assert len(dispatches) == 10 and set(dispatches) == {(2, 1)}  # 14 pairs of 32x40, 5 of 24x32
    dispatches.clear()
    eight = list(flow_build.flow_videos(VIDEOS, settings, progress=False))  # all local devices
    assert sorted(dispatches) == [(16, 8)] * 2  # 16 a dispatch, the last pairs repeated
    for a, b in zip(one, eight, strict=True):
        assert a.dtype == np.uint8 and a.shape == b.shape
        np.testing.assert_array_equal(a, b)  # exactly
    for got, dx in zip(eight, DX, strict=True):  # the true motion, away from the borders
        inner = preprocess.dequantize_flow_pixels(got, settings.bound)[:, 6:-6, 6:-6]
        assert abs(inner[..., 0].mean() + dx) < 0.2 and abs(inner[..., 1].mean()) < 0.1


def test_a_pairs_flow_does_not_depend_on_the_pairs_beside_it():
    """vmap of the solver's while loops freezes a converged pair while its companions iterate:
    each pair's float flow is the same whatever shares its device batch and the dispatch."""
    gray = [flow.to_gray(v) for v in VIDEOS if v.shape[1:3] == (32, 40)]
    i0 = np.concatenate([g[:-1] for g in gray])
    i1 = np.concatenate([g[1:] for g in gray])
    assert len(i0) == 14
    i0, i1 = i0[np.arange(16) % 14], i1[np.arange(16) % 14]
    mesh = flow.pairs_mesh(jax.local_devices())
    out = np.asarray(flow.tvl1_sharded(i0, i1, flow.FAST, mesh=mesh))  # 2 pairs per device
    assert out.shape == (16, 32, 40, 2) and np.abs(out).max() > 1
    perm = np.random.default_rng(0).permutation(16)  # other companions on other devices
    shuffled = np.asarray(flow.tvl1_sharded(i0[perm], i1[perm], flow.FAST, mesh=mesh))
    np.testing.assert_array_equal(shuffled, out[perm])
    # Each pair with another companion, on one device, through the unsharded batch program.
    for k in range(0, 16, 3):
        other = (k + 5) % 16
        pair = np.asarray(flow.tvl1_batch(i0[[k, other]], i1[[k, other]], flow.FAST))
        np.testing.assert_array_equal(pair[0], out[k])
    with pytest.raises(ValueError, match="a multiple of the 8 devices"):
        flow.tvl1_sharded(i0[:12], i1[:12], flow.FAST, mesh=mesh)
