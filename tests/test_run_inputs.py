"""What a run reads, checked before any model or device work: a missing data_dir, dataset or
split is one error naming the path, what was expected and how to build it (and creates
nothing); the head must fit the dataset's classes; the crop must fit the recorded frame size;
the second stream of a fusion takes `--config`-style overrides."""

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from multihost_worker import ROOT, micro_config, micro_source, restart_config

from i3d_jax.cli import UsageError
from i3d_jax.data import pipeline
from i3d_jax.training import config as config_lib
from i3d_jax.training import evaluate, loop
from i3d_jax.training.tasks import video


def _dataset(**fields):
    base = {"name": "video_folder", "builder_config": "", "data_dir": "", "folder": "",
            "train_split": "train", "eval_split": "validation", "in_memory": False}  # fmt: skip
    return SimpleNamespace(**{**base, **fields})


def test_a_missing_data_dir_or_dataset_is_one_error_and_creates_nothing(tmp_path):
    """It was TFDS's `AssertionError: Manual directory .../downloads/manual does not exist`,
    after creating that tree."""
    missing = tmp_path / "nope"
    with pytest.raises(UsageError) as e:
        pipeline.load_source(_dataset(data_dir=str(missing)), "train")
    assert f"config.dataset.data_dir='{missing}' does not exist" in str(e.value)
    assert f"python -m i3d_jax.data.build video_folder --data_dir {missing}" in str(e.value)
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    for config in ("", "flow"):
        with pytest.raises(UsageError) as e:
            pipeline.load_source(_dataset(data_dir=str(empty), builder_config=config), "train")
        bc = config or "rgb"
        assert f"no video_folder dataset (builder config {bc!r}) in {empty}/video_folder/{bc}/" in (
            str(e.value)
        )
        assert (
            f"`python -m i3d_jax.data.build video_folder --data_dir {empty} --config {bc} "
            "--manual_dir VIDEOS` (or set config.dataset.folder=VIDEOS" in str(e.value)
        )
    assert list(empty.iterdir()) == []  # no downloads/manual tree
    with pytest.raises(UsageError, match="config.dataset.folder='/no/such/videos' is not a dir"):
        pipeline.load_source(_dataset(data_dir=str(empty), folder="/no/such/videos"), "train")
    assert list(empty.iterdir()) == []


def test_train_py_with_a_missing_data_dir_exits_2_with_one_line(tmp_path):
    missing = tmp_path / "tfds"
    cmd = [sys.executable, str(ROOT / "train.py"), "--config", "configs/synthetic_motion_flow.py",
           "--workdir", str(tmp_path / "run"), f"--config.dataset.data_dir={missing}"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 2, r.stderr
    (line,) = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: config.dataset.data_dir='{missing}' does not exist")
    assert "Traceback" not in r.stderr and not missing.exists()


@pytest.fixture(scope="module")
def tiny_synthetic(tmp_path_factory):
    """synthetic_motion/tiny built once (16 + 8 videos of 8 frames, 16x16)."""
    data_dir = tmp_path_factory.mktemp("tfds")
    cfg = _dataset(name="synthetic_motion", builder_config="tiny", data_dir=str(data_dir))
    pipeline.load_source(cfg, "train")
    return str(data_dir)


def _tiny_config(data_dir: str, **overrides):
    c = micro_config(**{"model.num_classes": 4, "input.crop_size": 8, **overrides})
    c.dataset.name, c.dataset.builder_config, c.dataset.data_dir = (
        "synthetic_motion",
        "tiny",
        data_dir,
    )
    return c


def test_a_missing_split_names_the_splits_the_dataset_has(tiny_synthetic):
    """A `test/` folder with the default eval_split=validation only warned `no evaluation`."""
    with pytest.raises(UsageError) as e:
        video.load_data(_tiny_config(tiny_synthetic, **{"dataset.eval_split": "test"}))
    assert "config.dataset.eval_split='test': the synthetic_motion dataset in " in str(e.value)
    assert "has no split 'test'; its splits are ['train', 'validation']; use " in str(e.value)
    assert "--config.dataset.eval_split=validation, or --config.dataset.eval_split=''" in str(
        e.value
    )
    data = video.load_data(_tiny_config(tiny_synthetic, **{"dataset.eval_split": "validation[:4]"}))
    assert len(data.eval) == 4 and data.info.splits == ("train", "validation")
    assert video.load_data(_tiny_config(tiny_synthetic, **{"dataset.eval_split": ""})).eval is None
    # A folder build with train/ and test/: the default eval split names test.
    builder = SimpleNamespace(info=SimpleNamespace(splits={"test": 1, "train": 2}), data_dir="D")
    with pytest.raises(UsageError, match=r"splits are \['test', 'train'\]; use --config\.data"
                       r"set\.eval_split=test, or"):  # fmt: skip
        pipeline._check_split(builder, _dataset(), "validation")
    assert pipeline.split_names("train+validation[:10%]") == ["train", "validation"]


def test_a_crop_larger_than_the_recorded_frames_is_refused_before_any_batch(tiny_synthetic):
    """It was found ~50 s in, at the first batch; the metadata records the frame size."""
    with pytest.raises(UsageError) as e:
        video.load_data(_tiny_config(tiny_synthetic, **{"input.crop_size": 32}))
    assert (
        "config.input.crop_size=32 is larger than the frames of dataset synthetic_motion/tiny"
        in (str(e.value))
    )
    assert "(smaller side 16 px, as its metadata records); use --config.input.crop_size=16" in (
        str(e.value)
    )
    assert (
        video.load_data(_tiny_config(tiny_synthetic, **{"input.crop_size": 16})).info.short_side
        == 16
    )


def test_the_head_must_fit_the_dataset_classes(tmp_path, monkeypatch):
    """A 5-way head on a 4-class dataset trained to the end, then failed drawing the confusion."""
    monkeypatch.setattr(pipeline, "load_source", lambda *a, **k: micro_source())
    config = micro_config(num_train_steps=2, **{"model.num_classes": 5})
    with pytest.raises(UsageError) as e:
        loop.train_and_evaluate(config, tmp_path / "five")
    assert str(e.value) == (
        "dataset micro has 4 classes but config.model.num_classes=5: 1 outputs would never see a "
        "label (set --config.model.allow_extra_classes=True to keep a larger head on purpose); "
        "use --config.model.num_classes=4"
    )
    assert not (tmp_path / "five" / "checkpoints").exists()
    with pytest.raises(UsageError, match="2 of its classes could never be predicted"):
        loop.train_and_evaluate(micro_config(**{"model.num_classes": 2}), tmp_path / "two")
    config.model.allow_extra_classes = True
    out = loop.train_and_evaluate(config, tmp_path / "five")
    res = out["eval"]
    assert np.asarray(res["confusion"]).shape == (5, 5) and res["label_set"] == ["a", "b", "c", "d"]
    assert set(res["per_class_top1"]) <= {"a", "b", "c", "d"}  # class names, not "0", "1"
    assert (tmp_path / "five" / "eval" / "confusion.png").stat().st_size > 1000
    per_class = json.loads((tmp_path / "five" / "eval" / "per_class.json").read_text())
    assert per_class == res["per_class_top1"]


def test_the_second_stream_takes_config_overrides(micro_run, tmp_path, monkeypatch):
    """`eval.fuse_config` took only a file: the second stream could not get `--config`
    overrides (e.g. its own data_dir), so the README's fuse command failed on one's dataset."""
    workdir, res = micro_run
    seen = []

    def load_source(cfg, split, **kwargs):
        seen.append((cfg.data_dir, split))
        return micro_source()

    monkeypatch.setattr(pipeline, "load_source", load_source)
    other = tmp_path / "other_stream.py"
    other.write_text(
        "from multihost_worker import restart_config\n\n\ndef get_config():\n"
        "    return restart_config()\n"
    )
    config = restart_config()
    config.eval.fuse_with, config.eval.fuse_config = str(workdir), str(other)
    config.eval.fuse_overrides = "dataset.data_dir=/data/flow_tfds; eval.batch_size=16"
    results = evaluate.evaluate(config, workdir, out=str(tmp_path / "fused.json"))
    assert seen == [("", "validation"), ("/data/flow_tfds", "validation")]
    assert results["streams"]["rgb_2"]["video_top1"] == res["eval"]["video_top1"]
    seen.clear()
    config.eval.fuse_overrides = "dataset.data_dirr=/x"
    with pytest.raises(UsageError, match=r"config.eval.fuse_overrides: unknown config field "):
        evaluate.evaluate(config, workdir, out=str(tmp_path / "bad.json"))
    assert seen == []  # refused before the first stream was evaluated

    # The README's command on one's own dataset: both streams pointed at it.
    rgb = config_lib.load_config_file(ROOT / "configs" / "kinetics400_rgb.py")
    rgb.eval.fuse_with = "runs/k400_flow"
    rgb.eval.fuse_config = str(ROOT / "configs" / "kinetics400_flow.py")
    rgb.eval.fuse_overrides = "dataset.data_dir=/data/tfds; model.num_classes=10\n"
    flow = evaluate.second_stream_config(rgb)
    config_lib.validate_config(flow)
    assert (flow.modality, flow.dataset.builder_config) == ("flow", "flow")
    assert (flow.dataset.data_dir, flow.model.num_classes) == ("/data/tfds", 10)
