"""Clip geometry (i3d_jax.clips): windows, timestamps, crop boxes, flips, used by every tool."""

import numpy as np
import pytest

from i3d_jax import clips
from i3d_jax.clips import CropBox


def test_sliding_windows_and_looping():
    assert clips.window_starts(50, 16, 8) == [0, 8, 16, 24, 32]
    assert clips.window_starts(16, 16, 8) == [0] and clips.window_starts(10, 16, 8) == [0]
    np.testing.assert_array_equal(clips.window_indices(10, 0, 16)[8:], [8, 9, 0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(clips.window_indices(50, 32, 4), [32, 33, 34, 35])
    with pytest.raises(ValueError, match="shorter than clip_length=16"):
        clips.window_indices(10, 0, 16, loop=False, video_id="v")
    with pytest.raises(ValueError, match="at least one frame"):
        clips.window_starts(0, 16, 8)


def test_window_seconds_clip_to_the_end():
    np.testing.assert_allclose(clips.window_seconds(10, [0], 16, 25.0), [[0.0, 0.4]])
    np.testing.assert_allclose(
        clips.window_seconds(50, [0, 8], 16, 25.0), [[0.0, 0.64], [0.32, 0.96]]
    )
    assert clips.window_seconds(50, [], 16, 25.0).shape == (0, 2)


def test_uniform_starts():  # moved from test_pipeline (pipeline.clip_starts)
    assert clips.uniform_starts(100, 64, 3) == [0, 18, 36]
    assert clips.uniform_starts(10, 64, 4) == [0, 0, 0, 0]
    assert clips.uniform_starts(100, 64, 1) == [18]


def test_crop_sets():  # three/ten moved from test_extract_features, 1/3 from test_pipeline
    assert clips.crop_boxes(40, 56, 32, "center") == [CropBox(4, 12)]
    assert clips.crop_boxes(40, 56, 32, "three") == [(4, 0, False), (4, 12, False), (4, 24, False)]
    assert clips.crop_boxes(56, 40, 32, 3) == [(0, 4, False), (12, 4, False), (24, 4, False)]
    ten = clips.crop_boxes(40, 56, 32, "ten")
    assert ten[:5] == [(0, 0, False), (0, 24, False), (8, 0, False), (8, 24, False), (4, 12, False)]
    assert [b.flip for b in ten] == [False] * 5 + [True] * 5
    assert [b[:2] for b in ten[5:]] == [b[:2] for b in ten[:5]]
    with pytest.raises(ValueError, match="smaller than the 64x64 crop"):
        clips.crop_boxes(40, 56, 64, "center")
    with pytest.raises(ValueError, match="unknown crops"):
        clips.crop_boxes(40, 56, 32, "five")
    with pytest.raises(ValueError, match="one of"):
        clips.crop_boxes(40, 56, 32, 2)


def test_random_box_reaches_every_position():
    rng = np.random.default_rng(0)
    seen = {clips.random_box(5, 7, 3, rng)[:2] for _ in range(200)}
    assert seen == {(t, c) for t in range(3) for c in range(5)}


def test_crop_and_flip_rgb_and_flow():
    x = np.arange(2 * 5 * 7 * 2, dtype=np.float32).reshape(2, 5, 7, 2)
    np.testing.assert_array_equal(clips.crop(x, CropBox(1, 2), 3), x[:, 1:4, 2:5])
    mirrored = clips.crop(x, CropBox(1, 2, True), 3)
    np.testing.assert_array_equal(mirrored, x[:, 1:4, 2:5][:, :, ::-1])
    flow = clips.crop(x, CropBox(1, 2, True), 3, is_flow=True)
    np.testing.assert_array_equal(flow[..., 0], -x[:, 1:4, 2:5, 0][:, :, ::-1])
    np.testing.assert_array_equal(flow[..., 1], x[:, 1:4, 2:5, 1][:, :, ::-1])
    with pytest.raises(ValueError, match="must be float"):
        clips.flip(x.astype(np.uint8), is_flow=True)
    with pytest.raises(ValueError, match="does not fit"):
        clips.crop(x, CropBox(3, 0), 3)
