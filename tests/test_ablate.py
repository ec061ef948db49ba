"""`python -m i3d_jax.ablate`: the grid, resuming, launch lines, and the report on fake run
directories with known numbers (means, sample stds, Welch's t and p checked by hand)."""

import json
import math
import pathlib

import numpy as np
import pytest
from scipy import stats

from i3d_jax import schedules
from i3d_jax.projects.ablate import cli as ablate
from i3d_jax.projects.ablate import grid as ablate_grid
from i3d_jax.projects.ablate import report as ablate_report
from i3d_jax.training.config import load_config_file, with_overrides

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "synthetic_motion.py")

# Known accuracies per (setting, seed); `temporal_late` seed 2 is left unfinished.
CLIP = {"schedule-paper": [0.90, 0.80, 0.85], "schedule-temporal_late": [0.60, 0.62]}
VIDEO = {"schedule-paper": [0.95, 0.90, 0.92], "schedule-temporal_late": [0.91, 0.89]}
RATES = [3.0, 20.0, 24.0, 21.0]  # logged clips/s; the first (with the compile) is left out


def _grid(seeds: int = 3) -> ablate_grid.Grid:
    return ablate_grid.make_grid(
        CONFIG, ["model.schedule=paper,temporal_late"], ["input.clip_length=16"], seeds
    )


def _write_fake_runs(workdir: pathlib.Path) -> ablate_grid.Grid:
    grid = _grid()
    ablate_grid.write_manifest(grid, workdir)
    for name, gflops, params in (
        ("schedule-paper", 0.5, 1000),
        ("schedule-temporal_late", 0.8, 1000),
    ):
        (workdir / name).mkdir(parents=True)
        (workdir / name / "cost.json").write_text(json.dumps({"gflops": gflops, "params": params}))
    for run in grid.runs(workdir):
        if run.seed >= len(CLIP[run.setting]):
            continue
        run.results.parent.mkdir(parents=True)
        res = {"clip_top1": CLIP[run.setting][run.seed], "video_top1": VIDEO[run.setting][run.seed]}
        run.results.write_text(json.dumps(res))
        rows = [{"step": 10 * (i + 1), "loss": 1.0, "clips_per_s": r} for i, r in enumerate(RATES)]
        (run.workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return grid


def _welch_by_hand(a, b):
    ma, mb, va, vb = np.mean(a), np.mean(b), np.var(a, ddof=1), np.var(b, ddof=1)
    se2 = va / len(a) + vb / len(b)
    t = (ma - mb) / math.sqrt(se2)
    df = se2**2 / ((va / len(a)) ** 2 / (len(a) - 1) + (vb / len(b)) ** 2 / (len(b) - 1))
    return t, 2 * stats.t.sf(abs(t), df)


def test_report_on_fake_runs(tmp_path):
    _write_fake_runs(tmp_path)
    report = ablate_report.write_report(tmp_path, "model.schedule=paper")
    rows = {r["setting"]: r for r in report["settings"]}
    paper, late = rows["schedule-paper"], rows["schedule-temporal_late"]

    assert paper["clip_top1"]["mean"] == pytest.approx(0.85)
    assert paper["clip_top1"]["std"] == pytest.approx(0.05)  # sample std of .90 .80 .85
    assert late["clip_top1"]["mean"] == pytest.approx(0.61)
    assert late["clip_top1"]["std"] == pytest.approx(math.sqrt(0.0002))
    assert late["video_top1"]["mean"] == pytest.approx(0.90)
    assert (paper["runs_finished"], late["runs_finished"], late["runs_planned"]) == (3, 2, 3)
    assert paper["clips_per_s"] == pytest.approx(21.0)  # median of 20, 24, 21
    assert (paper["gflops"], late["gflops"]) == (0.5, 0.8)  # read from the cache

    rf = {r.endpoint: r.receptive_field for r in schedules.receptive_fields("paper", (16, 32, 32))}
    assert (paper["rf_t"], paper["rf_hw"]) == (rf["Mixed_5c"][0], rf["Mixed_5c"][1]) == (99, 379)
    assert late["rf_t"] == 57

    assert paper["baseline"] == "schedule-paper" and paper["vs_baseline"] == {}
    clip = late["vs_baseline"]["clip_top1"]
    t, p = _welch_by_hand(CLIP["schedule-temporal_late"], CLIP["schedule-paper"])
    assert clip["t"] == pytest.approx(t) and clip["p"] == pytest.approx(p)
    assert t == pytest.approx(-0.24 / math.sqrt(0.0025 / 3 + 0.0002 / 2))
    assert clip["diff"] == pytest.approx(-0.24)
    assert p < 0.05 and clip["beyond_noise"] is True
    video = late["vs_baseline"]["video_top1"]
    t, p = _welch_by_hand(VIDEO["schedule-temporal_late"], VIDEO["schedule-paper"])
    assert video["t"] == pytest.approx(t) and video["p"] == pytest.approx(p)
    assert p > 0.05 and video["beyond_noise"] is False

    md = (tmp_path / "report.md").read_text()
    assert "| schedule-temporal_late | 57 | 379 | 0.800 | 1,000 | 21.0 | 2/3 | 61.0 ± 1.4 |" in md
    assert "python -m i3d_jax.ablate report --workdir" in md
    assert json.loads((tmp_path / "report.json").read_text())["settings"][1]["rf_t"] == 57
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_baseline_must_be_in_the_grid(tmp_path, capsys):
    _write_fake_runs(tmp_path)
    assert (
        ablate.main(["report", "--workdir", str(tmp_path), "--baseline", "model.schedule=x"]) == 2
    )
    assert "error: --baseline 'model.schedule=x': 'x' is not among" in capsys.readouterr().err


def test_interrupted_grid_resumes_without_rerunning(tmp_path):
    grid = _grid(seeds=2)
    calls = []

    def fake_run(config, workdir):  # stands in for train_and_evaluate: writes what it writes last
        calls.append((config.model.schedule, config.seed, config.input.clip_length, workdir.name))
        if len(calls) == 3:
            raise KeyboardInterrupt  # the grid is stopped during its third run
        p = ablate_grid.Run("", (), 0, workdir).results
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps({"clip_top1": 1.0, "video_top1": 1.0}))

    with pytest.raises(KeyboardInterrupt):
        ablate_grid.run_grid(grid, tmp_path, fake_run, progress=False)
    assert calls == [("paper", 0, 16, "seed_0"), ("paper", 1, 16, "seed_1"),
                     ("temporal_late", 0, 16, "seed_0")]  # fmt: skip
    calls.clear()
    done = ablate_grid.run_grid(grid, tmp_path, fake_run, progress=False)
    assert calls == [("temporal_late", 0, 16, "seed_0"), ("temporal_late", 1, 16, "seed_1")]
    assert [pathlib.Path(p).relative_to(tmp_path).as_posix() for p in done["skipped"]] == [
        "schedule-paper/seed_0",
        "schedule-paper/seed_1",
    ]
    calls.clear()
    assert len(ablate_grid.run_grid(grid, tmp_path, fake_run, progress=False)["skipped"]) == 4
    assert calls == []


def test_launch_lines_and_grid_errors(tmp_path, capsys):
    args = ["run", "--config", CONFIG, "--axis", "model.schedule=paper,conv1_t1", "--axis",
            "init.inflate_method=mean,center", "--set", "num_train_steps=50", "--seeds", "2",
            "--workdir", str(tmp_path), "--launch", "--prefix", "srun -N1"]  # fmt: skip
    assert ablate.main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8
    assert lines[0] == (
        f"srun -N1 python train.py --config {CONFIG} --workdir "
        f"{tmp_path}/schedule-paper__inflate_method-mean/seed_0 --config.num_train_steps=50 "
        "--config.model.schedule=paper --config.init.inflate_method=mean --config.seed=0"
    )
    assert lines[-1].endswith("--config.init.inflate_method=center --config.seed=1")
    assert json.loads((tmp_path / "ablate.json").read_text())["axes"][0] == [
        "model.schedule",
        ["paper", "conv1_t1"],
    ]
    # A different grid in the same workdir, an unknown field, a bad value: errors, nothing run.
    bad = [
        (["--axis", "model.schedule=paper"], "holds a different grid"),
        (["--axis", "model.shedule=paper"], "unknown config field 'model.shedule'"),
        (["--axis", "model.schedule=paper,bogus"], "config.model.schedule='bogus' is not one of"),
        (["--axis", "num_train_steps=10,ten"], "num_train_steps='ten': expected an integer"),
    ]
    for extra, message in bad:
        wd = tmp_path if "different" in message else tmp_path / "other"
        argv = ["run", "--config", CONFIG, "--workdir", str(wd), "--launch", *extra]
        assert ablate.main(argv) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_forward_cost_of_the_tiny_network():
    """Real XLA cost analysis: less temporal pooling costs more; parameters do not change."""
    base = with_overrides(load_config_file(CONFIG), [("input.clip_length", 16)])
    paper = ablate_report.forward_cost(base)
    late = ablate_report.forward_cost(with_overrides(base, [("model.schedule", "temporal_late")]))
    assert paper["params"] == late["params"] > 10_000
    assert 0.001 < paper["gflops"] < late["gflops"] < 1.0
