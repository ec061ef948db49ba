"""How a dataset stores a video's RGB frames, and the fast reader of clips from it.

Two storage formats (``info.metadata["frame_format"]`` records which, with its settings):

``h264`` (the default for new ``video_folder`` RGB datasets)
    The frames as short H.264 segments: every ``segment_frames`` frames (16 by default) are one
    self-contained Annex-B stream that starts with a keyframe (libx264, ``yuvj420p``: full-range
    BT.601 like JPEG, ``tune=fastdecode``, constant quality ``crf``). ``video`` is the list of
    segments (bytes) and the example also holds ``frame_height``, ``frame_width`` (the stored
    frames' size) and ``segment_frames``. A clip decodes only the segments it covers, each from
    its keyframe up to the clip's last frame in it, with PyAV (FFmpeg's decoder, one thread).
``jpeg`` (every dataset built before segments; ``synthetic_motion``'s tiny frames)
    One JPEG a frame; ``video`` is the list of JPEGs, decoded with libjpeg-turbo (simplejpeg)
    into a preallocated frame. Flow datasets store PNG frames the same way (lossless).

`BENCHMARKS.md` ("Input pipeline") has the measurements that chose the default: frames per
CPU-second of the training pipeline's output and bytes per frame of each format.

Readers take an example dict (from `schema.data_source`, frames still encoded) and never need the
dataset's metadata: an example in the segment format carries :data:`SEGMENT_FRAMES`.
"""

from __future__ import annotations

import dataclasses
import fractions
import io
from collections.abc import Iterator, Sequence

import numpy as np

from i3d_jax.data import schema

H264, JPEG = "h264", "jpeg"
FRAME_FORMAT_KEY = "frame_format"  # builder.info.metadata[...]: FrameFormat.as_metadata()
#: How `encode_segment` converts colours (a new conversion gets a new name: datasets built with
#: another one are then told apart by their fingerprint).
RGB_TO_YCBCR = "jfif-bt601-full-fixed16-v1"

#: Per-example features of the segment format.
FRAME_HEIGHT, FRAME_WIDTH, SEGMENT_FRAMES = (
    schema.FRAME_HEIGHT,
    schema.FRAME_WIDTH,
    schema.SEGMENT_FRAMES,
)


@dataclasses.dataclass(frozen=True)
class FrameFormat:
    """How RGB frames are stored: ``codec`` "h264" (segments) or "jpeg" (one image a frame)."""

    codec: str = H264
    segment_frames: int = 16  # h264: frames per segment (one keyframe each)
    crf: int = 17  # h264: libx264 constant quality (lower: larger, closer to the source)
    preset: str = "medium"  # h264: libx264 speed/size trade-off of the build
    quality: int = schema.JPEG_QUALITY  # jpeg
    subsampling: int = 2  # jpeg: PIL's chroma subsampling (2 = 4:2:0, 0 = 4:4:4)

    def __post_init__(self):
        if self.codec not in (H264, JPEG):
            raise ValueError(f"frame format {self.codec!r}: expected {H264!r} or {JPEG!r}")
        if self.codec == H264 and not 1 <= self.segment_frames <= 250:
            raise ValueError(f"segment_frames={self.segment_frames}: expected 1 to 250 frames")

    def x264_params(self) -> str:
        """libx264's extra parameters: one keyframe a segment, and no macroblock tree (with it,
        the same frames encoded twice in one process came out as different bytes now and then:
        apparently from memory its pass reads before writing; without it, about 20% more bytes at
        the same quality, still a fifth to two fifths of JPEG's)."""
        return f"keyint={self.segment_frames}:scenecut=0:mbtree=0"

    def as_settings(self) -> dict:
        """The settings that decide the stored frames (part of a dataset's source fingerprint)."""
        if self.codec == JPEG:
            return {"codec": JPEG, "quality": self.quality, "subsampling": self.subsampling}
        return {"codec": H264, "segment_frames": self.segment_frames, "crf": self.crf,
                "preset": self.preset, "tune": "fastdecode", "x264_params": self.x264_params(),
                "pix_fmt": "yuvj420p",
                "rgb_to_ycbcr": RGB_TO_YCBCR}  # fmt: skip

    def as_metadata(self) -> dict:
        """What a dataset records of its frames' storage: the settings and the encoder."""
        if self.codec == JPEG:
            return {**self.as_settings(), "encoder": "PIL"}
        import av

        return {**self.as_settings(), "encoder": f"libx264 (PyAV {av.__version__})"}

    @classmethod
    def from_metadata(cls, meta: dict | None) -> FrameFormat:
        """The format a dataset's metadata records; none recorded: JPEG (the only format then)."""
        if not meta:
            return cls(codec=JPEG)
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in meta.items() if k in fields})


DEFAULT = FrameFormat()
LEGACY_JPEG = FrameFormat(codec=JPEG)


def named(name: str) -> FrameFormat:
    """`FrameFormat` of a CLI name: "h264" (the default settings) or "jpeg"."""
    if name == H264:
        return DEFAULT
    if name == JPEG:
        return LEGACY_JPEG
    raise ValueError(f"frame format {name!r}: expected {H264!r} or {JPEG!r}")


def stored_format(data_dir) -> FrameFormat | None:
    """The frame format of the RGB dataset built in `data_dir` (None: nothing built there)."""
    import json

    from etils import epath

    has_segments = schema.stored_features_have(data_dir, SEGMENT_FRAMES)
    if has_segments is None:
        return None
    if not has_segments:
        return LEGACY_JPEG
    meta_path = epath.Path(data_dir) / "metadata.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return FrameFormat.from_metadata(meta.get(FRAME_FORMAT_KEY))


# ----------------------------------------------------------------------------- writing


def encode(frames: np.ndarray, fmt: FrameFormat) -> dict:
    """The example fields that store uint8 RGB `frames [T, H, W, 3]` in `fmt`: ``video``,
    ``num_frames`` and, for segments, :data:`FRAME_HEIGHT`, :data:`FRAME_WIDTH`,
    :data:`SEGMENT_FRAMES`."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
        raise ValueError(
            f"stored_video.encode: expected np.uint8 [T>0, H, W, 3], got {frames.dtype} "
            f"{frames.shape}"
        )
    n = np.int32(len(frames))
    if fmt.codec == JPEG:
        video = schema.encode_jpeg_frames(frames, fmt.quality, fmt.subsampling)
        return {schema.VIDEO: video, schema.NUM_FRAMES: n}
    step = fmt.segment_frames
    segments = [encode_segment(frames[s : s + step], fmt) for s in range(0, len(frames), step)]
    return {
        schema.VIDEO: segments,
        schema.NUM_FRAMES: n,
        FRAME_HEIGHT: np.int32(frames.shape[1]),
        FRAME_WIDTH: np.int32(frames.shape[2]),
        SEGMENT_FRAMES: np.int32(step),
    }


_TIME_BASE = fractions.Fraction(1, 25)


def encode_segment(frames: np.ndarray, fmt: FrameFormat = DEFAULT) -> bytes:
    """One H.264 Annex-B segment of uint8 RGB `frames [t, H, W, 3]` (first frame a keyframe).

    Colours go to full-range YCbCr 4:2:0 as JPEG (JFIF) converts them, in libjpeg's fixed point
    with rounding (FFmpeg's fast converter truncates: about one level lower on average, a second
    time on top of the reader's). Frames of odd height or width are padded by one edge row or
    column (4:2:0 needs even sizes); readers crop to the stored size.
    """
    import av

    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    buf = io.BytesIO()
    with av.open(buf, "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuvj420p"
        stream.options = {"crf": str(fmt.crf), "preset": fmt.preset, "tune": "fastdecode",
                          "x264-params": fmt.x264_params()}  # fmt: skip
        stream.codec_context.thread_count = 1  # deterministic output; builds parallelise videos
        for i, frame in enumerate(frames):
            planes = av.VideoFrame.from_ndarray(rgb_to_yuvj420(frame), format="yuvj420p")
            planes.pts, planes.time_base = i, _TIME_BASE  # 25 fps, frame i at i / 25 s
            for packet in stream.encode(planes):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


#: JFIF's full-range BT.601 RGB -> YCbCr in 16-bit fixed point (libjpeg's), rows Y, Cb, Cr:
#: integers, so every process and thread writes the same bytes (a float matmul goes through BLAS,
#: whose rounding can depend on threads).
_RGB_TO_YCC = np.array([[19595, 38470, 7471], [-11059, -21709, 32768], [32768, -27439, -5329]],
                       np.int32)  # fmt: skip


def rgb_to_yuvj420(frame: np.ndarray) -> np.ndarray:
    """uint8 RGB `[H, W, 3]` (even H, W) -> planar full-range YCbCr 4:2:0 `[3H/2, W]` (Y, then
    Cb and Cr, each the rounded mean of a 2x2 block), as PyAV's ``yuvj420p`` arrays are laid out."""
    h, w = frame.shape[:2]
    rgb = frame.astype(np.int32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    out = np.empty((h * 3 // 2, w), np.uint8)
    (ry, gy, by), (ru, gu, bu), (rv, gv, bv) = _RGB_TO_YCC.tolist()
    out[:h] = (ry * r + gy * g + by * b + (1 << 15)) >> 16
    quarter = h * w // 4
    flat = out[h:].reshape(-1)
    for k, (cr, cg, cb) in enumerate(((ru, gu, bu), (rv, gv, bv))):
        block_sum = (cr * r + cg * g + cb * b).reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3))
        chroma = (block_sum + (128 << 18) + (1 << 17)) >> 18  # 128 + round(sum / 4 / 2**16)
        flat[k * quarter : (k + 1) * quarter] = np.clip(chroma, 0, 255).reshape(-1)
    return out


# ----------------------------------------------------------------------------- reading


def is_segments(example: dict) -> bool:
    """Whether `example` stores its frames as H.264 segments."""
    return SEGMENT_FRAMES in example


def frame_layout(example: dict) -> tuple[int, int, int]:
    """(num_frames, height, width) of the stored frames, without decoding any (headers only)."""
    video = example[schema.VIDEO]
    if isinstance(video, np.ndarray) and video.dtype == np.uint8 and video.ndim == 4:
        return video.shape[0], video.shape[1], video.shape[2]
    if is_segments(example):
        return (int(example[schema.NUM_FRAMES]), int(example[FRAME_HEIGHT]),
                int(example[FRAME_WIDTH]))  # fmt: skip
    return (len(video), *image_size(video[0]))


def image_size(data: bytes) -> tuple[int, int]:
    """(height, width) of one encoded JPEG/PNG frame from its header."""
    data = bytes(data)
    if data[:2] == b"\xff\xd8":
        import simplejpeg

        h, w, _, _ = simplejpeg.decode_jpeg_header(data)
        return h, w
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return img.size[1], img.size[0]


def read_clip(
    example: dict,
    indices: Sequence[int] | np.ndarray,
    crop: tuple[int, int, int, int],
    flip: bool = False,
) -> np.ndarray:
    """Frames `indices` of an example, cropped to ``(top, left, height, width)`` and mirrored
    horizontally when `flip`: uint8 `[len(indices), height, width, C]`, in `indices` order.

    Only the frames asked for are decoded (JPEG/PNG), or only the segments that hold them, each
    up to the last frame needed (H.264). Indices may repeat (looped clips).
    """
    indices = np.asarray(indices, np.int64)
    video = example[schema.VIDEO]
    top, left, h, w = (int(v) for v in crop)
    if isinstance(video, np.ndarray) and video.dtype == np.uint8 and video.ndim == 4:
        out = video[indices, top : top + h, left : left + w]
        return np.ascontiguousarray(out[:, :, ::-1] if flip else out)
    n, fh, fw = frame_layout(example)
    if len(indices) == 0 or indices.min() < 0 or indices.max() >= n:
        raise ValueError(f"read_clip: frame indices must be in [0, {n}), got {indices.tolist()}")
    if top < 0 or left < 0 or top + h > fh or left + w > fw:
        raise ValueError(
            f"read_clip: crop (top={top}, left={left}, height={h}, width={w}) does not fit in "
            f"frames of {fh}x{fw}"
        )
    uniq, inverse = np.unique(indices, return_inverse=True)
    if is_segments(example):
        out = _read_segments(video, int(example[SEGMENT_FRAMES]), uniq, (top, left, h, w), flip)
    else:
        out = _read_images(video, uniq, (top, left, h, w), flip)
    if len(uniq) == len(indices) and np.array_equal(uniq, indices):
        return out
    return out[inverse.reshape(-1)]


class _Writer:
    """Copies decoded RGB frames into a clip: the crop and, when flipped, the mirror in one copy.

    A mirrored RGB crop is the byte-reversed BGR crop (each row's bytes in reverse order), which
    numpy copies far faster than it reverses 3-byte pixels; so flipped clips are decoded as BGR.
    """

    def __init__(self, count: int, crop: tuple[int, int, int, int], flip: bool):
        self.top, self.left, self.h, self.w = crop
        self.flip = flip
        self.out = np.empty((count, self.h, self.w, 3), np.uint8)
        self.rows = self.out.reshape(count, self.h, self.w * 3)
        first = self.left * 3 + self.w * 3 - 1  # the crop's last byte, read backwards
        self.cols = slice(first, self.left * 3 - 1 if self.left else None, -1)

    @property
    def colorspace(self) -> str:
        return "BGR" if self.flip else "RGB"

    def put(self, i: int, frame: np.ndarray) -> None:
        rows = slice(self.top, self.top + self.h)
        if self.flip:
            self.rows[i] = frame.reshape(frame.shape[0], -1)[rows, self.cols]
        else:
            self.out[i] = frame[rows, self.left : self.left + self.w]


def _read_images(video, uniq: np.ndarray, crop, flip: bool) -> np.ndarray:
    import simplejpeg
    from PIL import Image

    writer = _Writer(len(uniq), crop, flip)
    buf = None
    for i, index in enumerate(uniq):
        data = bytes(video[int(index)])
        if data[:2] == b"\xff\xd8":  # JPEG: libjpeg-turbo straight into one frame buffer
            h, w, _, _ = simplejpeg.decode_jpeg_header(data)
            if buf is None or buf.shape[:2] != (h, w):
                buf = np.empty((h, w, 3), np.uint8)
            frame = simplejpeg.decode_jpeg(data, colorspace=writer.colorspace, buffer=buf)
        else:  # PNG (flow) or another image format
            with Image.open(io.BytesIO(data)) as img:
                frame = np.asarray(img.convert("RGB"))
            frame = frame[..., ::-1] if writer.flip else frame
        if i == 0:
            size = frame.shape[:2]
        elif frame.shape[:2] != size:
            raise ValueError(
                f"read_clip: frame {index} is {frame.shape[0]}x{frame.shape[1]}, expected "
                f"{size[0]}x{size[1]} like frame {uniq[0]}"
            )
        writer.put(i, frame)
    return writer.out


def _read_segments(segments, per_segment: int, uniq: np.ndarray, crop, flip: bool) -> np.ndarray:
    writer = _Writer(len(uniq), crop, flip)
    fmt = "bgr24" if writer.flip else "rgb24"
    seg_of = uniq // per_segment
    i = 0
    for seg in np.unique(seg_of):
        wanted = uniq[seg_of == seg] - seg * per_segment
        for k, frame in enumerate(_decode_segment(bytes(segments[int(seg)]), int(wanted[-1]))):
            if k in wanted:
                writer.put(i, frame.to_ndarray(format=fmt))
                i += 1
    if i != len(uniq):
        raise ValueError(f"read_clip: the segments decoded {i} of the {len(uniq)} frames asked for")
    return writer.out


def decode_video(example: dict, crop: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Every frame of an example (any storage format), uint8 `[T, H, W, 3]`, or its
    ``(top, left, height, width)`` crop."""
    n, h, w = frame_layout(example)
    return read_clip(example, np.arange(n), crop or (0, 0, h, w))


def _decode_segment(data: bytes, last: int | None = None) -> Iterator:
    """The frames (PyAV `VideoFrame`) of one segment in display order, up to frame `last`
    (None: all)."""
    import av

    codec = av.CodecContext.create("h264", "r")
    codec.thread_count = 1  # a worker per core decodes its own clips
    count = 0
    packets = [*codec.parse(data), *codec.parse(None)]
    for packet in [*packets, None]:
        for frame in codec.decode(packet):
            yield frame
            if count == last:
                return
            count += 1
