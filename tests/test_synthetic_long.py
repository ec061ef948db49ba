"""The long-range task (`synthetic_motion/long_range`, `long_range_events`): the label is in the
pixels (kinds and order of the two events), the events are farther apart than I3D's temporal
receptive field, the configs build with TFDS; the recipe's pair/order split of a confusion."""

import dataclasses

import numpy as np
import pytest

from benchmarks import long_range
from i3d_jax import schedules
from i3d_jax.data import schema, synthetic_long
from i3d_jax.data.synthetic_motion import (
    SyntheticMotion,
    class_names,
    example_rng,
    generate_dataset,
)

CONFIGS = {c.name: c for c in SyntheticMotion.BUILDER_CONFIGS}
LONG, EVENTS = CONFIGS["long_range"], CONFIGS["long_range_events"]


def _rf_logits(num_frames: int) -> int:
    """Temporal receptive field (frames) of the network's last layer at the paper's schedule."""
    rows = schedules.receptive_fields("paper", (num_frames, 32, 32), global_pool=True)
    return {r.endpoint: r.receptive_field[0] for r in rows}["Logits"]


def test_the_pixels_give_the_kinds_and_their_order_beyond_the_receptive_field():
    rf = _rf_logits(LONG.num_frames)
    assert rf == 107 and LONG.gap > rf  # the stated field (99 frames at Mixed_5c, 107 at Logits)
    apart = []
    for i in range(12):  # two videos per class
        label = i % 6
        rendered = synthetic_long.render_long(
            example_rng(LONG.seed, "train", i), label, num_frames=LONG.num_frames,
            event_frames=LONG.event_frames, gap=LONG.gap, speed=LONG.speed, radius=LONG.radius,
        )  # fmt: skip
        seen = synthetic_long.events_from_frames(rendered.frames)
        assert seen == list(rendered.events)  # where the renderer put them, found in the pixels
        (a, _, end), (b, start, _) = seen
        first, second = synthetic_long.PAIR_NAMES[label].split("_then_")
        assert (synthetic_long.KINDS[a], synthetic_long.KINDS[b]) == (first, second)
        # the last moving frame of the first event and the first of the second: a span of
        # (start + 1) - (end - 1) + 1 frames, which no unit of the network sees whole
        apart.append(start - end + 3)
    assert min(apart) > rf and max(apart) > min(apart)  # separations vary, always beyond the field


def test_the_event_clips_show_one_event_of_their_kind_or_none():
    videos, labels = generate_dataset(EVENTS, "validation", 8)
    for frames, label in zip(videos, labels, strict=True):
        seen = synthetic_long.events_from_frames(frames)
        if synthetic_long.EVENT_NAMES[label] == "still":
            assert seen == []
        else:
            assert [k for k, *_ in seen] == [label]
            assert seen[0][2] - seen[0][1] == EVENTS.event_frames


def test_the_configs_build_on_disk_and_read_back_with_their_labels(tmp_path):
    small = dataclasses.replace(LONG, name="long_range_t", num_frames=48, event_frames=8, gap=20,
                                num_train=6, num_validation=2)  # fmt: skip
    builder = SyntheticMotion(config=small, data_dir=str(tmp_path))
    builder.download_and_prepare()
    assert builder.info.features["label"].names == list(synthetic_long.PAIR_NAMES)
    meta = builder.info.metadata["config"]
    assert meta["task"] == "long_range" and meta["gap"] == 20 and meta["event_frames"] == 8
    src = schema.data_source(builder, "train")
    labels = []
    for i in range(len(src)):
        ex = schema.example_to_numpy(src[i])
        frames = schema.decode_frames(ex["video"])  # JPEG frames, as stored
        assert frames.shape == (48, 32, 32, 3)
        pair = [k for k, *_ in synthetic_long.events_from_frames(frames)]
        labels.append(int(ex["label"]))
        assert tuple(pair) == synthetic_long.PAIRS[labels[-1]]
    assert sorted(labels) == list(range(6))
    assert class_names(EVENTS) == ("right", "left", "down", "still")


def test_bad_long_range_configs_are_errors():
    with pytest.raises(ValueError, match="2 \\* event_frames \\+ gap <= num_frames"):
        generate_dataset(dataclasses.replace(LONG, gap=200), "train", 1)
    with pytest.raises(ValueError, match="num_classes must be in 2..6 for task 'long_range'"):
        generate_dataset(dataclasses.replace(LONG, num_classes=7), "train", 1)


def test_the_recipe_splits_accuracy_into_kinds_and_order():
    names = list(synthetic_long.PAIR_NAMES)
    confusion = np.zeros((6, 6), int)
    for c in range(6):
        confusion[c, c] = 6  # right
        confusion[c, c ^ 1] = 4  # the same kinds in the other order (pairs are 0/1, 2/3, 4/5)
        confusion[c, (c + 2) % 6] = 2  # other kinds
    pair, order = long_range.order_scores({"label_set": names, "confusion": confusion.tolist()})
    assert pair == pytest.approx(10 / 12) and order == pytest.approx(6 / 10)


def test_the_recipe_refuses_an_unknown_head_before_any_work(tmp_path, capsys):
    assert long_range.main(["--workdir", str(tmp_path / "wd"), "--heads", "tcn,gru"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --heads 'tcn,gru': unknown ['gru']") and "mean,tcn" in err
    assert not (tmp_path / "wd").exists()
