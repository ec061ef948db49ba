"""Charades-format video_folder builds (real PyAV videos, overlapping intervals), the rows and
actions skipped, the per-frame targets of training clips and eval views after fps resampling and
looping, and old datasets without intervals."""

import csv
import dataclasses
import json

import numpy as np
import pytest
from videos import write_video

from i3d_jax.data import actions, build, charades, pipeline, schema, stored_video
from i3d_jax.data.video_folder import VideoFolder

NATIVE_FPS = 30  # written; built at 25 fps: stored frame k shows native frame round(1.2 k)
LEVEL = 8  # native frame j has brightness LEVEL * (j + 1)
CLASSES = "c000 Holding some clothes\nc001 Putting clothes somewhere\nc002 Taking a cup\n"
TRAIN_ROWS = [
    ("id", "subject", "scene", "actions", "length"),
    # overlapping intervals: c000 on frames 0..10 (<= 0.40 s), c001 on frames 8..15 (0.3-0.62 s)
    ("AAA01", "s1", "Kitchen", "c000 0.00 0.40;c001 0.30 0.62", "1.00"),
    ("BBB02", "s2", "Hall", "c002 0.10 0.50;c009 0.1 0.2;c001 4.0 6.0", "1.00"),  # 2 bad actions
    ("BAD03", "s3", "Hall", "c000 1.0", "1.00"),  # malformed: skipped row
    ("NEG04", "s4", "Hall", "", "1.00"),  # no actions: a video of negatives
    ("LEN05", "s5", "Hall", "c000 0.1 0.2", "soon"),  # malformed length: skipped row
    ("GONE6", "s6", "Hall", "c001 0.0 1.0", "3.0"),  # no such video file: skipped at build
]
TEST_ROWS = [("id", "actions", "length"), ("CCC07", "c001 0.20 0.50;c002 0.40 0.80", "1.00")]


def native_frames(n: int, tint: int = 0, h: int = 20, w: int = 24) -> np.ndarray:
    """Green and blue give the native frame index; red, `tint`, tells the videos apart."""
    levels = LEVEL * (np.arange(n) + 1)
    out = np.broadcast_to(levels[:, None, None, None], (n, h, w, 3)).astype(np.uint8).copy()
    out[..., 0] = tint
    return out


def native_index(frames: np.ndarray) -> np.ndarray:
    """The native frame each decoded frame shows (from its green and blue)."""
    return np.rint(frames[..., 1:].reshape(len(frames), -1).mean(1) / LEVEL - 1).astype(int)


def write_csv(path, rows) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


@pytest.fixture(scope="module")
def charades_set(tmp_path_factory):
    """A Charades-format source (3 classes, train and test CSVs, videos of 1 s at 30 fps in
    sub-folders) and its video_folder dataset built at 25 fps: `(root, data_dir, builder)`."""
    root = tmp_path_factory.mktemp("charades_src")
    for i, (vid, n) in enumerate((("AAA01", 30), ("BBB02", 30), ("NEG04", 30), ("CCC07", 30))):
        frames = native_frames(n, tint=40 + 60 * i)
        write_video(root / "videos" / vid[:1] / f"{vid}.mp4", frames, fps=NATIVE_FPS)
    (root / "Charades_v1_classes.txt").write_text(CLASSES)
    write_csv(root / "Charades_v1_train.csv", TRAIN_ROWS)
    write_csv(root / "Charades_v1_test.csv", TEST_ROWS)
    data_dir = tmp_path_factory.mktemp("charades_tfds")
    csvs = [str(root / "Charades_v1_train.csv"), str(root / "Charades_v1_test.csv")]
    code = build.main(["video_folder", "--data_dir", str(data_dir), "--manual_dir", str(root),
                       "--short_side", "16", "--charades_csv", csvs[0], "--charades_csv", csvs[1]])  # fmt: skip
    assert code == 0
    return root, data_dir, VideoFolder(data_dir=str(data_dir))  # read back without the CSVs


def examples(builder, split: str) -> dict:
    src = schema.data_source(builder, split)
    return {ex["video_id"]: ex for ex in (schema.example_to_numpy(src[i]) for i in range(len(src)))}


def test_charades_build_stores_intervals_and_counts_what_it_skipped(charades_set):
    root, _, builder = charades_set
    info = builder.info
    assert info.features["label"].names == ["c000", "c001", "c002"]
    assert {k: v.num_examples for k, v in info.splits.items()} == {"train": 3, "test": 1}
    notes = info.metadata["annotations"]
    assert (notes["rows"], notes["videos"], notes["bad_rows"], notes["bad_actions"]) == (7, 5, 2, 2)
    assert notes["actions"] == 6 and notes["class_descriptions"]["c002"] == "Taking a cup"
    problems = [(p["line"], p["id"], p["reason"]) for p in notes["problems"]]
    assert [p[:2] for p in problems] == [(4, "BAD03"), (6, "LEN05"), (3, "BBB02"), (3, "BBB02")]
    assert "not 'class start end'" in problems[0][2] and "'soon' is not a number" in problems[1][2]
    assert "unknown class 'c009'" in problems[2][2]
    assert problems[3][2].startswith("interval c001 4.00 6.00 is outside the video")
    assert info.metadata["skipped"]["count"] == 1  # GONE6: no file
    assert "GONE6" in info.metadata["skipped"]["files"][0]["reason"]
    train = examples(builder, "train")
    a = train["AAA01"]
    assert a["num_frames"] == 25 and a["fps"] == 25.0  # 1 s at 25 fps
    assert a["actions"]["label"].tolist() == [0, 1]
    np.testing.assert_allclose(a["actions"]["start"], [0.0, 0.3], atol=1e-6)
    np.testing.assert_allclose(a["actions"]["end"], [0.4, 0.62], atol=1e-6)
    assert a["label"] == 0 and train["BBB02"]["label"] == 2  # the earliest action
    assert train["NEG04"]["label"] == -1 and len(train["NEG04"]["actions"]["label"]) == 0
    assert train["BBB02"]["actions"]["label"].tolist() == [2]  # the two bad actions dropped
    # stored frame k shows native frame round(1.2 k): the 25 fps grid over the 30 fps video
    shown = native_index(stored_video.decode_video(a))
    assert shown.tolist() == [int(np.floor(1.2 * k + 0.5)) for k in range(25)]


def test_strict_fails_on_a_bad_row_naming_it(charades_set, tmp_path, capsys):
    root, _, _ = charades_set
    with pytest.raises(charades.CharadesError, match=r"Charades_v1_train.csv:4 \(id BAD03\)"):
        charades.scan(root, [root / "Charades_v1_train.csv"], strict=True)
    write_csv(tmp_path / "t_train.csv", TRAIN_ROWS[:3])  # only action problems (row 3)
    with pytest.raises(charades.CharadesError, match=r"t_train.csv:3 \(id BBB02\): unknown"):
        charades.scan(root, [tmp_path / "t_train.csv"], strict=True)
    code = build.main(["video_folder", "--data_dir", str(tmp_path / "d"), "--manual_dir",
                       str(root), "--strict", "--charades_csv", str(root / "Charades_v1_train.csv")])  # fmt: skip
    assert (
        code == 2
        and "error: charades: Charades_v1_train.csv:4 (id BAD03)" in capsys.readouterr().err
    )
    with pytest.raises(charades.CharadesError, match="cannot tell the split"):
        charades.scan(root, [root / "Charades_v1_classes.txt"])
    # without a classes file the classes are the names the CSV uses
    write_csv(tmp_path / "x_val.csv", [("id", "actions", "length"), ("Q", "c7 0 1;c3 0 1", "2")])
    found = charades.scan(tmp_path, [tmp_path / "x_val.csv"])
    assert found.class_names == ("c3", "c7") and found.entries[0].split == "validation"
    assert found.entries[0].actions == ((1, 0.0, 1.0), (0, 0.0, 1.0))
    assert found.entries[0].path is None  # no video: the build skips and records it


def test_training_clip_targets_follow_the_resampled_and_looped_frames(charades_set):
    _, _, builder = charades_set
    src = builder.as_data_source("train", deserialize_method=schema.RAW_DESERIALIZE)
    a = next(i for i in range(len(src)) if src[i]["video_id"] == b"AAA01")
    spec = pipeline.TrainSpec(clip_length=40, crop_size=8, flip=False, multilabel_classes=3)
    ds = pipeline.train_dataset(pipeline.InMemorySource([src[a]] * 2), spec, 2, seed=3,
                                process_index=0, process_count=1)  # fmt: skip
    batch = next(iter(ds))
    ks = {int(np.floor(1.2 * k + 0.5)): k for k in range(25)}  # native frame -> stored frame
    for clip, targets in zip(batch["video"], batch["targets"], strict=True):
        stored = np.array([ks[j] for j in native_index(clip)])  # 40 frames of a 25-frame video
        assert len(set(stored.tolist())) == 25  # looped: every stored frame, some twice
        assert np.all(np.diff(stored)[np.diff(stored) != 1] == -24)  # wraps from 24 to 0
        t = stored / 25.0
        expect = np.stack([t <= 0.4, (t >= 0.3) & (t <= 0.62), np.zeros_like(t, bool)], 1)
        np.testing.assert_array_equal(targets, expect.astype(np.float32))
        assert targets[:, 0].sum() + targets[:, 1].sum() > 0
    assert batch["targets"].shape == (2, 40, 3) and batch["targets"].dtype == np.float32


def test_eval_views_carry_the_whole_videos_targets(charades_set):
    _, data_dir, _ = charades_set
    src = VideoFolder(data_dir=str(data_dir)).as_data_source(
        "test", deserialize_method=schema.RAW_DESERIALIZE
    )
    spec = pipeline.EvalSpec(crop_size=8, max_frames=30, multilabel_classes=3)
    (view,) = list(pipeline.eval_dataset(src, spec, 1, process_index=0, process_count=1))
    assert view["num_frames"].tolist() == [25] and view["total_frames"].tolist() == [25]
    k = np.arange(30) % 25  # looped to max_frames
    t = k / 25.0
    expect = np.stack([np.zeros(30, bool), (t >= 0.2) & (t <= 0.5), (t >= 0.4) & (t <= 0.8)], 1)
    np.testing.assert_array_equal(view["targets"][0], expect.astype(np.float32))
    assert view["video_targets"].tolist() == [[0.0, 1.0, 1.0]]


def test_frame_targets_rule_and_first_action():
    ex = {schema.FPS: np.float32(10.0), schema.ACTIONS: actions.as_feature([(2, 0.3, 0.5)])}
    np.testing.assert_array_equal(
        actions.frame_targets(ex, [2, 3, 4, 5, 6, 0], 3)[:, 2], [0, 1, 1, 1, 0, 0]
    )  # closed interval at 0.3 and 0.5 s, float32 ends included
    assert actions.first_action([(4, 1.0, 2.0), (1, 0.5, 0.6), (2, 0.5, 3.0)]) == 2
    assert actions.first_action([]) == -1
    with pytest.raises(ValueError, match="outside the 2 classes"):
        actions.frame_targets(ex, [0], 2)


def test_a_dataset_without_intervals_reads_as_before_and_is_refused_by_name(tmp_path):
    from i3d_jax.training.tasks import multilabel

    write_video(tmp_path / "src" / "train" / "jump" / "v0.mp4", native_frames(4), fps=25)
    old = VideoFolder(folder=tmp_path / "src", data_dir=str(tmp_path / "tfds"), short_side=16)
    old.download_and_prepare()
    assert schema.ACTIONS not in old.info.features
    cfg = type("D", (), dict(name="video_folder", data_dir=str(tmp_path / "tfds"), folder="",
                             builder_config="rgb", in_memory=False, flow=None))  # fmt: skip
    src, info = pipeline.load_source(cfg, "train")
    assert not info.actions and schema.ACTIONS not in src[0] and src[0]["num_frames"] == 4
    with pytest.raises(multilabel.UsageError, match="has no action intervals"):
        multilabel.check_actions(info)


def test_a_multilabel_run_trains_on_the_charades_dataset_and_eval_writes_map(
    charades_set, tmp_path
):
    """train.py's and eval.py's units on the built dataset (the `micro` stand-in network)."""
    import jax
    from multihost_worker import micro_config
    from sklearn.metrics import average_precision_score

    from i3d_jax import sharding
    from i3d_jax.training import evaluate, loop
    from i3d_jax.training.tasks import multilabel

    _, data_dir, _ = charades_set
    c = micro_config(num_train_steps=4, batch_size=2, **{"input.clip_length": 16})
    c.task = "multilabel"
    c.dataset.name, c.dataset.builder_config = "video_folder", "rgb"
    c.dataset.data_dir, c.dataset.eval_split = str(data_dir), "train"  # 3 videos, 3 classes
    c.model.num_classes, c.eval.max_frames = 3, 32
    mesh = sharding.make_mesh(devices=jax.devices()[:1])
    out = loop.train_and_evaluate(c, tmp_path / "run", mesh=mesh)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run/metrics.jsonl").open()
              if '"loss"' in line]  # fmt: skip
    assert len(losses) == 4 and all(0.3 < v < 1.5 for v in losses)  # BCEs near log 2
    assert json.loads((tmp_path / "run/data.json").read_text())["multilabel"] is True
    res = evaluate.evaluate(c, tmp_path / "run")
    saved = json.loads((tmp_path / "run/eval/results.json").read_text())
    assert saved["video_mAP"] == res["video_mAP"] == out["eval"]["video_mAP"]
    assert (saved["classes_with_positives"], saved["num_videos"], saved["videos_trimmed"]) == (
        3,
        3,
        0,
    )
    assert set(saved["per_class_ap"]) == {"c000", "c001", "c002"}
    assert (tmp_path / "run/eval/per_class_ap.json").is_file()
    # the same numbers from the predictions, with sklearn's AP
    task = multilabel.MultiLabelVideo(c)
    data = task.data()
    model = task.build_model()
    variables, _ = evaluate.load_variables(task, data, tmp_path / "run", model, mesh)
    preds = task.predict(model, variables, mesh, data.eval, data.info)
    rows = sorted(tuple(r) for r in preds["video_targets"].tolist())
    assert rows == [(0, 0, 0), (0, 0, 1), (1, 1, 0)]  # NEG04, BBB02, AAA01
    want = [average_precision_score(preds["video_targets"][:, k], preds["video_scores"][:, k])
            for k in range(3)]  # fmt: skip
    assert saved["video_mAP"] == pytest.approx(np.mean(want), rel=1e-6)
    frame_t = preds["frame_targets"].reshape(-1, 3)
    frame_s = preds["frame_scores"].reshape(-1, 3)
    want = [average_precision_score(frame_t[:, k], frame_s[:, k]) for k in range(3)]
    assert saved["frame_mAP"] == pytest.approx(np.mean(want), rel=1e-6)
    assert frame_t.sum(0).tolist() == [11, 8, 10]  # AAA01's c000 and c001, BBB02's c002


def test_beam_work_files_keep_the_intervals_and_name_them_in_the_digest(charades_set, tmp_path):
    """The Beam build's one path of its own: a finished video's work file (read back on resume)
    and its name. (The full Beam build's examples equal the sequential ones: checked by hand,
    11 s on DirectRunner, not in the suite.)"""
    from etils import epath

    from i3d_jax.data import video_beam

    _, _, sequential = charades_set
    ex = examples(sequential, "train")["AAA01"]
    ex[schema.ACTIONS] = actions.as_feature([(1, 0.5, 2.0), (0, 0.0, 0.25)])
    video_beam._save_example(epath.Path(tmp_path / "x.npz"), ex)
    back = video_beam._load_example(epath.Path(tmp_path / "x.npz"))
    assert back[schema.ACTIONS] == {"label": [1, 0], "start": [0.5, 0.0], "end": [2.0, 0.25]}
    assert back[schema.VIDEO] == ex[schema.VIDEO] and back[schema.LABEL] == ex[schema.LABEL]
    entry = charades.scan(*_source(charades_set)).entries[0]
    other = dataclasses.replace(entry, actions=entry.actions[:1])
    assert video_beam.entry_digest(entry, "s") != video_beam.entry_digest(other, "s")


def _source(charades_set):
    root = charades_set[0]
    return root, [root / "Charades_v1_train.csv"]
