"""A run's config is its contract (`i3d_jax.training.contract`): a resume that changes what its
checkpoint was made with is refused before any work, naming each field with both values; a
longer run only where the learning rate does not depend on `num_train_steps`; every change in
`config_history.jsonl`; the devices said on resume; a finished run answered from its records."""

import json
import pathlib
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from multihost_worker import ROOT, micro_config, micro_data

from i3d_jax import sharding
from i3d_jax.cli import UsageError  # UsageError is one (train.py: exit 2)
from i3d_jax.training import loop
from i3d_jax.training.config import load_config_file
from i3d_jax.training.tasks import video_model


def _run(config, workdir, **kwargs):
    return loop.train_and_evaluate(config, workdir, data=micro_data(evaluate=False), **kwargs)


def _history(workdir: pathlib.Path) -> list[dict]:
    path = workdir / "config_history.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _four_steps(**overrides):
    return micro_config(**{"num_train_steps": 4, "checkpoint.every_steps": 2, **overrides})


def test_a_resume_that_changes_the_contract_is_refused_naming_each_field(tmp_path):
    """The report: `--config.lr.base=0.5 --config.batch_size=16 --config.num_train_steps=6` on a
    finished 4-step run resumed at step 4 with the new values and overwrote config.json."""
    _run(_four_steps(), tmp_path)
    recorded = (tmp_path / "config.json").read_text()
    changed = _four_steps(batch_size=16, num_train_steps=6, **{"lr.base": 0.5})
    changed.optimizer.name = "adam"
    with pytest.raises(UsageError) as e:
        _run(changed, tmp_path)
    text = str(e.value)
    assert type(e.value).__name__ == "ContractError"
    assert "checkpoint at step 4" in text
    assert "lr.base: 0.1 -> 0.5" in text and "batch_size: 8 -> 16" in text
    assert "optimizer.name: 'sgd' -> 'adam'" in text and len(text) < 1500
    assert "num_train_steps" not in text  # a constant rate: the longer run alone is allowed
    assert (tmp_path / "config.json").read_text() == recorded
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2", "4"]
    assert [r["event"] for r in _history(tmp_path)] == ["start"]


def test_a_longer_run_resumes_only_where_the_schedule_is_defined_past_the_old_end(tmp_path, capsys):
    wd = tmp_path / "constant"
    _run(_four_steps(), wd)
    out = _run(_four_steps(num_train_steps=6, log_every_steps=2), wd)
    assert out["steps"] == 6 and out["start_step"] == 4
    line = loop.summary_lines(out)[0]
    assert line.startswith("trained 2 steps in ") and "(resumed at step 4)" in line
    said = capsys.readouterr().out
    assert "config changes at step 4: num_train_steps: 4 -> 6, log_every_steps: 1 -> 2" in said
    start, resume = _history(wd)
    assert start["event"] == "start" and start["config"]["num_train_steps"] == 4
    assert resume["event"] == "resume" and resume["step"] == 4
    assert resume["changes"] == {"log_every_steps": [1, 2], "num_train_steps": [4, 6]}
    assert json.loads((wd / "config.json").read_text())["num_train_steps"] == 6  # in force
    # Back to 4 steps: the checkpoint is past that end (it printed "already finished: 6 steps").
    with pytest.raises(UsageError, match=r"num_train_steps: 6 -> 4 \(the checkpoint"):
        _run(_four_steps(), wd)

    # Cosine: shaped by num_train_steps, so a longer run would change every rate; refused.
    cos = {"lr.schedule": "cosine", "lr.warmup_steps": 1}
    first = _run(_four_steps(**cos), tmp_path / "cosine")
    with pytest.raises(UsageError) as e:
        _run(_four_steps(num_train_steps=40, **cos), tmp_path / "cosine")
    text = str(e.value)
    assert "num_train_steps: 4 -> 40 (lr.schedule='cosine' is shaped by num_train_steps" in text
    assert "step 4 had learning rate 0.025, step 5 would get 0.0985" in text
    assert (
        "start a new workdir from this one's weights (init.method=pretrained, init.source=" in text
    )
    # ... which a new run can do: a training workdir is an init source (its latest checkpoint).
    longer = _four_steps(num_train_steps=40, **{"init.method": "pretrained",
                                                "init.source": str(tmp_path / "cosine")})  # fmt: skip
    got = video_model.initial_variables(
        longer, video_model.build_model(longer), jax.random.key(1, impl="rbg")
    )
    want = jax.device_get(first["state"]["params"])
    jax.tree.map(np.testing.assert_array_equal, got["params"], want)
    assert f"init: pretrained weights loaded from {tmp_path / 'cosine' / 'checkpoints' / '4'}" in (
        capsys.readouterr().out
    )


def test_a_resume_says_when_the_devices_or_mesh_changed(tmp_path, capsys):
    _run(_four_steps(), tmp_path)
    one = sharding.make_mesh(devices=jax.devices()[:1])
    _run(_four_steps(num_train_steps=6), tmp_path, mesh=one)
    said = capsys.readouterr().out
    (line,) = [x for x in said.splitlines() if x.startswith("resuming on")]
    assert line == (
        "resuming on 1 devices in 1 process(es), mesh data=1 x fsdp=1; the last session "
        "(from step 0) ran on 8 devices in 1 process(es), mesh data=8 x fsdp=1"
    )
    assert [r["devices"] for r in _history(tmp_path)] == [8, 1]
    _run(_four_steps(num_train_steps=8), tmp_path, mesh=one)  # the same mesh again: nothing said
    assert "resuming on" not in capsys.readouterr().out


def test_other_data_under_a_checkpoint_is_refused(tmp_path):
    _run(_four_steps(), tmp_path)
    data = micro_data(evaluate=False)
    other = data.info.__class__(("a", "b", "c", "e"), name="micro")
    with pytest.raises(UsageError, match=r"label_names: \['a', 'b', 'c', 'd'\] -> "):
        loop.train_and_evaluate(
            _four_steps(num_train_steps=6), tmp_path, data=data.__class__(data.train, None, other)
        )


def test_a_finished_run_is_answered_from_its_records(tmp_path, monkeypatch):
    config = _four_steps()
    loop.train_and_evaluate(config, tmp_path, data=micro_data())
    monkeypatch.setattr(loop, "setup", lambda *a, **k: pytest.fail("a finished run was set up"))
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    config.eval.max_videos = 3  # harmless, but the run is finished: said, not applied
    out = loop.train_and_evaluate(config, tmp_path)
    assert out["finished_before"] and out["steps"] == 4 and out["eval"]["num_videos"] == 16
    lines = loop.summary_lines(out)
    assert lines[0] == "already finished: 4 steps (nothing to train; results unchanged)"
    assert "config changes not applied (the run is finished): eval.max_videos: 0 -> 3" in lines[1]
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == before


def _fake_finished_demo(workdir: pathlib.Path, **changes) -> None:
    """A workdir as the demo leaves it, without training: config.json, checkpoints/400, results."""
    config = load_config_file(ROOT / "configs" / "synthetic_motion.py")
    for field, value in changes.items():
        section, _, name = field.rpartition(".")
        (config[section] if section else config)[name] = value
    (workdir / "checkpoints" / "400").mkdir(parents=True)
    (workdir / "eval").mkdir()
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
    results = {"clip_top1": 0.995, "video_top1": 0.995, "num_videos": 200, "dataset": "d"}
    (workdir / "eval" / "results.json").write_text(json.dumps(results))


def _train_py(workdir: pathlib.Path, data_dir: pathlib.Path):
    cmd = [sys.executable, str(ROOT / "train.py"), "--config", "configs/synthetic_motion.py",
           "--workdir", str(workdir), f"--config.dataset.data_dir={data_dir}"]  # fmt: skip
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    return r, time.time() - t0


def test_train_py_on_a_finished_run_reads_only_the_workdir(tmp_path):
    """Re-running the finished demo took ~80 s: the dataset check and the model's state were
    built before the finished check. Now nothing but the workdir's records is read."""
    _fake_finished_demo(tmp_path / "demo")
    r, seconds = _train_py(tmp_path / "demo", tmp_path / "tfds")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("already finished: 400 steps (nothing to train; results unchanged)")
    assert "video_top1   99.50%" in r.stdout
    assert not (tmp_path / "tfds").exists()  # no dataset built or read
    print(f"train.py on a finished run: {seconds:.1f} s")

    # The optimizer changed under the checkpoint: one short error line, exit 2, before any work.
    _fake_finished_demo(tmp_path / "sgd", **{"optimizer.name": "sgd"})
    r, _ = _train_py(tmp_path / "sgd", tmp_path / "tfds")
    assert r.returncode == 2 and r.stderr.startswith("error: the run in ")
    assert "optimizer.name: 'sgd' -> 'adam'" in r.stderr and len(r.stderr) < 1500
    assert "Traceback" not in r.stderr and not (tmp_path / "tfds").exists()
