"""The input contract: decode (real mp4/GIF files written here), fps, time range, resize, errors."""

import av
import numpy as np
import pytest
from PIL import Image
from videos import CODECS, write_video

from i3d_jax import preprocess as pp


def numbered_frames(t: int, h: int, w: int) -> np.ndarray:
    """Frame i has level 4*i (smooth, so codecs keep it) plus a fixed ramp across the width."""
    ramp = np.linspace(0, 20, w, dtype=np.float32)[None, :, None]
    frames = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        frames[i] = np.clip(4 * i + ramp + np.array([0, 10, 20]), 0, 255).astype(np.uint8)
    return frames


def frame_numbers(frames: np.ndarray) -> list[int]:
    """Invert `numbered_frames`: the index of each frame from its mean level."""
    return [int(round((f[..., 0].mean() - 10.0) / 4.0)) for f in frames]


@pytest.fixture(scope="module")
def clip50(tmp_path_factory):
    """50 frames at 25 fps (2 s) of 176x144 (an odd QCIF size)."""
    path = tmp_path_factory.mktemp("v") / "clip50.mp4"
    frames = numbered_frames(50, 144, 176)
    write_video(path, frames)
    return path, frames


@pytest.mark.parametrize("codec", CODECS)
def test_decoded_frames_equal_written_frames_in_order(tmp_path, codec):
    frames = numbered_frames(20, 144, 176)
    path = tmp_path / f"v_{codec}.mp4"
    write_video(path, frames, codec=codec)
    out = pp.load_video(path, fps=None, short_side=None)
    assert out.shape == (20, 144, 176, 3) and out.dtype == np.uint8
    err = np.abs(out.astype(int) - frames.astype(int))
    assert err.mean() < 2.0, err.mean()
    assert frame_numbers(out) == list(range(20))


def test_fps_resampling_counts_and_nearest_frames(clip50):
    path, _ = clip50
    out = pp.load_video(path, fps=None, short_side=None)
    assert frame_numbers(out) == list(range(50))
    out = pp.load_video(path, fps=25, short_side=None)
    assert frame_numbers(out) == list(range(50))
    # 10 fps: times 0.0, 0.1, ...; 0.1 s lies between frames 2 (0.08) and 3 (0.12): earlier wins.
    out = pp.load_video(path, fps=10, short_side=None)
    assert frame_numbers(out) == [int(np.floor(2.5 * k)) for k in range(20)]
    out = pp.load_video(path, fps=50, short_side=None)
    assert frame_numbers(out) == [k // 2 for k in range(100)]
    out = pp.load_video(path, fps=30, short_side=None)
    assert len(out) == 60
    assert frame_numbers(out)[:8] == [0, 1, 2, 2, 3, 4, 5, 6]


def test_start_end_and_max_frames(clip50):
    path, _ = clip50
    out = pp.load_video(path, fps=25, short_side=None, start=0.4, end=1.2)
    assert frame_numbers(out) == list(range(10, 30))
    out = pp.load_video(path, fps=None, short_side=None, start=1.5)
    assert frame_numbers(out) == list(range(38, 50))  # t = 1.52 ... 1.96
    out = pp.load_video(path, fps=10, short_side=None, end=0.5, max_frames=3)
    assert frame_numbers(out) == [0, 2, 5]
    with pytest.raises(pp.VideoDecodeError, match=r"clip50\.mp4.*no frame in the requested"):
        pp.load_video(path, start=5.0)
    with pytest.raises(ValueError, match="end .* must be after start"):
        pp.load_video(path, start=1.0, end=0.5)


def test_iter_video_chunks_concatenate_to_load_video(clip50):
    path, _ = clip50
    chunks = list(pp.iter_video_chunks(path, 16, fps=10, short_side=64))
    assert [len(c) for c in chunks] == [16, 4]
    full = pp.load_video(path, fps=10, short_side=64)
    np.testing.assert_array_equal(np.concatenate(chunks), full)


def test_resize_smaller_side(clip50, tmp_path):
    path, frames = clip50
    out = pp.load_video(path, fps=None, short_side=72, max_frames=2)
    assert out.shape == (2, 72, 88, 3)
    # Area resize of a smooth image keeps the level.
    assert abs(float(out[1].mean()) - float(frames[1].mean())) < 2.0
    big = numbered_frames(3, 720, 1280)
    write_video(tmp_path / "hd.mp4", big)
    out = pp.load_video(tmp_path / "hd.mp4", short_side=256)
    assert out.shape == (3, 256, 455, 3)
    assert frame_numbers(out) == [0, 1, 2]
    assert pp.resized_shape(1280, 720, 256) == (455, 256)  # portrait
    info = pp.video_info(tmp_path / "hd.mp4")
    assert (info["height"], info["width"], info["fps"]) == (720, 1280, 25.0)


def test_sample_gif_decodes_all_frames(shared_data):
    out = pp.load_video(shared_data / "v_CricketShot_g04_c01_rgb.gif", fps=None, short_side=None)
    assert out.shape == (79, 224, 224, 3) and out.dtype == np.uint8
    assert 20 < out.mean() < 235 and out.std() > 10  # real image content
    assert np.abs(np.diff(out.astype(np.float32), axis=0)).mean() > 1  # frames differ


def test_grayscale_gif_becomes_three_equal_channels(tmp_path):
    levels = [0, 60, 120, 180, 240]
    images = [Image.fromarray(np.full((30, 40), v, np.uint8), "L") for v in levels]
    path = tmp_path / "gray.gif"
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)
    out = pp.load_video(path, fps=None, short_side=None)
    assert out.shape == (5, 30, 40, 3)
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    np.testing.assert_allclose(out[:, 0, 0, 0], levels, atol=2)
    # 10 fps GIF resampled to 25 fps: 0.5 s -> 13 frames (ceil(12.5)), each the nearest image.
    out = pp.load_video(path, fps=25, short_side=None)
    assert len(out) == 13
    expected = [0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4, 4]  # nearest of images at 0, .1, ... .4 s
    np.testing.assert_allclose(out[:, 0, 0, 0], [levels[i] for i in expected], atol=2)


def test_errors_name_the_file_and_the_reason(tmp_path, clip50):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00not a video" * 200)
    with pytest.raises(pp.VideoDecodeError, match=r"garbage\.mp4.*not a readable video") as e:
        pp.load_video(garbage)
    assert e.value.path == str(garbage) and e.value.reason

    data = clip50[0].read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])  # mp4 index (moov) is at the end: gone
    with pytest.raises(pp.VideoDecodeError, match=r"truncated\.mp4"):
        pp.load_video(truncated)

    empty = tmp_path / "empty.avi"  # a video stream without frames
    with av.open(str(empty), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    with pytest.raises(pp.VideoDecodeError, match=r"empty\.avi.*zero frames"):
        pp.load_video(empty)

    audio_only = tmp_path / "audio.wav"
    with av.open(str(audio_only), "w") as container:
        container.add_stream("pcm_s16le", rate=8000)
        container.start_encoding()
    with pytest.raises(pp.VideoDecodeError, match=r"audio\.wav.*no video stream"):
        pp.load_video(audio_only)

    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        pp.load_video(tmp_path / "missing.mp4")


def test_crops():
    frames = np.arange(2 * 5 * 7 * 1, dtype=np.uint8).reshape(2, 5, 7, 1)
    c = pp.center_crop(frames, 3)
    np.testing.assert_array_equal(c, frames[:, 1:4, 2:5])
    c = pp.center_crop(frames, (4, 6))
    np.testing.assert_array_equal(c, frames[:, 0:4, 0:6])
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(50):
        r = pp.random_crop(frames, 3, rng)
        top, left = divmod(int(r[0, 0, 0, 0]), 7)
        np.testing.assert_array_equal(r, frames[:, top : top + 3, left : left + 3])
        seen.add((top, left))
    assert seen == {(t, c) for t in range(3) for c in range(5)}  # every position reachable
    with pytest.raises(ValueError, match=r"5x7.*smaller than the crop 6x6"):
        pp.center_crop(frames, 6)


def test_to_float_and_flow_scaling():
    x = np.array([0, 1, 127, 128, 255], np.uint8)
    np.testing.assert_allclose(
        pp.to_float(x), [-1.0, -1 + 1 / 127.5, -1 / 255, 1 / 255, 1.0], atol=1e-6
    )
    assert pp.to_float(x).dtype == np.float32
    assert pp.to_float(x, dtype=np.float16).dtype == np.float16
    # One contract (pipeline and preprocess): float input is model input already, only cast.
    already = np.array([-1.0, 0.25, 1.0], np.float32)
    np.testing.assert_array_equal(pp.to_float(already), already)
    assert pp.to_float(already, np.float16).dtype == np.float16
    with pytest.raises(ValueError, match="expected uint8 pixels"):
        pp.to_float(x.astype(np.int32))
    flow = np.array([-35.0, -20.0, -5.0, 0.0, 2.5, 20.0, 40.0], np.float32)
    np.testing.assert_allclose(pp.scale_flow(flow), [-1, -1, -0.25, 0, 0.125, 1, 1])
    q = pp.quantize_flow(flow)
    np.testing.assert_array_equal(q, [1, 1, 96, 128, 144, 255, 255])
    back = pp.dequantize_flow_pixels(q)
    np.testing.assert_allclose(back, np.clip(flow, -20, 20), atol=20 / 254 + 1e-6)
    assert back[3] == 0.0
    np.testing.assert_allclose(pp.dequantize_flow_unit(q), pp.scale_flow(back))
    assert pp.dequantize_flow_unit(q).max() == 1.0  # 255 -> 20 px -> 1.0
    fine = np.linspace(-20, 20, 1001, dtype=np.float32)
    err = np.abs(pp.dequantize_flow_pixels(pp.quantize_flow(fine)) - fine).max()
    assert err <= 20 / 254 + 1e-6
    q5 = pp.quantize_flow(fine, bound=5.0)
    np.testing.assert_allclose(
        pp.dequantize_flow_pixels(q5, bound=5.0), np.clip(fine, -5, 5), atol=5 / 254 + 1e-6
    )


def test_a_small_video_upscaled_much_is_said(tmp_path, capsys):
    """Finding 7: a 64x48 input was upscaled 5x without a word."""
    import warnings

    from i3d_jax.flow import cli as flow_cli

    path = tmp_path / "small.mp4"
    write_video(path, np.zeros((3, 48, 64, 3), np.uint8))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pp.load_video(path)  # smaller side 256: 5.3x
        pp.load_video(path, short_side=96)  # 2x: fine
    texts = [str(w.message) for w in caught if issubclass(w.category, pp.UpscaleWarning)]
    assert texts == [f"{path}: frames of 48x64 are upscaled 5.3x to a smaller side of 256; the "
                     "network sees little detail (pass a smaller --short_side to keep the size)"]  # fmt: skip
    assert flow_cli.main([str(path), "--out", str(tmp_path / "f.npz"), "--backend", "opencv",
                          "--fast", "--no_progress"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "warning: " + texts[0] in err and "UpscaleWarning" not in err
