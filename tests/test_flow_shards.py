"""Flow on every device and every host: the TV-L1 split over the local devices
(`flow.tvl1_sharded`, `flow_build.flow_videos(devices=...)`) gives the flow of one device, and
shards of a build computed by separate processes (`data.build ... --shard I/N`,
`i3d_jax.data.flow_prepass`) assemble into the dataset of one unsharded build."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from videos import moving_texture, write_video

from i3d_jax import flow, preprocess
from i3d_jax.data import build, flow_build, flow_prepass, schema
from i3d_jax.data.flow_build import FlowSettings
from i3d_jax.data.video_folder import VideoFolder
from i3d_jax.data.video_scan import VideoEntry

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Three videos of 32x40 and two of 24x32, moving left by 1 or 2 pixels a frame.
VIDEOS = [
    moving_texture(6, 32, 40, 0, dx=1),
    moving_texture(4, 24, 32, 1, dx=2),
    moving_texture(6, 32, 40, 2, dx=2),
    moving_texture(3, 24, 32, 3, dx=1),
    moving_texture(5, 32, 40, 4, dx=1),
]
DX = [1, 2, 2, 1, 1]


@pytest.fixture
def dispatches(monkeypatch):
    """(pairs, devices) of every dispatch to the JAX solver."""
    calls = []
    real = flow.tvl1_sharded

    def counting(i0, i1, params, *, mesh):
        calls.append((len(i0), mesh.devices.size))
        return real(i0, i1, params, mesh=mesh)

    monkeypatch.setattr(flow, "tvl1_sharded", counting)
    return calls


def test_eight_devices_give_the_flow_of_one(dispatches, monkeypatch):
    assert len(jax.local_devices()) == 8  # tests/conftest.py
    settings = FlowSettings(preset="fast", batch_pairs=2)  # 2 pairs per device
    one = list(flow_build.flow_videos(VIDEOS, settings, progress=False, devices=jax.devices()[:1]))
    assert len(dispatches) == 10 and set(dispatches) == {(2, 1)}  # 14 pairs of 32x40, 5 of 24x32
    dispatches.clear()
    # At most 2 videos held per device: a dispatch of 8 devices may wait for 16 (one device
    # would flush its partial batch after 2).
    monkeypatch.setattr(flow_build, "_MAX_PENDING_VIDEOS", 2)
    eight = list(flow_build.flow_videos(VIDEOS, settings, progress=False))  # all local devices
    assert sorted(dispatches) == [(16, 8)] * 2  # 16 a dispatch, the last pairs repeated
    for a, b in zip(one, eight, strict=True):
        assert a.dtype == np.uint8 and a.shape == b.shape
        np.testing.assert_array_equal(a, b)  # exactly
    for got, dx in zip(eight, DX, strict=True):  # the true motion, away from the borders
        inner = preprocess.dequantize_flow_pixels(got, settings.bound)[:, 6:-6, 6:-6]
        assert abs(inner[..., 0].mean() + dx) < 0.2 and abs(inner[..., 1].mean()) < 0.1


def test_a_pairs_flow_does_not_depend_on_the_pairs_beside_it():
    """vmap of the solver's while loops freezes a converged pair while its companions iterate:
    each pair's float flow is the same whatever shares its device batch and the dispatch."""
    gray = [flow.to_gray(v) for v in VIDEOS if v.shape[1:3] == (32, 40)]
    i0 = np.concatenate([g[:-1] for g in gray])
    i1 = np.concatenate([g[1:] for g in gray])
    assert len(i0) == 14
    i0, i1 = i0[np.arange(16) % 14], i1[np.arange(16) % 14]
    mesh = flow.pairs_mesh(jax.local_devices())
    out = np.asarray(flow.tvl1_sharded(i0, i1, flow.FAST, mesh=mesh))  # 2 pairs per device
    assert out.shape == (16, 32, 40, 2) and np.abs(out).max() > 1
    perm = np.random.default_rng(0).permutation(16)  # other companions on other devices
    shuffled = np.asarray(flow.tvl1_sharded(i0[perm], i1[perm], flow.FAST, mesh=mesh))
    np.testing.assert_array_equal(shuffled, out[perm])
    # Each pair with another companion, on one device, through the unsharded batch program.
    for k in range(0, 16, 3):
        other = (k + 5) % 16
        pair = np.asarray(flow.tvl1_batch(i0[[k, other]], i1[[k, other]], flow.FAST))
        np.testing.assert_array_equal(pair[0], out[k])
    with pytest.raises(ValueError, match="a multiple of the 8 devices"):
        flow.tvl1_sharded(i0[:12], i1[:12], flow.FAST, mesh=mesh)


def _examples(builder) -> dict:
    """{split: {video_id: example}} with the flow decoded to uint8 `[T-1, H, W, 2]`."""
    out = {}
    for split in builder.info.splits:
        src = schema.data_source(builder, split)
        rows = [schema.example_to_numpy(src[i]) for i in range(len(src))]
        for row in rows:
            row["video"] = schema.decode_flow_frames(row["video"])
        out[split] = {row["video_id"]: row for row in rows}
    return out


def _json_line(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def test_shards_in_two_processes_assemble_into_the_unsharded_dataset(tmp_path, monkeypatch, capsys):
    videos = tmp_path / "videos"
    for path, seed, dx in (
        ("train/left/v0", 0, 1),
        ("train/right/v1", 1, 2),
        ("val/left/v2", 2, 1),
    ):
        write_video(videos / f"{path}.mp4", moving_texture(6, 32, 40, seed, dx))
    (videos / "train" / "right" / "bad.mp4").write_bytes(b"\x00\x01corrupt" * 300)
    common = ["video_folder", "--config", "flow", "--manual_dir", str(videos), "--fps", "none"]
    common += ["--short_side", "none", "--flow_preset", "fast", "--flow_batch", "2"]

    # One unsharded build: the reference.
    assert build.main([*common, "--data_dir", str(tmp_path / "whole")]) == 0
    capsys.readouterr()

    # Two shards, each in its own process (at once), then the final build.
    data_dir = tmp_path / "sharded"
    argv = [sys.executable, "-m", "i3d_jax.data.build", *common, "--data_dir", str(data_dir)]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    procs = [
        subprocess.Popen(
            [*argv, "--shard", f"{i}/2"],
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    reports = [_json_line(out) for out, _ in outs]
    # Sorted by path, dealt round-robin: v0, v1 | bad, v2.
    bad = str(videos / "train" / "right" / "bad.mp4")
    assert reports[0] == {
        "shard": "0/2", "videos": 2, "computed": 2, "cached": 0, "skipped": 0,
        "skipped_files": [], "cache_dir": str(data_dir / "downloads" / "video_folder_flow_cache"),
    }  # fmt: skip
    assert {k: reports[1][k] for k in ("shard", "videos", "computed", "cached", "skipped")} == {
        "shard": "1/2", "videos": 2, "computed": 1, "cached": 0, "skipped": 1,
    }  # fmt: skip
    assert [f["path"] for f in reports[1]["skipped_files"]] == [bad]
    cache = pathlib.Path(reports[0]["cache_dir"])
    assert len(list(cache.glob("*.npy"))) == 3
    assert not (data_dir / "video_folder").exists()  # no dataset yet

    # A shard run again finds its videos cached; the final build computes nothing.
    calls = []
    monkeypatch.setattr(flow, "tvl1_sharded", lambda *a, **k: calls.append(0))
    assert build.main([*argv[3:], "--shard", "0/2"]) == 0
    again = _json_line(capsys.readouterr().out)
    assert (again["computed"], again["cached"], again["skipped"]) == (0, 2, 0)
    assert build.main([*argv[3:]]) == 0
    final = _json_line(capsys.readouterr().out)
    assert calls == []
    assert final["splits"] == {"train": 2, "validation": 1} and final["skipped"] == 1
    assert not cache.exists()  # removed once the dataset is complete
    # A shard of the built dataset has nothing to do; of other settings, it is refused.
    assert build.main([*argv[3:], "--shard", "1/2"]) == 0
    assert _json_line(capsys.readouterr().out) == {
        "shard": "1/2", "already_built": str(data_dir / "video_folder" / "flow" / "1.0.0"),
        "computed": 0,
    }  # fmt: skip
    assert build.main([*argv[3:], "--shard", "1/2", "--flow_bound", "10"]) == 2
    err = capsys.readouterr().err
    assert "'flow_bound': 20.0" in err and "The final build would refuse it: add --rebuild" in err
    assert calls == [] and not cache.exists()

    whole = VideoFolder(config="flow", data_dir=str(tmp_path / "whole"))
    sharded = VideoFolder(config="flow", data_dir=str(data_dir))
    want, got = _examples(whole), _examples(sharded)
    assert {s: sorted(e) for s, e in got.items()} == {"train": ["v0", "v1"], "validation": ["v2"]}
    for split, examples in want.items():
        for vid, ex in examples.items():
            assert got[split][vid].keys() == ex.keys()
            for key, value in ex.items():
                np.testing.assert_array_equal(got[split][vid][key], value, err_msg=key)
    assert got["train"]["v1"]["video"].shape == (5, 32, 40, 2)
    x = preprocess.dequantize_flow_pixels(got["train"]["v1"]["video"], 20.0)[:, 6:-6, 6:-6, 0]
    assert abs(x.mean() + 2) < 0.2  # v1 moves 2 pixels a frame
    for key in ("skipped", "source", flow_build.METADATA_KEY):
        assert sharded.info.metadata[key] == whole.info.metadata[key], key
    assert sharded.info.metadata["skipped"]["files"][0]["path"] == bad


def test_shards_are_disjoint_cover_all_videos_and_ignore_the_scan_order():
    entries = [VideoEntry("train", "a", f"v{i}", f"/v/{i % 5}.mp4") for i in range(7)]
    entries += [VideoEntry("validation", "a", "cut", "/v/9.mp4", 1.0, 2.0)]
    entries += [VideoEntry("validation", "a", "gone", None, 0.0, 1.0, "missing file")]

    def deal(entries, count):
        return [
            [
                (e.path, e.start)
                for e in flow_prepass.shard_entries(entries, flow_prepass.Shard(i, count))
            ]
            for i in range(count)
        ]

    # 7 videos: 5 files (two listed twice: one video each), a time range of a 6th, a missing one.
    got = deal(entries, 3)
    assert got == [
        [(None, 0.0), ("/v/2.mp4", None), ("/v/9.mp4", 1.0)],
        [("/v/0.mp4", None), ("/v/3.mp4", None)],
        [("/v/1.mp4", None), ("/v/4.mp4", None)],
    ]
    assert deal(entries[::-1], 3) == got
    (everything,) = deal(entries, 1)
    assert len(everything) == 7 and sorted(sum(got, []), key=str) == sorted(everything, key=str)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--config", "flow", "--shard", "2/2"], "argument --shard: '2/2': the shard index I"),
        (["--config", "flow", "--shard", "x"], "argument --shard: expected I/N"),
        (["--config", "flow", "--shard", "1/0"], "the shard index I of I/N must be in 0..N-1"),
        (["--config", "rgb", "--shard", "0/2"], "--shard apply to video_folder --config flow"),
        (["--shard", "0/2"], "--shard apply to video_folder --config flow only"),
    ],
)
def test_bad_shards_are_usage_errors(flags, message, capsys):
    with pytest.raises(SystemExit) as e:
        build.main(["video_folder", "--data_dir", "d", "--manual_dir", "v", *flags])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "error: " in err and message in err
    assert flow_prepass.parse_shard("auto") == "auto"
    assert flow_prepass.parse_shard(" 3/4 ") == flow_prepass.Shard(3, 4)


def test_shard_auto_is_this_process_and_a_missing_source_is_a_usage_error(tmp_path, capsys):
    assert flow_prepass.resolve("auto") == flow_prepass.Shard(0, 1)  # one process, no cluster
    argv = ["video_folder", "--config", "flow", "--data_dir", str(tmp_path), "--shard", "auto"]
    assert build.main(argv) == 2
    assert "error: --shard needs --manual_dir" in capsys.readouterr().err
    assert build.main([*argv, "--manual_dir", str(tmp_path / "nowhere")]) == 2
    assert "error: video_folder: source folder not found" in capsys.readouterr().err
