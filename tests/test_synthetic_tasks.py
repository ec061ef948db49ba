"""The ablation tasks of `synthetic_motion` (`fast_small`, `reverse`): built as designed, balanced,
labels recoverable from the motion, and the `reverse` halves identical across its two classes."""

import dataclasses

import numpy as np
import pytest

from i3d_jax.data import schema
from i3d_jax.data.synthetic_motion import (
    FAST_SMALL_NAMES,
    REVERSE_NAMES,
    SyntheticMotion,
    SyntheticMotionConfig,
    class_names,
    example_rng,
    generate_dataset,
    render_reverse,
)

CONFIGS = {c.name: c for c in SyntheticMotion.BUILDER_CONFIGS}
FAST, REVERSE = CONFIGS["fast_small"], CONFIGS["reverse"]


def _centres(video: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: the disc's centre (x, y) as a circular mean on the torus, and whether it shows."""
    size = video.shape[1]
    mask = video.astype(float).mean(-1) > 115  # background <= 80 (+ noise), disc >= 150
    visible = mask.sum((1, 2)) > 0
    angle = 2 * np.pi * (np.arange(size) + 0.5) / size
    w = mask.astype(float)
    zx = (w * np.exp(1j * angle)[None, None, :]).sum((1, 2))
    zy = (w * np.exp(1j * angle)[None, :, None]).sum((1, 2))
    centre = np.stack([np.angle(zx), np.angle(zy)], -1) * size / (2 * np.pi) - 0.5
    return centre, visible


def _velocity(centre: np.ndarray, frames: np.ndarray, size: int) -> np.ndarray:
    """Mean displacement per frame (torus-wrapped) between consecutive `frames`."""
    d = np.diff(centre[frames], axis=0)
    return (np.mod(d + size / 2, size) - size / 2).mean(0)


def test_configs_build_with_tfds_and_are_balanced(tmp_path):
    for config, names in ((FAST, FAST_SMALL_NAMES), (REVERSE, REVERSE_NAMES)):
        assert class_names(config) == names and config.num_frames == 36
        n = len(names)  # the registered config with one video per class (a new name for TFDS)
        small = dataclasses.replace(config, name=f"{config.name}_t", num_train=n, num_validation=n)
        builder = SyntheticMotion(config=small, data_dir=str(tmp_path / config.name))
        builder.download_and_prepare()
        assert builder.info.features["label"].names == list(names)
        assert builder.info.metadata["config"]["task"] == config.task
        src = schema.data_source(builder, "train")
        labels = sorted(int(schema.example_to_numpy(src[i])["label"]) for i in range(len(src)))
        assert labels == list(range(len(names)))  # one video per class
        frames = schema.decode_frames(schema.example_to_numpy(src[0])["video"])
        assert frames.shape == (36, 32, 32, 3)
    # The full splits are balanced: label = index % classes.
    assert np.all(np.bincount(np.arange(FAST.num_train) % FAST.num_classes) == 125)


def test_fast_small_direction_and_speed_from_the_disc_track():
    videos, labels = generate_dataset(FAST, "validation", 24)
    axes = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]])
    speeds = []
    for video, label in zip(videos, labels, strict=True):
        centre, visible = _centres(video)
        assert visible.all()
        v = _velocity(centre, np.arange(36), 32)
        direction, speed = int(np.argmax(axes @ v)), float(np.hypot(*v))
        speeds.append(speed)
        assert (direction, int(speed > 2.5)) == (label // 2, label % 2), (label, v)
    slow = [s for s, y in zip(speeds, labels, strict=True) if y % 2 == 0]
    fast = [s for s, y in zip(speeds, labels, strict=True) if y % 2 == 1]
    assert 0.85 < min(slow) and max(slow) < 1.15 and 3.5 < min(fast) and max(fast) < 4.5
    # Fast: consecutive discs do not overlap (speed > diameter), what early time pooling merges.
    assert min(fast) > 2 * FAST.radius * 1.1


def test_reverse_is_decided_only_across_the_hidden_gap():
    videos, labels = generate_dataset(REVERSE, "train", 16)
    for i, (video, label) in enumerate(zip(videos, labels, strict=True)):
        centre, visible = _centres(video)
        hidden = np.flatnonzero(~visible)
        assert len(hidden) == REVERSE.gap and np.all(np.diff(hidden) == 1)
        assert 12 <= hidden[0] <= 16
        before = _velocity(centre, np.arange(hidden[0]), 32)
        after = _velocity(centre, np.arange(hidden[-1] + 1, 36), 32)
        cos = before @ after / np.hypot(*before) / np.hypot(*after)
        assert (cos < -0.95) if label == 1 else (cos > 0.95), (label, cos)
        # The same example rendered as the other class: identical frames up to the gap, so no
        # view of one side of the gap can tell the classes apart.
        other = render_reverse(example_rng(REVERSE.seed, "train", i), 1 - label, REVERSE)
        assert np.array_equal(other[: hidden[0]], video[: hidden[0]])
        assert not np.array_equal(other[hidden[-1] + 1 :], video[hidden[-1] + 1 :])


def test_bad_task_configs_are_errors():
    with pytest.raises(ValueError, match="task must be one of"):
        generate_dataset(SyntheticMotionConfig(name="x", task="spin"), "train", 1)
    with pytest.raises(ValueError, match="num_classes must be in 2..2 for task 'reverse'"):
        generate_dataset(dataclasses.replace(REVERSE, num_classes=3), "train", 1)
    with pytest.raises(ValueError, match="reverse needs 0 < gap <= num_frames - 8"):
        generate_dataset(dataclasses.replace(REVERSE, gap=30), "train", 1)
