"""synthetic_motion: single frames carry no label, motion carries all of it; the TFDS builder."""

import numpy as np
import pytest

from i3d_jax.data import schema
from i3d_jax.data.synthetic_motion import (
    CLASS_NAMES,
    SyntheticMotion,
    SyntheticMotionConfig,
    generate_dataset,
)

CONFIG = SyntheticMotionConfig(
    name="test8", num_classes=8, num_frames=8, size=32, num_train=480, num_validation=240, seed=3
)


@pytest.fixture(scope="module")
def data():
    train = generate_dataset(CONFIG, "train")
    val = generate_dataset(CONFIG, "validation")
    return train, val


def _shape_track(videos: np.ndarray) -> np.ndarray:
    """Per frame (x, y, angle) of the shape: circular centroid and second-moment orientation."""
    n, t, h, w, _ = videos.shape
    x = videos.astype(np.float32)
    background = np.median(x.reshape(n, t, h * w, 3), axis=2)[:, :, None, None, :]
    mask = (np.abs(x - background).max(-1) > 50).astype(np.float32)  # [N, T, H, W]
    mass = mask.sum((2, 3)) + 1e-6
    ang_x = 2 * np.pi * np.arange(w) / w
    ang_y = 2 * np.pi * np.arange(h) / h
    cx = np.angle((mask * np.exp(1j * ang_x)[None, None, None, :]).sum((2, 3))) % (2 * np.pi)
    cy = np.angle((mask * np.exp(1j * ang_y)[None, None, :, None]).sum((2, 3))) % (2 * np.pi)
    cx, cy = cx * w / (2 * np.pi), cy * h / (2 * np.pi)
    dx = np.mod(np.arange(w)[None, None, None, :] - cx[..., None, None] + w / 2, w) - w / 2
    dy = np.mod(np.arange(h)[None, None, :, None] - cy[..., None, None] + h / 2, h) - h / 2
    mu20 = (mask * dx * dx).sum((2, 3)) / mass
    mu02 = (mask * dy * dy).sum((2, 3)) / mass
    mu11 = (mask * dx * dy).sum((2, 3)) / mass
    angle = 0.5 * np.arctan2(2 * mu11, mu20 - mu02)
    return np.stack([cx, cy, angle], -1)  # [N, T, 3]


def _motion_features(videos: np.ndarray) -> np.ndarray:
    track = _shape_track(videos)
    d = np.diff(track, axis=1)
    size = videos.shape[2]
    d[..., :2] = np.mod(d[..., :2] + size / 2, size) - size / 2  # torus wrap
    d[..., 2] = np.mod(d[..., 2] + np.pi / 2, np.pi) - np.pi / 2  # orientation is mod pi
    f = np.median(d, axis=1)
    f[:, 2] *= 8.0  # radians per frame -> comparable to pixels per frame
    return f


def _nearest_centroid(x_train, y_train, x_test, num_classes):
    centroids = np.stack([x_train[y_train == c].mean(0) for c in range(num_classes)])
    return np.argmin(((x_test[:, None] - centroids[None]) ** 2).sum(-1), axis=1)


def _ridge_classifier(x_train, y_train, x_test, num_classes, l2=1.0):
    """Least-squares one-vs-rest linear classifier (closed form); returns test predictions."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    a = np.c_[(x_train - mean) / std, np.ones(len(x_train))]
    b = np.c_[(x_test - mean) / std, np.ones(len(x_test))]
    targets = np.eye(num_classes)[y_train] * 2 - 1
    if a.shape[1] > a.shape[0]:  # more features than examples: the dual form
        w = a.T @ np.linalg.solve(a @ a.T + l2 * np.eye(len(a)), targets)
    else:
        w = np.linalg.solve(a.T @ a + l2 * np.eye(a.shape[1]), a.T @ targets)
    return np.argmax(a @ w, 1), np.argmax(b @ w, 1)


def test_classes_balanced_and_deterministic(data):
    (videos, labels), _ = data
    assert videos.shape == (480, 8, 32, 32, 3) and videos.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(labels), [60] * 8)
    again, _ = generate_dataset(CONFIG, "train", num=3)
    np.testing.assert_array_equal(again, videos[:3])
    other, _ = generate_dataset(CONFIG, "validation", num=3)
    assert np.abs(other.astype(int) - videos[:3]).mean() > 20  # splits differ


def test_single_frame_is_at_chance(data):
    (tv, tl), (vv, vl) = data
    chance = 1.0 / CONFIG.num_classes
    for frame in (0, CONFIG.num_frames // 2):
        x_train = tv[:, frame].reshape(len(tv), -1).astype(np.float32)
        x_test = vv[:, frame].reshape(len(vv), -1).astype(np.float32)
        fit, pred = _ridge_classifier(x_train, tl, x_test, CONFIG.num_classes)
        assert np.mean(fit == tl) > 0.95  # it can fit the training frames, yet learns nothing
        acc = np.mean(pred == vl)
        assert abs(acc - chance) < 0.08, (frame, acc)
        acc_nc = np.mean(_nearest_centroid(x_train, tl, x_test, CONFIG.num_classes) == vl)
        assert abs(acc_nc - chance) < 0.08, (frame, acc_nc)


def test_motion_recovers_labels(data):
    (tv, tl), (vv, vl) = data
    f_train, f_val = _motion_features(tv), _motion_features(vv)
    acc = np.mean(_nearest_centroid(f_train, tl, f_val, CONFIG.num_classes) == vl)
    assert acc >= 0.97, acc
    # The same linear classifier that is at chance on single frames learns the motion.
    _, pred = _ridge_classifier(f_train, tl, f_val, CONFIG.num_classes)
    assert np.mean(pred == vl) >= 0.95, np.mean(pred == vl)


def test_builder_writes_and_reads_the_generated_videos(tmp_path):
    config = SyntheticMotionConfig(
        name="t", num_classes=4, num_frames=6, size=16, num_train=8, num_validation=4, seed=1
    )
    builder = SyntheticMotion(config=config, data_dir=str(tmp_path))
    builder.download_and_prepare()
    assert builder.info.features["label"].names == list(CLASS_NAMES[:4])
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {
        "train": 8,
        "validation": 4,
    }
    assert builder.info.metadata["config"]["num_frames"] == 6
    expected, labels = generate_dataset(config, "validation")
    src = schema.data_source(builder, "validation")
    seen = set()
    for i in range(len(src)):
        ex = schema.example_to_numpy(src[i])
        index = int(ex["video_id"].split("_")[-1])
        seen.add(index)
        frames = schema.decode_frames(ex["video"])
        assert frames.shape == (6, 16, 16, 3)
        assert ex["label"] == labels[index] and ex["num_frames"] == 6
        assert ex["height"] == ex["width"] == 16 and ex["fps"] == 25.0
        err = np.abs(frames.astype(int) - expected[index])
        assert err.mean() < 4.0, err.mean()  # JPEG loss only
    assert seen == {0, 1, 2, 3}
