"""Decoding: a stream that ends clearly before its declared frame count is refused (truncation);
a video stored rotated (display matrix) decodes upright; frame times are presentation times."""

import av
import numpy as np
import pytest
from PIL import Image, ImageSequence
from videos import rotated_for_display, write_vfr_video, write_video

from i3d_jax import preprocess as pp
from i3d_jax import samples

T, H, W = 100, 48, 64


def _frames() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    out = [
        127 + 100 * np.sin((xx[..., None] + 2 * i) / 6.0 + np.array([0, 1, 2]) + yy[..., None] / 9)
        for i in range(T)
    ]
    return np.stack(out).astype(np.uint8)


def _write_faststart(path, frames) -> None:
    """An mp4 with its index (moov) at the front, so a cut file still declares every frame."""
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.bit_rate = 4_000_000
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("decode")
    whole, cut = root / "whole.mp4", root / "cut.mp4"
    _write_faststart(whole, _frames())
    data = whole.read_bytes()
    cut.write_bytes(data[: int(0.3 * len(data))])
    return whole, cut


def test_whole_file_decodes_every_declared_frame(videos):
    whole, _ = videos
    assert pp.video_info(whole)["num_frames"] == T
    assert len(pp.load_video(whole, fps=None, short_side=None)) == T


def test_truncated_file_is_a_decode_error_naming_both_counts(videos):
    _, cut = videos
    assert pp.video_info(cut)["num_frames"] == T  # the index at the front still declares 100
    with pytest.raises(pp.VideoDecodeError, match=r"cut\.mp4.*truncated.* after \d+ frames.*100"):
        pp.load_video(cut, fps=None, short_side=None)
    with pytest.raises(pp.VideoDecodeError, match="truncated"):
        list(pp.iter_video_chunks(cut, 16, fps=25.0, short_side=None))
    kept = pp.load_video(cut, fps=None, short_side=None, allow_truncated=True)
    assert 10 < len(kept) < 0.5 * T
    np.testing.assert_array_less(np.abs(kept[:5].astype(int) - _frames()[:5]).mean(), 12.0)


def test_reading_only_the_start_of_a_truncated_file_is_fine(videos):
    _, cut = videos
    # A reader that stops before the end (max_frames) never sees the missing frames.
    assert len(pp.load_video(cut, fps=None, short_side=None, max_frames=8)) == 8


# ------------------------------------------------------------------------ display rotation


@pytest.fixture(scope="module")
def cricket(tmp_path_factory):
    """The release's cricket clip (8 frames, cut to a portrait 224x160) as an upright mp4 and as
    a phone stores it: turned, with a display matrix saying how to turn it back."""
    root = tmp_path_factory.mktemp("rotation")
    gif = Image.open(samples.CRICKET)
    frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(gif)]
    upright = np.ascontiguousarray(np.stack(frames[:8])[:, :, 32:192])
    write_video(root / "upright.mp4", upright)
    for r in (-90, 90, 180):
        write_video(root / f"rot{r}.mp4", rotated_for_display(upright, r), rotation=r)
    return root, upright


@pytest.mark.parametrize("rotation", [-90, 90, 180])
def test_a_rotated_video_decodes_to_the_upright_frames(cricket, rotation):
    root, upright = cricket
    path = root / f"rot{rotation}.mp4"
    with av.open(str(path)) as c:  # the file really carries the display matrix
        stored = next(c.decode(video=0))
        assert stored.rotation % 360 == rotation % 360
        assert (stored.height, stored.width) == rotated_for_display(upright, rotation).shape[1:3]
    ref = pp.load_video(root / "upright.mp4", fps=None, short_side=None)
    got = pp.load_video(path, fps=None, short_side=None)
    assert got.shape == ref.shape == (8, 224, 160, 3)
    assert np.abs(got.astype(int) - ref).mean() < 1.5  # codec noise only
    assert np.abs(got.astype(int) - upright).mean() < 3.0
    assert np.abs(got.astype(int) - rotated_for_display(ref, 180)).mean() > 20  # not upside down
    # resized (the smaller side of the upright frame), chunked, resampled: the same frames
    small = pp.load_video(path, fps=12.5, short_side=112)
    small_ref = pp.load_video(root / "upright.mp4", fps=12.5, short_side=112)
    assert small.shape == small_ref.shape == (4, 157, 112, 3)
    assert np.abs(small.astype(int) - small_ref).mean() < 3.0  # codec + resize (4:2:0 chroma)
    chunks = list(pp.iter_video_chunks(path, 3, fps=None, short_side=None))
    np.testing.assert_array_equal(np.concatenate(chunks), got)
    # the probe reports the upright size and the rotation applied
    info = pp.video_info(path)
    assert (info["height"], info["width"], info["rotation"]) == (224, 160, rotation)
    assert pp.video_info(root / "upright.mp4")["rotation"] == 0


# ------------------------------------------------------------------------ presentation times


def test_times_of_a_variable_frame_rate_video_are_its_presentation_times(tmp_path):
    # 20 frames at 10 fps, then 50 at 50 fps: 3 s, 70 frames (an average of 23.3 fps)
    seconds = np.r_[np.arange(20) / 10, 2 + np.arange(50) / 50]
    level = 3 * np.arange(70, dtype=np.float32)[:, None, None, None]
    frames = np.broadcast_to(level + np.array([0, 10, 20]), (70, 32, 48, 3)).astype(np.uint8)
    path = tmp_path / "vfr.mp4"
    write_vfr_video(path, frames, seconds)

    got = list(pp.iter_timed_chunks(path, 16, fps=None, short_side=None))
    times = np.concatenate([t for _, t in got])
    np.testing.assert_array_equal(np.concatenate([f for f, _ in got]),
                                  pp.load_video(path, fps=None, short_side=None))  # fmt: skip
    assert times.shape == (70, 2)
    np.testing.assert_allclose(times[:, 0], seconds, atol=1e-9)
    np.testing.assert_allclose(times[:-1, 1], seconds[1:], atol=1e-9)  # until the next frame
    assert seconds[-1] < times[-1, 1] <= 3.0 + 1e-9

    # resampled to 10 fps: the grid k / 10, each showing the frame nearest in time
    got10 = list(pp.iter_timed_chunks(path, 64, fps=10.0, short_side=None))
    frames10, times10 = np.concatenate([f for f, _ in got10]), np.concatenate([t for _, t in got10])
    k = np.arange(30)
    np.testing.assert_allclose(times10, np.stack([k / 10, (k + 1) / 10], 1), atol=1e-9)
    nearest = [int(np.argmin(np.abs(seconds - t))) for t in k / 10]
    np.testing.assert_array_equal(
        np.round((frames10[:, 0, 0, 0].astype(float)) / 3).astype(int), nearest
    )
