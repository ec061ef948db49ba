"""video_folder (both layouts, bad files, flow, rotated videos), the schema reader, catalog errors,
the build CLI."""

import csv
import json
import sys

import numpy as np
import pytest
from videos import rotated_for_display, write_video

from i3d_jax import preprocess as pp
from i3d_jax.data import build, catalog, schema, stored_video
from i3d_jax.data.video_folder import VideoFolder, scan


def make_frames(t: int, offset: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Frame i: level 4*(i+offset) + a ramp, so both the video and the frame can be read back."""
    ramp = np.linspace(0, 20, w, dtype=np.float32)[None, :, None]
    out = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        out[i] = np.clip(4 * (i + offset) + ramp + np.array([0, 10, 20]), 0, 255)
    return out


def frame_numbers(frames: np.ndarray) -> list[int]:
    """The frame numbers `make_frames` wrote (from the mean level of all three channels, which
    the two lossy steps, the source mp4 and the stored format, shift least)."""
    return [int(round((f.astype(np.float64).mean() - 20.0) / 4.0)) for f in frames]


def read_all(builder, split):
    src = schema.data_source(builder, split)
    return {ex["video_id"]: ex for ex in (schema.example_to_numpy(src[i]) for i in range(len(src)))}


@pytest.fixture(scope="module")
def folder_tree(tmp_path_factory):
    """train/{jump,run}/ two videos each, val/{jump,run}/ one each, and one corrupted file."""
    root = tmp_path_factory.mktemp("videos")
    written = {}
    offset = 0
    for split, count in (("train", 2), ("val", 1)):
        for cls in ("jump", "run"):
            for k in range(count):
                frames = make_frames(8, offset)
                write_video(root / split / cls / f"{cls}_{split}{k}.mp4", frames)
                written[f"{cls}_{split}{k}"] = (cls, frames, offset)
                offset += 6
    (root / "train" / "run" / "broken.mp4").write_bytes(b"\x00\x01corrupt" * 300)
    return root, written


def test_folder_layout_builds_and_reads_back_the_written_frames(folder_tree, tmp_path):
    root, written = folder_tree
    builder = VideoFolder(folder=root, data_dir=str(tmp_path), fps=None, short_side=None)
    builder.download_and_prepare()
    info = builder.info
    assert info.features["label"].names == ["jump", "run"]
    assert {k: v.num_examples for k, v in info.splits.items()} == {"train": 4, "validation": 2}
    skipped = info.metadata["skipped"]
    assert skipped["count"] == 1
    assert skipped["files"][0]["path"].endswith("train/run/broken.mp4")
    assert "not a readable video" in skipped["files"][0]["reason"]

    # A fresh builder (no source folder) reads the same dataset, names and metadata from disk.
    again = VideoFolder(data_dir=str(tmp_path))
    assert again.info.features["label"].names == ["jump", "run"]
    assert again.info.metadata["skipped"]["count"] == 1
    examples = {**read_all(again, "train"), **read_all(again, "validation")}
    assert set(examples) == set(written)
    for vid, ex in examples.items():
        cls, frames, offset = written[vid]
        assert ex["label"] == ["jump", "run"].index(cls)
        assert ex["num_frames"] == 8 and (ex["height"], ex["width"]) == (48, 64)
        assert ex["fps"] == 25.0 and ex["path"].endswith(f"{cls}/{vid}.mp4")
        decoded = stored_video.decode_video(ex)
        assert decoded.shape == frames.shape
        assert np.abs(decoded.astype(int) - frames).mean() < 3.0  # codec + JPEG loss
        assert frame_numbers(decoded) == [offset + i for i in range(8)]
    # The pipeline's spelling gives the same encoded frames: H.264 segments, the default.
    raw = again.as_data_source("train", deserialize_method=schema.RAW_DESERIALIZE)[0]
    assert isinstance(raw["video"][0], bytes) and raw["video"][0][:4] == b"\x00\x00\x00\x01"
    assert raw["segment_frames"] == 16 and len(raw["video"]) == 1  # 8 frames: one segment
    assert again.frame_format == stored_video.DEFAULT
    assert again.info.metadata["frame_format"]["codec"] == "h264"


def test_strict_fails_on_the_bad_file(folder_tree, tmp_path):
    root, _ = folder_tree
    builder = VideoFolder(folder=root, data_dir=str(tmp_path), short_side=32, strict=True)
    with pytest.raises(pp.VideoDecodeError, match=r"broken\.mp4"):
        builder.download_and_prepare()


def test_resample_and_resize_options(folder_tree, tmp_path):
    root, written = folder_tree
    # JPEG storage: the frame code (±2 levels) survives the mp4 and one JPEG, not also H.264's
    # half-level reading bias (H.264 against JPEG: tests/test_stored_video.py).
    builder = VideoFolder(folder=root, data_dir=str(tmp_path), fps=12.5, short_side=24,
                          frame_format="jpeg")  # fmt: skip
    builder.download_and_prepare()
    assert builder.info.metadata["fps"] == 12.5 and builder.info.metadata["short_side"] == 24
    ex = read_all(builder, "validation")["run_val0"]
    decoded = stored_video.decode_video(ex)
    assert decoded.shape == (4, 24, 32, 3) and ex["fps"] == 12.5
    assert frame_numbers(decoded) == [written["run_val0"][2] + i for i in (0, 2, 4, 6)]
    assert (ex["height"], ex["width"]) == (48, 64)  # of the source


def test_a_rotated_video_is_stored_upright_and_listed_in_the_metadata(tmp_path):
    # A phone's sideways video (display matrix -90) beside an upright one of the same frames.
    root = tmp_path / "src"
    frames = make_frames(6, 0)  # 48 high, 64 wide
    write_video(root / "train" / "jump" / "flat.mp4", frames)
    write_video(root / "train" / "jump" / "phone.mp4", rotated_for_display(frames, -90),
                rotation=-90)  # fmt: skip
    builder = VideoFolder(folder=root, data_dir=str(tmp_path / "tfds"), fps=None, short_side=None)
    builder.download_and_prepare()
    again = VideoFolder(data_dir=str(tmp_path / "tfds"))  # read back from disk
    examples = read_all(again, "train")
    for vid in ("flat", "phone"):
        ex = examples[vid]
        assert (ex["height"], ex["width"]) == (48, 64)  # the upright size
        decoded = stored_video.decode_video(ex)
        assert decoded.shape == frames.shape
        assert np.abs(decoded.astype(int) - frames).mean() < 3.0
        assert frame_numbers(decoded) == list(range(6))
    rotated = again.info.metadata["rotated"]
    assert rotated["count"] == 1 and rotated["files"][0]["rotation"] == -90
    assert rotated["files"][0]["path"].endswith("phone.mp4")
    assert rotated["files"][0]["video_id"] == "phone" and rotated["files"][0]["split"] == "train"


def test_kinetics_csv_layout_with_time_ranges(tmp_path):
    root = tmp_path / "k"
    # A trimmed clip (named with its range) and an untrimmed video cut by the CSV's range.
    write_video(root / "clips" / "abc_000002_000004.mp4", make_frames(10, 0))
    write_video(root / "full" / "xyz.mp4", make_frames(50, 10))  # 2 s, t = i / 25
    rows = [
        ("label", "youtube_id", "time_start", "time_end", "split", "is_cc"),
        ("dancing", "abc", "2", "4", "train", "0"),
        ("tap dancing", "xyz", "0.4", "1.0", "val", "0"),
        ("dancing", "gone", "7", "17", "train", "0"),  # missing file
        ("", "nolabel", "0", "10", "test", "0"),  # unlabelled rows are ignored
    ]
    with open(root / "kinetics.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    builder = VideoFolder(folder=root, data_dir=str(tmp_path / "out"), fps=None, short_side=None)
    builder.download_and_prepare()
    assert builder.info.features["label"].names == ["dancing", "tap dancing"]
    assert builder.info.metadata["skipped"]["count"] == 1
    assert "gone_000007_000017" in builder.info.metadata["skipped"]["files"][0]["reason"]
    train = read_all(builder, "train")
    val = read_all(builder, "validation")
    assert list(train) == ["abc_000002_000004"] and list(val) == ["xyz_000000_000001"]
    clip = stored_video.decode_video(train["abc_000002_000004"])
    assert frame_numbers(clip) == list(range(10))  # the whole trimmed file
    cut = stored_video.decode_video(val["xyz_000000_000001"])
    assert frame_numbers(cut) == [10 + i for i in range(10, 25)]  # 0.4 s <= t < 1.0 s
    assert val["xyz_000000_000001"]["label"] == 1
    # strict also fails on a missing file, naming it
    strict = VideoFolder(folder=root, data_dir=str(tmp_path / "o2"), strict=True, short_side=16)
    with pytest.raises(FileNotFoundError, match="gone_000007_000017"):
        strict.download_and_prepare()


def test_layout_errors_name_the_file(tmp_path):
    (tmp_path / "bad.csv").write_text("label,youtube_id,split\nx,y,train\n")
    with pytest.raises(ValueError, match=r"bad\.csv lacks the column\(s\) time_start, time_end"):
        scan(tmp_path)
    flat = tmp_path / "flat"
    write_video(flat / "train" / "v.mp4", make_frames(2, 0))
    with pytest.raises(ValueError, match=r"flat/train holds video files \(v\.mp4"):
        scan(flat)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        scan(tmp_path / "nowhere")


def test_flow_config_stores_quantised_flow(folder_tree, tmp_path):
    def fake_flow(frames):
        t, h, w, _ = frames.shape
        flow = np.zeros((t - 1, h, w, 2), np.float32)
        flow[..., 0] = np.arange(t - 1)[:, None, None] * 2.5 - 5.0  # -5, -2.5, 0, ...
        flow[..., 1] = np.linspace(-30, 30, w)[None, None, :]  # clipped beyond +-20
        return flow

    root, _ = folder_tree
    builder = VideoFolder(
        config="flow",
        folder=root,
        data_dir=str(tmp_path),
        fps=None,
        short_side=None,
        flow_fn=fake_flow,  # a stand-in for the solver (i3d_jax.data.flow_build.flow_videos)
    )
    builder.download_and_prepare()
    assert builder.info.metadata["flow_scale"] == 20.0
    assert builder.info.metadata["modality"] == "flow"
    ex = read_all(builder, "validation")["jump_val0"]
    assert ex["num_frames"] == 7
    png = schema.decode_frames(ex["video"])
    assert np.all(png[..., 2] == 0)
    flow = pp.dequantize_flow_pixels(schema.decode_flow_frames(ex["video"]), 20.0)
    expected = fake_flow(np.zeros((8, 48, 64, 3), np.uint8))
    np.testing.assert_allclose(flow, np.clip(expected, -20, 20), atol=20 / 254 + 1e-5)


def test_flow_config_without_flow_module_says_what_is_missing(folder_tree, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "i3d_jax.flow", None)
    root, _ = folder_tree
    builder = VideoFolder(config="flow", folder=root, data_dir=str(tmp_path))
    with pytest.raises(ImportError, match=r"needs i3d_jax\.flow\.compute_flow"):
        builder.download_and_prepare()


def test_decode_frames_crop_and_errors():
    frames = np.random.default_rng(0).integers(0, 256, (3, 20, 30, 3), dtype=np.uint8)
    png = schema.encode_flow_frames(frames[..., :2])
    np.testing.assert_array_equal(schema.decode_flow_frames(png), frames[..., :2])  # lossless
    np.testing.assert_array_equal(
        schema.decode_flow_frames(png, crop=(2, 5, 10, 12)), frames[:, 2:12, 5:17, :2]
    )
    smooth = np.broadcast_to(np.arange(30, dtype=np.uint8)[None, None, :, None] * 8, frames.shape)
    jpeg = schema.encode_jpeg_frames(np.ascontiguousarray(smooth))
    full = schema.decode_frames(jpeg)
    assert np.abs(full.astype(int) - smooth).mean() < 2
    np.testing.assert_array_equal(schema.decode_frames(jpeg, crop=(1, 2, 4, 5)), full[:, 1:5, 2:7])
    with pytest.raises(ValueError, match="does not fit in frames of 20x30"):
        schema.decode_frames(jpeg, crop=(0, 0, 21, 5))
    other = schema.encode_jpeg_frames(np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="frame 1 is 8x8, expected 20x30"):
        schema.decode_frames(jpeg[:1] + other)
    with pytest.raises(ValueError, match=r"expected np\.uint8 \[T, H, W, 3\]"):
        schema.encode_jpeg_frames(np.zeros((2, 8, 8), np.uint8))


def test_catalog_without_tensorflow_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(ImportError, match="pip install tensorflow"):
        next(catalog.iter_examples("ucf101", "train"))
    with pytest.raises(ImportError, match="video_folder"):
        catalog.builder("ucf101")


def test_build_cli(folder_tree, tmp_path, capsys):
    assert build.main(["synthetic_motion", "--data_dir", str(tmp_path), "--config", "tiny"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["splits"] == {"train": 16, "validation": 8} and out["skipped"] == 0
    args = ["synthetic_motion", "--data_dir", str(tmp_path), "--config", "tiny", "--num_train", "4"]
    assert build.main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["splits"] == {"train": 4, "validation": 8}
    assert out["dataset_dir"].endswith("synthetic_motion/tiny_num_train4/1.0.0")
    assert len(schema.data_source(out["dataset_dir"], "train")) == 4  # readable from the directory
    root, _ = folder_tree
    args = ["video_folder", "--data_dir", str(tmp_path / "vf"), "--manual_dir", str(root)]
    assert build.main(args + ["--short_side", "16", "--fps", "none"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["splits"] == {"train": 4, "validation": 2} and out["skipped"] == 1


def _write_cut_faststart(path, frames: np.ndarray, keep: float = 0.3) -> None:
    """An mp4 with its index at the front, cut to `keep` of its bytes: it still declares every
    frame, but the stream ends early (a truncated download)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.bit_rate = 4_000_000
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    data = path.read_bytes()
    path.write_bytes(data[: int(keep * len(data))])


def test_second_source_in_one_data_dir_is_refused_or_rebuilt(tmp_path, capsys):
    from types import SimpleNamespace

    from i3d_jax.data import pipeline, video_folder

    for name, classes in (("first", ("jump", "run")), ("other", ("swim", "walk", "yawn"))):
        for k, cls in enumerate(classes):
            write_video(tmp_path / name / "train" / cls / f"{cls}.mp4", make_frames(6, 10 * k))
    rng = np.random.default_rng(0)
    noisy = np.clip(make_frames(60, 0).astype(int) + rng.integers(0, 60, (60, 48, 64, 3)), 0, 255)
    _write_cut_faststart(tmp_path / "first" / "train" / "run" / "cut.mp4", noisy.astype(np.uint8))
    data_dir = str(tmp_path / "tfds")
    base = ["video_folder", "--data_dir", data_dir, "--fps", "none", "--short_side", "none"]

    def run(*extra):
        rc = build.main([*base, *extra])
        captured = capsys.readouterr()
        out = captured.out.strip().splitlines()
        return rc, (json.loads(out[-1]) if rc == 0 else None), captured.err

    first, other = tmp_path / "first", tmp_path / "other"
    rc, out, _ = run("--manual_dir", str(first))
    assert rc == 0 and out["splits"] == {"train": 2} and out["skipped"] == 1  # the cut file
    skipped = VideoFolder(data_dir=data_dir).info.metadata["skipped"]["files"]
    assert "truncated" in skipped[0]["reason"] and skipped[0]["path"].endswith("cut.mp4")
    source = VideoFolder(data_dir=data_dir).info.metadata["source"]
    assert source["path"] == str(first.resolve()) and source["files"] == 3

    # Another folder into the same data_dir: refused, naming both (it used to reuse the first).
    rc, _, err = run("--manual_dir", str(other))
    assert rc == 2 and err.startswith("error: ") and "--rebuild" in err  # before any work
    assert (
        f"built from {first.resolve()} (3 video files" in err
        and f"not from {other.resolve()}" in err
    )
    rc, out, _ = run("--manual_dir", str(other), "--rebuild")
    assert rc == 0 and out["splits"] == {"train": 3} and out["skipped"] == 0
    rebuilt = VideoFolder(data_dir=data_dir)
    assert rebuilt.info.features["label"].names == ["swim", "walk", "yawn"]
    assert {ex["path"].split("/")[-1] for ex in read_all(rebuilt, "train").values()} == {
        "swim.mp4",
        "walk.mp4",
        "yawn.mp4",
    }
    # The same source again is reused; other settings or changed files are refused.
    assert run("--manual_dir", str(other))[0] == 0
    rc, _, err = run("--manual_dir", str(other), "--max_frames", "4")
    assert rc == 2 and "with settings" in err and "'max_frames': 4" in err
    write_video(other / "train" / "swim" / "swim.mp4", make_frames(7, 3))
    rc, _, err = run("--manual_dir", str(other))
    assert rc == 2 and "its files changed since" in err

    # A training run naming another folder refuses too, naming both.
    cfg = SimpleNamespace(
        name="video_folder", data_dir=data_dir, builder_config="", folder=str(first)
    )
    with pytest.raises(video_folder.SourceMismatchError, match="not from .*first"):
        pipeline.load_source(cfg, "train")
    # Truncated files are kept with --allow_truncated (a separate data_dir).
    base[2] = str(tmp_path / "t3")
    rc, out, _ = run("--manual_dir", str(first), "--allow_truncated")
    assert rc == 0 and out["splits"] == {"train": 3} and out["skipped"] == 0
