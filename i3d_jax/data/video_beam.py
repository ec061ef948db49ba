"""`video_folder` builds on Apache Beam: one element per video, on any Beam runner.

`VideoFolder(beam_options="runner=DirectRunner,direct_num_workers=4,direct_running_mode=
multi_processing", ...)` (``python -m i3d_jax.data.build video_folder ... --beam_pipeline_options
...``) makes each split a Beam `PTransform` (TFDS's own Beam support writes the array_record shards):
the entries are spread over the workers, and each worker decodes, resizes and encodes one video at
a time with exactly the code of the sequential build (`video_folder.decode_entry`,
`stored_video.encode`, the flow cache of `flow_build`), so both builds hold the same examples.

Work files live under ``<data_dir>/downloads/video_folder_beam/<config>/`` (storage every worker
sees; an `etils.epath` path, so ``gs://`` works where its backend is installed) until the build
completes:

- ``<digest>.npz``: a finished video's encoded example (the frames' bytes, concatenated, and
  their offsets; no pickle). A build killed midway and run again reads these instead of decoding
  again: it resumes **at the video level** (the disk cost: a second copy of the finished videos'
  encoded frames until the build completes).
- ``<digest>.json``: the video's outcome (stored, with its rotation, or skipped, with the reason).
  The driver reads these after the pipeline to record ``skipped`` and ``rotated`` in the dataset's
  metadata as the sequential build does, and a progress bar counts them while workers run.

`digest` hashes the video's split, label, id, file (size, mtime), time range and the decode
settings, so a changed file or setting is never served from these files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from etils import epath

from i3d_jax import cli
from i3d_jax.data import schema, stored_video
from i3d_jax.data import video_decode as vf
from i3d_jax.data.video_scan import VideoEntry

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install -r requirements-beam.txt  (apache-beam)"


class BadVideoError(RuntimeError):
    """A bad video in a ``strict`` Beam build (names the file and why)."""


def import_beam():
    try:
        import apache_beam as beam
    except ImportError as e:
        raise ImportError(
            f"video_folder: a build with beam_options needs Apache Beam ({e}); {INSTALL_HINT}"
        ) from e
    return beam


def pipeline_options(text: str):
    """Beam `PipelineOptions` from TFDS's option string ``"runner=DirectRunner,direct_num_
    workers=4,..."`` (comma-separated ``key=value``, as ``tfds build --beam_pipeline_options``)."""
    beam = import_beam()
    flags = [f"--{item.strip()}" for item in text.split(",") if item.strip()]
    bad = [f for f in flags if "=" not in f]
    if bad:
        raise ValueError(
            f"--beam_pipeline_options: expected comma-separated key=value pairs (e.g. "
            f"runner=DirectRunner,direct_num_workers=4), got {text!r}"
        )
    return beam.options.pipeline_options.PipelineOptions(flags=flags)


@dataclasses.dataclass(frozen=True)
class VideoJob:
    """What a worker needs to turn one `VideoEntry` into its example (picklable)."""

    work_dir: str
    decode: vf.DecodeOptions
    decode_settings: str  # the builder's settings (repr): part of every digest and flow key
    strict: bool = False
    frame_format: object = None  # stored_video.FrameFormat of the RGB config
    flow: object = None  # flow_build.FlowSettings for the flow config
    flow_cache_dir: str | None = None
    flow_fn: Callable | None = None

    def digest(self, entry: VideoEntry) -> str:
        return entry_digest(entry, self.decode_settings)

    def __call__(self, entry: VideoEntry) -> Iterator[tuple[str, dict]]:
        warnings.showwarning = cli.show_warning  # a worker's warnings as the CLI shows them
        work = epath.Path(self.work_dir)
        name = self.digest(entry)
        done = _read_json(work / f"{name}.json")
        if done is not None and done["status"] == "skipped":
            return
        if done is not None:
            example = _load_example(work / f"{name}.npz")
            if example is not None:
                yield vf.example_key(entry), example
                return
        try:
            frames, example, rotation = vf.decode_entry(entry, self.decode)
        except vf.BAD_VIDEO_ERRORS as e:
            if self.strict:
                raise BadVideoError(f"video_folder: bad video {_where(entry)}: {e}") from e
            log.warning("video_folder: skipping %s (%s)", _where(entry), e)
            _write_json(work / f"{name}.json", {"status": "skipped",
                        "record": vf.skipped_record(entry, str(e))})  # fmt: skip
            return
        example.update(self._encode(entry, frames))
        _save_example(work / f"{name}.npz", example)
        _write_json(work / f"{name}.json", {"status": "stored", "rotation": rotation})
        yield vf.example_key(entry), example

    def _encode(self, entry: VideoEntry, frames: np.ndarray) -> dict:
        """The example fields that store the video (`stored_video.encode`; flow: PNG frames)."""
        if self.flow is None:
            return stored_video.encode(frames, self.frame_format or stored_video.LEGACY_JPEG)
        from i3d_jax.data import flow_build

        (flow,) = flow_build.flow_videos(
            [frames],
            self.flow,
            keys=[vf.flow_cache_key(entry, self.decode_settings)],
            cache_dir=self.flow_cache_dir,
            progress=False,
            flow_fn=self.flow_fn,
        )
        video = schema.encode_flow_frames(flow)
        return {schema.VIDEO: video, schema.NUM_FRAMES: np.int32(len(video))}


def entry_digest(entry: VideoEntry, decode_settings: str) -> str:
    """24 hex digits naming a video's work files (see the module docstring)."""
    if entry.path is None:
        stat = f"missing|{entry.missing_reason}|{entry.folder}"
    else:
        try:
            if "://" in entry.path:
                st = epath.Path(entry.path).stat()
                stat = f"{entry.path}|{st.length}|{st.mtime}"
            else:
                st = os.stat(entry.path)
                stat = f"{entry.path}|{st.st_size}|{st.st_mtime_ns}"
        except OSError as e:
            stat = f"{entry.path}|unreadable {e}"
    text = (
        f"{entry.split}|{entry.label}|{entry.video_id}|{stat}|{entry.start}|{entry.end}|"
        f"{decode_settings}"
    )
    if entry.actions is not None:  # a changed annotation is never served from the work files
        text += f"|actions {entry.actions}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _where(entry: VideoEntry) -> str:
    return entry.path or entry.folder or f"{entry.video_id} ({entry.missing_reason})"


def split_transform(entries: Sequence[VideoEntry], job: VideoJob):
    """The `beam.PTransform` (root -> (key, example)) that builds one split's videos."""
    beam = import_beam()

    class BuildVideos(beam.PTransform):
        def expand(self, root):
            return (
                root
                | "Entries" >> beam.Create(list(entries))
                | "Spread" >> beam.Reshuffle()  # one video per element, over every worker
                | "DecodeEncode" >> beam.FlatMap(job)
            )

    return BuildVideos()


def collect_records(entries: Sequence[VideoEntry], job: VideoJob) -> tuple[list, list]:
    """(skipped, rotated) records of `entries`, in their order, from the workers' outcomes."""
    work = epath.Path(job.work_dir)
    skipped, rotated = [], []
    for entry in entries:
        done = _read_json(work / f"{job.digest(entry)}.json")
        if done is None:
            raise RuntimeError(
                f"video_folder: the Beam pipeline finished but recorded no outcome for "
                f"{_where(entry)} (in {work}); run the build again"
            )
        if done["status"] == "skipped":
            skipped.append(done["record"])
        elif done.get("rotation"):
            rotated.append(vf.rotated_record(entry, done["rotation"]))
    return skipped, rotated


def finished_count(entries: Sequence[VideoEntry], job: VideoJob) -> int:
    """How many of `entries` have an outcome in the work files (from an earlier, killed build)."""
    work = epath.Path(job.work_dir)
    return sum((work / f"{job.digest(e)}.json").exists() for e in entries)


class Progress:
    """A tqdm bar of finished videos, counted from the work files while the pipeline runs."""

    def __init__(self, work_dir, entries: Sequence[VideoEntry], job: VideoJob, *, desc, enabled):
        self.work = epath.Path(work_dir)
        self.names = {f"{job.digest(e)}.json" for e in entries}
        self.desc, self.enabled = desc, enabled
        self.stop = threading.Event()

    def _count(self) -> int:
        try:
            return sum(1 for p in self.work.glob("*.json") if p.name in self.names)
        except OSError:
            return 0

    def _run(self, bar) -> None:
        while not self.stop.wait(1.0):
            bar.n = self._count()
            bar.refresh()

    def __enter__(self):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=len(self.names), desc=self.desc, unit="video",
                        disable=not self.enabled, dynamic_ncols=True)  # fmt: skip
        self.bar.n = self._count()
        self.thread = threading.Thread(target=self._run, args=(self.bar,), daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.bar.n = self._count()
        self.bar.close()


# ----------------------------------------------------------------------------- work files


def _read_json(path: epath.Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _atomic_write(path: epath.Path, data: bytes) -> None:
    tmp = path.parent / f".tmp-{path.name}-{threading.get_ident()}"
    tmp.write_bytes(data)
    tmp.replace(path)


def _write_json(path: epath.Path, value: dict) -> None:
    _atomic_write(path, json.dumps(value).encode())


_META_KEYS = (schema.LABEL, schema.VIDEO_ID, schema.PATH, schema.FPS, schema.HEIGHT, schema.WIDTH)
#: int32 fields of the H.264 segment format (`stored_video`), kept when present.
_INT_KEYS = (schema.NUM_FRAMES, stored_video.FRAME_HEIGHT, stored_video.FRAME_WIDTH,
             stored_video.SEGMENT_FRAMES)  # fmt: skip


def _save_example(path: epath.Path, example: dict) -> None:
    frames = example[schema.VIDEO]
    offsets = np.cumsum([0] + [len(f) for f in frames], dtype=np.int64)
    meta = {k: example[k].item() if hasattr(example[k], "item") else example[k]
            for k in _META_KEYS}  # fmt: skip
    if schema.ACTIONS in example:
        meta[schema.ACTIONS] = example[schema.ACTIONS]
    meta.update({k: int(example[k]) for k in _INT_KEYS if k in example})
    buf = io.BytesIO()
    np.savez(
        buf,
        frames=np.frombuffer(b"".join(frames), np.uint8),
        offsets=offsets,
        meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
    )
    _atomic_write(path, buf.getvalue())


def _load_example(path: epath.Path) -> dict | None:
    try:
        with np.load(io.BytesIO(path.read_bytes())) as z:
            blob, offsets = z["frames"].tobytes(), z["offsets"]
            meta = json.loads(z["meta"].tobytes())
    except (OSError, ValueError, KeyError):
        return None  # unreadable: the video is built again
    frames = [blob[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    extra = {schema.ACTIONS: meta[schema.ACTIONS]} if schema.ACTIONS in meta else {}
    extra.update({k: np.int32(meta[k]) for k in _INT_KEYS if k in meta})
    return {
        schema.LABEL: meta[schema.LABEL],
        schema.VIDEO_ID: meta[schema.VIDEO_ID],
        schema.PATH: meta[schema.PATH],
        schema.FPS: np.float32(meta[schema.FPS]),
        schema.HEIGHT: np.int32(meta[schema.HEIGHT]),
        schema.WIDTH: np.int32(meta[schema.WIDTH]),
        schema.VIDEO: frames,
        schema.NUM_FRAMES: np.int32(len(frames)),
        **extra,  # the segment format's frame count replaces the number of segments
    }
