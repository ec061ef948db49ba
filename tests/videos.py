"""Writing real video files for tests (PyAV, near-lossless settings)."""

import pathlib
from fractions import Fraction

import av
import numpy as np
from scipy import ndimage

CODECS = [c for c in ("libx264", "mpeg4") if c in av.codecs_available]


def write_video(
    path, frames: np.ndarray, fps: int = 25, codec: str = CODECS[0], rotation: int = 0
) -> None:
    """Write uint8 RGB frames [T, H, W, 3] to `path` (parent folders are created).

    `rotation`: a display matrix (degrees counter-clockwise, what PyAV reads back as
    `VideoFrame.rotation`; a phone's sideways video has -90) stored with the stream, as phones
    write it; the frames are stored as given.
    """
    _write(path, frames, codec, rate=fps, rotation=rotation)


def write_vfr_video(path, frames: np.ndarray, seconds, codec: str = CODECS[0]) -> None:
    """Write frames with explicit presentation times (`seconds[i]`, increasing, ms precision):
    a variable-frame-rate video."""
    _write(path, frames, codec, rate=1000, seconds=seconds)


def rotated_for_display(upright: np.ndarray, rotation: int) -> np.ndarray:
    """How a camera stores `upright` frames `[T, H, W, C]` when it tags them with `rotation`:
    turned by -rotation, so that a player turning them by `rotation` shows them upright."""
    return np.ascontiguousarray(np.rot90(upright, -(rotation // 90), axes=(1, 2)))


def _write(path, frames, codec, rate, rotation=0, seconds=None) -> None:
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "8", "preset": "ultrafast"}
        else:
            stream.bit_rate = 20_000_000
        if rotation:
            stream.set_display_rotation(rotation)
        if seconds is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            if seconds is not None:
                vf.pts, vf.time_base = int(round(seconds[i] * 1000)), Fraction(1, 1000)
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def moving_texture(t: int, h: int, w: int, seed: int, dx: int = 1) -> np.ndarray:
    """uint8 RGB frames `[t, h, w, 3]` of a smooth gray texture moving left by `dx` pixels a
    frame (TV-L1 flow x = -dx away from the borders)."""
    rng = np.random.default_rng(seed)
    tex = ndimage.gaussian_filter(rng.uniform(0, 255, (h, w + dx * t)), 1.5)
    tex = (tex - tex.min()) / (tex.max() - tex.min()) * 255
    frames = np.stack([tex[:, k * dx : k * dx + w] for k in range(t)])
    return np.repeat(np.rint(frames).astype(np.uint8)[..., None], 3, axis=-1)
