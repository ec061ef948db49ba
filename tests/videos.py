"""Writing real video files for tests (PyAV, near-lossless settings)."""

import pathlib

import av
import numpy as np

CODECS = [c for c in ("libx264", "mpeg4") if c in av.codecs_available]


def write_video(path, frames: np.ndarray, fps: int = 25, codec: str = CODECS[0]) -> None:
    """Write uint8 RGB frames [T, H, W, 3] to `path` (parent folders are created)."""
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "8", "preset": "ultrafast"}
        else:
            stream.bit_rate = 20_000_000
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
