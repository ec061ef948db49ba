"""What a run says: what it loaded (and whether the head was replaced), the real config field in
the crop error, the new-head hint, per-class accuracy by class name, no top-5 with 5 classes or
fewer, one warning when clips loop short videos, no scipy warning when seeds agree, rates that
leave out the compilation, and a flow build bar with a total."""

import io
import json
import warnings

import jax
import numpy as np
import pytest
from multihost_worker import micro_config, micro_data
from tqdm import tqdm

from i3d_jax.data import flow_build, pipeline
from i3d_jax.data.pipeline import InMemorySource, TrainSpec
from i3d_jax.projects.ablate import report as ablate_report
from i3d_jax.training import config as config_lib
from i3d_jax.training import evaluation, loop, run_utils
from i3d_jax.training.tasks import video_model
from i3d_jax.weights import common, orbax_dir


def test_pretrained_init_says_what_it_loaded_and_names_the_new_head_flag(tmp_path, capsys):
    config = micro_config()
    config.model.preset, config.input.crop_size, config.input.clip_length = "tiny", 32, 16
    model = video_model.build_model(config)
    orbax_dir.save(common.random_variables(model, seed=1), model, tmp_path / "w")
    config.init.method, config.init.source = "pretrained", str(tmp_path / "w")
    config.model.num_classes = 6  # the source has 4
    key = jax.random.key(0, impl="rbg")
    with pytest.raises(ValueError) as e:
        video_model.initial_variables(config, video_model.build_model(config), key)
    assert "Logits/Conv3d_0c_1x1/conv_3d/kernel" in str(e.value)
    assert str(e.value).endswith(
        "The source's head (Logits) has 4 classes, config.model.num_classes=6: set "
        "--config.init.new_head=True to start a new head"
    )
    config.init.new_head = True
    out = video_model.initial_variables(config, video_model.build_model(config), key)
    assert out["params"]["Logits"]["Conv3d_0c_1x1"]["conv_3d"]["bias"].shape == (6,)
    assert capsys.readouterr().out == (
        f"init: pretrained weights loaded from {tmp_path / 'w'} (Logits re-initialised: "
        "init.new_head=True)\n"
    )


def test_the_crop_error_names_config_fields():
    """It suggested `global_pool=True`, which is no config field."""
    c = config_lib.load_config_file("configs/kinetics400_rgb.py")
    c.input.crop_size = 112
    with pytest.raises(ValueError) as e:
        config_lib.validate_config(c)
    assert str(e.value) == (
        "config.input.crop_size=112 is too small for model.preset='release': its 7x7 logits pool "
        "(schedule 'paper') needs crops of at least 193 px; use --config.input.crop_size=193 or "
        "more, or a preset that pools globally over space (--config.model.preset=small or tiny)"
    )
    c.input.crop_size = 193
    config_lib.validate_config(c)


def test_per_class_accuracy_by_name_and_no_top5_with_5_classes_or_fewer():
    video = {
        "logits": np.eye(4, dtype=np.float32)[[0, 1, 1, 3]],
        "label": np.array([0, 1, 2, 3]),
        "index": np.arange(4),
    }
    r = evaluation.summarize(None, 4, video=video, label_names=("up", "down", "left", "right"))
    assert r["per_class_top1"] == {"up": 1.0, "down": 1.0, "left": 0.0, "right": 1.0}
    assert r["video_top5"] is None and r["video_top1"] == 0.75
    assert evaluation.scalar_results(r) == {"video_top1": 0.75}
    assert "top5" not in evaluation.format_summary(r)
    six = {**video, "logits": np.eye(6, dtype=np.float32)[[0, 1, 1, 3]]}
    r = evaluation.summarize(None, 6, video=six, label_names=("up", "down", "left", "right"))
    assert r["video_top5"] == 1.0 and set(r["per_class_top1"]) == {"up", "down", "left", "right"}
    assert evaluation.class_names(("up", "down"), 4) == ["up", "down", "2", "3"]


def test_clips_longer_than_the_videos_warn_once():
    pipeline._LOOP_WARNED.clear()
    src = InMemorySource(
        [
            {"video": np.zeros((5, 8, 8, 3), np.uint8), "label": 0, "video_id": f"v{i}"}
            for i in range(8)
        ]
    )
    ds = pipeline.train_dataset(
        src, TrainSpec(clip_length=9, crop_size=8), 4, seed=0, process_index=0, process_count=1,
        num_threads=1,
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        it = iter(ds)
        for _ in range(4):
            next(it)
    said = [str(w.message) for w in caught if "short videos loop" in str(w.message)]
    assert len(said) == 1, said
    assert said[0].startswith("training clips of 9 frames are longer than video 'v")
    assert "(5 frames)" in said[0]


def test_ablate_welch_with_agreeing_seeds_is_quiet_and_says_why():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's RuntimeWarning would fail here
        same = ablate_report.welch([0.9, 0.9, 0.9], [0.9, 0.9, 0.9], 0.05)
        apart = ablate_report.welch([0.5, 0.5, 0.5], [0.7, 0.7, 0.7], 0.05)
        close = ablate_report.welch([0.9, 0.9, 0.9], [0.9, 0.9, 0.9000001], 0.05)
    assert same == {"diff": 0.0, "t": None, "p": None, "beyond_noise": False,
                    "note": ablate_report.SEEDS_AGREE}  # fmt: skip
    assert apart["note"] == ablate_report.SEEDS_AGREE and apart["diff"] == pytest.approx(-0.2)
    assert ablate_report._test_cell(apart) == "-20.0 (seeds agree: no test)"
    assert close["p"] == pytest.approx(0.4226, abs=1e-3) and "note" not in close


def test_rates_leave_out_the_first_step(tmp_path):
    """The bar showed `1/6 [02:24<12:04]`: the first step's compilation in its rate and ETA."""
    bar = run_utils.StepProgress(True, total=10, start=3)
    bar.t0 -= 5.0  # the first step took 5 s (compiling)
    assert bar.first_step_done(4) >= 5.0
    assert bar.bar.n == 4 and bar.bar.format_dict["elapsed"] < 1.0  # started after step 4
    assert bar.fields["first_step"].endswith("s") and float(bar.fields["first_step"][:-1]) >= 5
    bar.update()
    assert bar.bar.n == 5
    bar.close()
    # metrics.jsonl: the first step's row has its seconds, the rates start after it.
    loop.train_and_evaluate(
        micro_config(num_train_steps=3), tmp_path, data=micro_data(evaluate=False)
    )
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert "steps_per_s" not in rows[0] and rows[0]["first_step_s"] > 0
    assert all(r["steps_per_s"] > 0 for r in rows[1:]) and len(rows) == 3


def test_the_flow_build_bar_has_a_total(monkeypatch):
    bars = []

    def recording_bar(progress, desc, total):
        bars.append(tqdm(total=total, desc=desc, unit="pair", file=io.StringIO()))
        return bars[-1]

    monkeypatch.setattr(flow_build, "_progress_bar", recording_bar)
    totals = []
    videos = [np.zeros((t, 8, 8, 3), np.uint8) for t in (3, 5, 5)]

    def flow_fn(frames):
        totals.append(bars[0].total)
        return np.zeros((len(frames) - 1, 8, 8, 2), np.float32)

    settings = flow_build.FlowSettings()
    out = list(flow_build.flow_videos(videos, settings, total_videos=3, flow_fn=flow_fn))
    assert [len(f) for f in out] == [2, 4, 4]
    assert totals == [6, 9, 10]  # 2 pairs x 3 videos, then (2 + 4) / 2 x 3, then exact
    assert bars[0].total == bars[0].n == 10
