"""video_folder on Apache Beam (DirectRunner, 2 worker processes): the same examples as the
sequential build (the RGB config on 2 worker processes), bad input named and counted, a killed
build resumed at the video level."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from videos import write_video

from i3d_jax.data import build, schema, stored_video, video_beam, video_decode
from i3d_jax.data import video_folder as vf
from i3d_jax.data.video_folder import VideoFolder

pytest.importorskip("apache_beam")  # requirements-beam.txt; CI installs it

REPO = pathlib.Path(__file__).resolve().parents[1]
TWO_WORKERS = "runner=DirectRunner,direct_num_workers=2,direct_running_mode=multi_processing"
# Two worker threads in this process: the same pipeline, without the workers' start-up (they
# import the project), for the tests whose point is not the worker processes.
TWO_THREADS = "runner=DirectRunner,direct_num_workers=2,direct_running_mode=multi_threading"


def _frames(t: int, seed: int, h: int = 36, w: int = 44) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (1, h, w, 3)).astype(np.int16)
    shift = np.arange(t, dtype=np.int16)[:, None, None, None] * 3
    return np.clip(base + shift, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """train/{a,b}/ 3 videos each (one rotated), val/{a,b}/ one each, a corrupt file."""
    root = tmp_path_factory.mktemp("beam_videos")
    seed = 0
    for split, count in (("train", 3), ("val", 1)):
        for cls in ("a", "b"):
            for k in range(count):
                rotation = -90 if (split, cls, k) == ("train", "b", 1) else 0
                write_video(root / split / cls / f"{cls}{k}.mp4", _frames(7 + k, seed),
                            rotation=rotation)  # fmt: skip
                seed += 1
    (root / "train" / "a" / "broken.mp4").write_bytes(b"\x00\x01corrupt" * 300)
    return root


def _examples(builder) -> dict:
    out = {}
    for split in builder.info.splits:
        src = schema.data_source(builder, split)
        for i in range(len(src)):
            ex = schema.example_to_numpy(src[i])
            out[(split, ex["video_id"])] = ex
    return out


def _assert_same_examples(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        ea, eb = a[key], b[key]
        assert ea["video"] == eb["video"], key  # the same encoded frames, byte for byte
        for field in ("label", "path", "fps", "num_frames", "height", "width"):
            assert ea[field] == eb[field], (key, field)


def test_beam_build_on_two_workers_equals_the_sequential_build(folder, tmp_path):
    seq = VideoFolder(folder=folder, data_dir=str(tmp_path / "seq"), short_side=24)
    seq.download_and_prepare()
    beam = VideoFolder(
        folder=folder, data_dir=str(tmp_path / "beam"), short_side=24, beam_options=TWO_WORKERS
    )
    beam.download_and_prepare()
    a, b = _examples(seq), _examples(beam)
    assert len(a) == 8
    _assert_same_examples(a, b)
    frames = stored_video.decode_video(b[("train", "a0")])
    assert frames.shape == (7, 24, 29, 3)
    for key in ("skipped", "rotated", "source"):
        assert beam.info.metadata[key] == seq.info.metadata[key], key
    assert beam.info.metadata["skipped"]["count"] == 1
    assert beam.info.metadata["skipped"]["files"][0]["path"].endswith("broken.mp4")
    assert [f["video_id"] for f in beam.info.metadata["rotated"]["files"]] == ["b1"]
    assert beam.info.features["label"].names == ["a", "b"]
    assert not beam.beam_work_dir().exists()  # work files removed once the build is complete
    # The same folder again, sequentially, in the Beam build's data_dir: found built, reused.
    again = vf.prepare(folder=folder, data_dir=str(tmp_path / "beam"), short_side=24)
    assert again.info.splits["train"].num_examples == 6


def test_beam_build_names_bad_input_and_builds_the_rest(tmp_path, monkeypatch, capsys):
    root = tmp_path / "kinetics"
    for i, name in enumerate(("x_000001_000011", "y_000002_000012", "z_000003_000013")):
        write_video(root / "clips" / f"{name}.mp4", _frames(6, 10 + i, 24, 32))
    (root / "clips" / "w_000004_000014.mp4").write_bytes(b"\x00garbage" * 200)
    unreadable = root / "locked"
    unreadable.mkdir()
    write_video(unreadable / "v_000005_000015.mp4", _frames(6, 20, 24, 32))
    rows = [("jump", "x", 1, 11), ("run", "y", 2, 12), ("run", "z", 3, 13), ("jump", "w", 4, 14),
            ("jump", "missing", 5, 15), ("run", "v", 5, 15)]  # fmt: skip
    with open(root / "train.csv", "w") as f:
        f.write("label,youtube_id,time_start,time_end,split\n")
        f.writelines(f"{lab},{yid},{t0},{t1},train\n" for lab, yid, t0, t1 in rows)
    if os.geteuid() == 0:
        # root reads any folder, whatever its mode: make this one fail to list as it would for
        # a user without permission (the one stand-in in this file).
        real_walk = os.walk

        def walk(top, *args, onerror=None, **kwargs):
            for item in real_walk(top, *args, onerror=onerror, **kwargs):
                if pathlib.Path(item[0]) == unreadable:
                    if onerror is not None:
                        onerror(PermissionError(13, "Permission denied", str(unreadable)))
                    continue
                yield item

        monkeypatch.setattr(os, "walk", walk)
    else:
        unreadable.chmod(0)
    try:
        code = build.main(["video_folder", "--data_dir", str(tmp_path / "tfds"), "--manual_dir",
                           str(root), "--short_side", "none", "--beam_pipeline_options",
                           TWO_THREADS])  # fmt: skip
    finally:
        unreadable.chmod(0o755)
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["splits"] == {"train": 3} and summary["skipped"] == 3
    assert "w_000004_000014.mp4 (cannot decode video" in err  # the corrupt file
    assert "no missing_000005_000015.* or missing.*" in err  # the CSV row without a file
    assert f"unreadable folders there: {unreadable}" in err  # why v_... was not found


def test_strict_beam_build_fails_naming_the_bad_file(folder, tmp_path, capsys):
    code = build.main(["video_folder", "--data_dir", str(tmp_path), "--manual_dir", str(folder),
                       "--short_side", "16", "--strict", "--beam_pipeline_options",
                       TWO_THREADS])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert "error: video_folder: bad video" in err and "broken.mp4" in err
    assert not list(tmp_path.glob("video_folder/rgb/*/*.array_record*"))


def test_bad_pipeline_options_are_a_usage_error(folder, tmp_path, capsys):
    args = ["video_folder", "--data_dir", str(tmp_path), "--manual_dir", str(folder)]
    assert build.main([*args, "--beam_pipeline_options", "runner"]) == 2
    assert "expected comma-separated key=value pairs" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        build.main(["synthetic_motion", "--data_dir", str(tmp_path), "--beam_pipeline_options",
                    TWO_WORKERS])  # fmt: skip
    assert exit_.value.code == 2
    assert "video_folder builds only" in capsys.readouterr().err


def test_a_finished_video_is_read_back_not_decoded_again(folder, tmp_path, monkeypatch):
    entry = next(e for e in vf.scan(folder) if e.video_id == "a1")
    job = video_beam.VideoJob(
        work_dir=str(tmp_path), decode=vf.DecodeOptions(short_side=16), decode_settings="s"
    )
    ((key, first),) = list(job(entry))
    assert key == vf.example_key(entry) and first["num_frames"] == 8

    def no_decoding(*_):
        raise AssertionError("decoded again")

    monkeypatch.setattr(video_decode, "decode_entry", no_decoding)
    ((_, again),) = list(job(entry))
    assert again["video"] == first["video"] and again["fps"] == first["fps"]
    # Other decode settings name other work files: decoded again.
    other = video_beam.VideoJob(work_dir=str(tmp_path), decode=job.decode, decode_settings="t")
    with pytest.raises(AssertionError, match="decoded again"):
        list(other(entry))


def test_a_killed_beam_build_resumes_with_what_its_workers_finished(tmp_path):
    root = tmp_path / "videos"
    for k in range(10):
        write_video(root / "train" / f"c{k % 2}" / f"v{k}.mp4", _frames(40, 30 + k, 240, 320))
    data_dir = tmp_path / "tfds"
    cmd = [sys.executable, "-m", "i3d_jax.data.build", "video_folder", "--data_dir",
           str(data_dir), "--manual_dir", str(root), "--short_side", "none",
           "--beam_pipeline_options",
           "runner=DirectRunner,direct_num_workers=1,direct_running_mode=multi_threading"]  # fmt: skip
    work = data_dir / "downloads" / "video_folder_beam" / "rgb"
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    while len(list(work.glob("*.json"))) < 3 and proc.poll() is None:
        assert time.monotonic() < deadline, "the build finished no video in 240 s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(list(work.glob("*.json")))
    assert 3 <= finished < 10, f"killed after {finished} of 10 videos"
    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{finished} of 10 videos already finished" in rerun.stderr
    built = VideoFolder(data_dir=str(data_dir))
    seq = VideoFolder(folder=root, data_dir=str(tmp_path / "seq"), short_side=None)
    seq.download_and_prepare()
    _assert_same_examples(_examples(seq), _examples(built))


def test_beam_flow_build_equals_the_sequential_flow_build(folder, tmp_path):
    from i3d_jax.data import flow_build

    settings = flow_build.FlowSettings(preset="fast")
    kwargs = dict(config="flow", folder=folder, short_side=16, max_frames=4, flow=settings)
    seq = VideoFolder(data_dir=str(tmp_path / "seq"), **kwargs)
    seq.download_and_prepare()
    beam = VideoFolder(data_dir=str(tmp_path / "beam"), beam_options=TWO_THREADS, **kwargs)
    beam.download_and_prepare()
    a, b = _examples(seq), _examples(beam)
    assert len(a) == 8 and all(ex["num_frames"] == 3 for ex in a.values())
    _assert_same_examples(a, b)  # the real JAX TV-L1 in the workers, the same PNG bytes
    flow = schema.decode_frames(b[("train", "b0")]["video"])
    assert flow.shape == (3, 16, 20, 3) and flow[..., :2].std() > 0
    for key in ("skipped", "flow_settings", "flow_scale", "source"):
        assert beam.info.metadata[key] == seq.info.metadata[key], key
    assert not beam.flow_cache_dir().exists() and not beam.beam_work_dir().exists()
