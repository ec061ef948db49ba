"""Decoding: a stream that ends clearly before its declared frame count is refused (truncation)."""

import av
import numpy as np
import pytest

from i3d_jax import preprocess as pp

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
