"""`eval.py`'s fusion results side by side (the trained `micro` run fused with itself, real Orbax
checkpoint) and `python -m i3d_jax.two_stream`: its argument errors, seeds, resume and "already
finished" paths. The heavy stages (dataset builds, training, fused evaluation) of two_stream are
stand-ins here (`two_stream.Stages`): the real ones take minutes; they are the tested
`train_and_evaluate` and `evaluate.evaluate`."""

import json
import os
import pathlib

import pytest
from multihost_worker import micro_source, restart_config

from i3d_jax.data import pipeline
from i3d_jax.projects.two_stream import cli as two_stream
from i3d_jax.projects.two_stream.run import CONFIGS
from i3d_jax.training import evaluate


def test_fusion_results_hold_each_stream_and_the_fusion_side_by_side(
    micro_run, tmp_path, monkeypatch
):
    workdir, res = micro_run
    monkeypatch.setattr(pipeline, "load_source", lambda *a, **k: micro_source())
    config = restart_config()
    config.eval.fuse_with = str(workdir)  # the same run as the second stream
    out = tmp_path / "fused" / "results.json"
    results = evaluate.evaluate(config, workdir, out=str(out))
    on_disk = json.loads(out.read_text())
    streams = on_disk["streams"]
    assert list(streams) == ["rgb", "rgb_2", "fused"]
    top1 = res["eval"]["video_top1"]
    assert streams["rgb"]["video_top1"] == streams["rgb_2"]["video_top1"] == top1
    assert streams["rgb"]["clip_top1"] == res["eval"]["clip_top1"]
    assert streams["fused"] == {"video_top1": top1}  # 4 classes: no top-5
    assert on_disk["video_top5"] is None and res["eval"]["video_top5"] is None
    assert on_disk["video_top1"] == top1 and on_disk["clip_top1"] is None
    assert on_disk["fusion_weights"] == [0.5, 0.5] and results["streams"] == streams
    table = evaluate.format_streams(on_disk).splitlines()
    assert table[0].split() == ["stream", "clip", "top-1", "video", "top-1", "video", "top-5"]
    assert table[3].split()[:3] == ["fused", "-", f"{100 * top1:.2f}%"]
    assert evaluate.format_streams(res["eval"]) == ""  # one stream: no table


def _fake_stages(calls: list):
    """Stand-ins: record the calls; the fusion writes a results.json as evaluate.evaluate does,
    with accuracies that depend on the seed (rgb 0.5 + seed/10, flow 0.4, fused 0.9)."""

    def build(config):
        calls.append(("build", config.dataset.builder_config, config.dataset.data_dir))

    def train(config, workdir):
        calls.append(("train", config.modality, config.seed, workdir.name))

    def fuse(rgb, flow, seed_dir):
        calls.append(("fuse", rgb.seed, tuple(rgb.eval.fusion_weights)))
        streams = {
            "rgb": {"video_top1": 0.5 + rgb.seed / 10},
            "flow": {"video_top1": 0.4},
            "fused": {"video_top1": 0.9},
        }
        path = seed_dir / "fused" / "results.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"streams": streams}))
        return {"streams": streams}

    return two_stream.Stages(build=build, train=train, fuse=fuse)


def test_two_stream_runs_seeds_resumes_and_says_finished(tmp_path, capsys):
    calls = []
    wd = tmp_path / "ts"
    argv = ["--workdir", str(wd), "--seeds", "2", "--set", "num_train_steps=7"]
    assert two_stream.main(argv, _fake_stages(calls)) == 0
    assert calls[:2] == [
        ("build", "camouflage", str(wd / "data")),
        ("build", "camouflage_flow", str(wd / "data")),
    ]
    assert calls[2:] == [
        ("train", "rgb", 0, "rgb"), ("train", "flow", 0, "flow"), ("fuse", 0, (0.5, 0.5)),
        ("train", "rgb", 1, "rgb"), ("train", "flow", 1, "flow"), ("fuse", 1, (0.5, 0.5)),
    ]  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    summary = json.loads((wd / "summary.json").read_text())
    assert json.loads(out[-1]) == {
        **{s: summary["streams"][s] for s in ("rgb", "flow", "fused")},
        "metric": "video_top1",
        "seeds": 2,
        "summary": str(wd / "summary.json"),
    }
    assert summary["streams"]["rgb"]["mean"] == pytest.approx(0.55)
    assert summary["streams"]["rgb"]["sd"] == pytest.approx(0.0707107, rel=1e-5)
    assert summary["streams"]["flow"] == {"mean": pytest.approx(0.4), "sd": 0.0}
    assert out[-4].split() == ["rgb", "50.0", "60.0", "55.0", "±", "7.1"]
    assert out[-2].split() == ["fused", "90.0", "90.0", "90.0", "±", "0.0"]
    assert summary["plan"]["fixed"] == [["num_train_steps", 7]]
    assert set(summary["seconds"]) == {"build", "seed_0", "seed_1"}
    assert set(summary["seconds"]["seed_1"]) == {"train_rgb", "train_flow", "fuse"}

    calls.clear()  # the same command again (a config named another way): nothing runs
    rel = pathlib.Path(os.path.relpath(CONFIGS / "rgb.py"))
    assert two_stream.main([*argv, "--rgb_config", str(rel)], _fake_stages(calls)) == 0
    assert calls == []
    again = capsys.readouterr().out.splitlines()
    assert again[0].startswith("already finished: 2 seed(s)") and again[-1] == out[-1]

    (wd / "seed_1" / "fused" / "results.json").unlink()  # seed 1 cut short: only it runs again
    assert two_stream.main([*argv, "--seeds", "3"], _fake_stages(calls)) == 0
    assert [c for c in calls if c[0] != "build"] == [
        ("train", "rgb", 1, "rgb"), ("train", "flow", 1, "flow"), ("fuse", 1, (0.5, 0.5)),
        ("train", "rgb", 2, "rgb"), ("train", "flow", 2, "flow"), ("fuse", 2, (0.5, 0.5)),
    ]  # fmt: skip
    assert json.loads((wd / "summary.json").read_text())["skipped_seeds"] == [0]

    # Other settings in the same workdir are refused before anything runs.
    calls.clear()
    code = two_stream.main([*argv, "--fusion_weights", "0.7,0.3"], _fake_stages(calls))
    assert code == 2 and calls == []
    assert "holds other settings" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--seeds", "0"], "--seeds must be a positive integer, got 0"),
        (["--set", "model.no_such_field=1"], "unknown config field 'model.no_such_field'"),
        (["--set", "num_train_steps=many"], "expected an integer"),
        (["--fusion_weights", "1"], "--fusion_weights '1': expected two non-negative numbers"),
        (["--fusion_weights", "0,0"], "expected two non-negative numbers"),
        (["--flow_config", str(CONFIGS / "rgb.py")], "--flow_config: expected modality 'flow'"),
        (["--rgb_config", "configs/nope.py"], "config file 'configs/nope.py' not found"),
    ],
)
def test_two_stream_bad_arguments_are_errors_before_any_work(tmp_path, capsys, extra, message):
    calls = []
    assert two_stream.main(["--workdir", str(tmp_path / "w"), *extra], _fake_stages(calls)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert calls == [] and not (tmp_path / "w").exists()


def test_two_stream_needs_a_workdir(capsys):
    with pytest.raises(SystemExit) as e:
        two_stream.main(["--seeds", "2"])
    assert e.value.code == 2 and "--workdir" in capsys.readouterr().err
