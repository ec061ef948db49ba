"""`video_folder`: a TFDS dataset built from a local folder of video files (no TF, no downloads).

Two layouts of the source folder ``root`` (the builder's ``folder=`` or TFDS's ``manual_dir``) are
read:

Folders
    ``root/<split>/<class>/<video file>``, e.g. ``root/train/archery/v_001.mp4``. Split names are
    the folder names (``val``/``valid``/``validate`` become ``validation``); the classes are the
    sorted union of the class folder names of all splits. ``video_id`` is the file name stem.

Kinetics-style CSV
    One or more ``*.csv`` files directly in ``root`` (or ``csv=`` paths) with at least the columns
    ``label,youtube_id,time_start,time_end,split`` (extra columns ignored), and video files anywhere
    under ``root``. A row's file is found by its stem, trying first the trimmed clip
    ``<youtube_id>_<time_start:06d>_<time_end:06d>.<ext>`` (Kinetics' download scripts' name; the
    whole file is used) and then the full video ``<youtube_id>.<ext>`` (then only the frames in
    ``[time_start, time_end)`` seconds are kept). The classes are the sorted labels.
    ``video_id`` is ``<youtube_id>_<time_start:06d>_<time_end:06d>``.

Charades CSV (multi-label, untrimmed)
    ``charades_csv=`` paths (``--charades_csv``) of Charades-format CSVs (``id,...,actions,
    length``; the split from the file name, ``Charades_v1_train.csv`` -> ``train``), videos
    ``<id>.<ext>`` anywhere under ``root``, the classes from ``Charades_v1_classes.txt`` beside
    the CSV or in ``root`` (see :mod:`i3d_jax.data.charades`). Each example also stores its
    action intervals (``actions``, see :mod:`i3d_jax.data.schema`); ``label`` is the class of its
    earliest action (-1: none). Malformed rows, unknown classes and intervals outside the video
    are skipped with a warning naming the row and counted in ``info.metadata["annotations"]``
    (``strict=True`` raises instead). ``video_id`` is the Charades id.

Video extensions: see `VIDEO_EXTENSIONS`. Frames are decoded with :func:`i3d_jax.preprocess.load_video`
(``fps``, ``short_side``, ``max_frames`` builder options; defaults 25 fps, smaller side 256).

Configs: ``rgb`` stores JPEG frames; ``flow`` stores TV-L1 flow computed by
:func:`i3d_jax.data.flow_build.flow_videos` (``flow=FlowSettings(...)``: the JAX solver batched
across videos over all local JAX devices (``flow_devices=``), or OpenCV's), quantised with
:func:`i3d_jax.preprocess.quantize_flow` into PNG frames (see :mod:`i3d_jax.data.schema`;
``info.metadata["flow_scale"]`` is the bound, ``info.metadata["flow_settings"]`` the settings).
Finished videos' flow is cached under ``<data_dir>/downloads/video_folder_flow_cache`` until the
build completes, so an interrupted build resumes without computing them again. Many hosts can fill
that cache first, each with its shard of the videos (:mod:`i3d_jax.data.flow_prepass`, ``python -m
i3d_jax.data.build video_folder --config flow ... --shard I/N``); the build then only reads it.

Bad files (undecodable, missing, too short) are skipped with a warning and recorded in
``info.metadata["skipped"] = {"count": n, "files": [{"split", "path", "reason"}, ...]}``;
``strict=True`` raises instead. A stream that ends clearly before its declared frame count is a bad
file too (``allow_truncated=True`` keeps what decodes).

Rotation: a video stored rotated (a display matrix, as phones write) is decoded upright (its
``height``/``width`` too) and listed in ``info.metadata["rotated"] = {"count": n, "files":
[{"split", "path", "video_id", "rotation"}, ...]}`` (degrees counter-clockwise; see
:func:`i3d_jax.preprocess.video_info`).

Source fingerprint: every ``video_folder`` dataset is stored under
``<data_dir>/video_folder/<config>/<version>``, so one ``data_dir`` holds one source per config.
A build records ``info.metadata["source"]`` (:func:`source_fingerprint`: the resolved folder, the
video files' relative names, sizes and modification times, the CSV files' contents, and the decode
settings). A later build or a training run that names a source folder checks it against the
stored one and raises :class:`SourceMismatchError` naming both when they differ (another folder,
changed files or other settings); :func:`prepare` with ``rebuild=True`` (``data.build --rebuild``)
deletes the old dataset and builds the new one instead.

Example::

    builder = VideoFolder(config="rgb", folder="/data/ucf101", data_dir="/data/tfds", short_side=256)
    builder.download_and_prepare()
    src = schema.data_source(builder, "train")
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import itertools
import logging
import os
import pathlib
import shutil

import numpy as np
import tensorflow_datasets as tfds

from i3d_jax import preprocess
from i3d_jax.data import charades, schema, stored_video
from i3d_jax.data.video_decode import (  # noqa: F401 (re-exported)
    BAD_VIDEO_ERRORS,
    DecodeOptions,
    decode_entry,
    example_key,
    flow_cache_key,
    rotated_record,
    skipped_record,
)
from i3d_jax.data.video_scan import (  # noqa: F401 (re-exported)
    CSV_COLUMNS,
    VIDEO_EXTENSIONS,
    VideoEntry,
    scan,
    scan_csv,
    scan_folders,
    split_name,
)

log = logging.getLogger(__name__)

SOURCE_KEY = schema.SOURCE_KEY


class SourceMismatchError(ValueError):
    """The dataset on disk was built from another source folder (or other settings)."""


def source_fingerprint(root, csv_paths=None, settings: dict | None = None) -> dict:
    """What identifies a build's source: the resolved folder, the number of video files, and a
    sha256 (16 hex digits) of their relative names, sizes and mtimes, the CSV files' names and
    contents, and `settings` (decode options)."""
    root = pathlib.Path(root).resolve()
    h = hashlib.sha256(f"{root}\n".encode())
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS:
                path = os.path.join(dirpath, name)
                st = os.stat(path)
                h.update(
                    f"{os.path.relpath(path, root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode()
                )
                count += 1
    if csv_paths is None:
        csv_paths = sorted(root.glob("*.csv"))
    elif isinstance(csv_paths, str | os.PathLike):
        csv_paths = [csv_paths]
    for path in csv_paths:
        path = pathlib.Path(path).resolve()
        h.update(f"csv {path}\n".encode() + (path.read_bytes() if path.is_file() else b""))
    settings = dict(settings or {})
    h.update(repr(sorted(settings.items())).encode())
    return {"path": str(root), "files": count, "sha256": h.hexdigest()[:16], "settings": settings}


def _describe(source: dict) -> str:
    return f"{source['path']} ({source['files']} video files, fingerprint {source['sha256']})"


def prepare(*, rebuild: bool = False, download_config=None, **kwargs) -> VideoFolder:
    """`VideoFolder(**kwargs)` built (or reused if built from the same source and settings).

    With `rebuild`, a dataset in the same place built from another source or settings is deleted
    and built again; without, that raises `SourceMismatchError` naming both sources.
    """
    builder = VideoFolder(**kwargs)
    if rebuild and builder.source_mismatch(download_config) is not None:
        log.warning("video_folder: deleting %s to rebuild it from the new source", builder.data_dir)
        shutil.rmtree(builder.data_dir)
        builder = VideoFolder(**kwargs)
    builder.download_and_prepare(download_config=download_config)
    return builder


def _without_format(settings: dict | None) -> dict:
    return {k: v for k, v in (settings or {}).items() if k != "frame_format"}


def _flow_build():
    try:
        import i3d_jax.flow  # noqa: F401
        from i3d_jax.data import flow_build
    except ImportError as e:
        raise ImportError(
            "video_folder config 'flow' needs i3d_jax.flow.compute_flow / tvl1_batch (TV-L1), "
            f"which is not available ({e}). Build the 'rgb' config, or install the optical-flow "
            "dependencies."
        ) from e
    return flow_build


@dataclasses.dataclass(eq=False)
class VideoFolderConfig(tfds.core.BuilderConfig):
    """`modality`: ``"rgb"`` (JPEG frames) or ``"flow"`` (quantised flow, PNG)."""

    modality: str = "rgb"


class VideoFolder(schema.VideoDatasetBuilder):
    """TFDS builder of a local video folder (see the module docstring for layouts and options)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        VideoFolderConfig(name="rgb", description="RGB frames as JPEG.", modality="rgb"),
        VideoFolderConfig(name="flow", description="TV-L1 flow as uint8 PNG.", modality="flow"),
    ]
    DEFAULT_CONFIG_NAME = "rgb"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put videos in <manual_dir>/<split>/<class>/<video>, or Kinetics-style CSV files "
        "(label,youtube_id,time_start,time_end,split) in <manual_dir> beside the video files, "
        "or pass Charades CSVs (charades_csv=, --charades_csv) for videos <id>.mp4 under it."
    )

    def __init__(
        self,
        *,
        folder=None,
        csv=None,
        charades_csv=None,
        fps: float | None = 25.0,
        short_side: int | None = 256,
        max_frames: int | None = None,
        strict: bool = False,
        flow_bound: float = preprocess.FLOW_BOUND,
        allow_truncated: bool = False,
        flow=None,
        flow_fn=None,
        flow_cache_dir=None,
        beam_options: str | None = None,
        flow_devices=None,
        frame_format: str | stored_video.FrameFormat | None = None,
        **kwargs,
    ):
        """Args beyond TFDS's (`data_dir`, `config`, ...).

        Args:
          folder: the source folder (default: TFDS's ``manual_dir``). Not needed to read.
          csv: CSV file(s) to use instead of the ``*.csv`` files in ``root``.
          charades_csv: Charades-format CSV file(s) (multi-label videos with action intervals,
            module docstring); not with `csv`. Not needed to read a built dataset.
          fps, short_side, max_frames: passed to `preprocess.load_video`.
          strict: raise on the first bad file instead of skipping it.
          flow_bound: the flow quantisation bound in pixels (``flow`` config).
          flow: a `flow_build.FlowSettings` (``flow`` config; default: JAX solver, default preset,
            ``flow_bound``); its bound replaces ``flow_bound``.
          flow_fn: a stand-in ``frames -> float32 flow [T-1, H, W, 2]`` (tests); recorded as such.
          flow_cache_dir: the per-video flow cache (default under ``<data_dir>/downloads``).
          flow_devices: the JAX solver's devices (default all local ones); speed only.
          allow_truncated: keep the frames of a file that ends before its declared frame count.
          beam_options: build on Apache Beam with these pipeline options (TFDS's string,
            ``"runner=DirectRunner,direct_num_workers=4,direct_running_mode=multi_processing"``;
            see `i3d_jax.data.video_beam`); None: the sequential build (needs no Beam). The same
            examples either way, so it is no part of the source fingerprint.
          frame_format: how RGB frames are stored (`stored_video`): "h264" (segments, the
            default for a new dataset), "jpeg" (one JPEG a frame, the format of every dataset
            built before segments existed), or a `stored_video.FrameFormat`; None: the format of
            the dataset already built here, else "h264". Part of the source fingerprint.
          progress: show a tqdm bar per split (with a known total).
          **kwargs: `progress` and TFDS's builder arguments.
        """
        self._root = None if folder is None else pathlib.Path(folder)
        if csv is not None and charades_csv is not None:
            raise charades.CharadesError(
                "video_folder: give Kinetics-style csv or charades_csv files, not both"
            )
        self._csv = csv
        self._charades_csv = (
            [charades_csv] if isinstance(charades_csv, str | os.PathLike) else charades_csv
        )
        self._fps = fps
        self._short_side = short_side
        self._max_frames = max_frames
        self._strict = strict
        self._flow = flow
        self._flow_bound = float(flow.bound if flow is not None else flow_bound)
        self._flow_fn = flow_fn
        self._flow_cache_dir = flow_cache_dir
        self._flow_devices = flow_devices
        self._allow_truncated = bool(allow_truncated)
        self._beam_options = beam_options
        self._frame_format_arg = (
            stored_video.named(frame_format) if isinstance(frame_format, str) else frame_format
        )
        self._beam_entries: list[VideoEntry] = []
        self._beam_progress = None
        self._skipped: list[dict] = []
        self._rotated: list[dict] = []
        super().__init__(**kwargs)

    def _settings(self) -> dict:
        out = {
            "fps": self._fps,
            "short_side": self._short_side,
            "max_frames": self._max_frames,
            "allow_truncated": self._allow_truncated,
        }
        if self._is_flow:
            out["flow_bound"] = self._flow_bound
            out["flow"] = self._flow_metadata()
        elif self.frame_format.codec != stored_video.JPEG:  # JPEG: as fingerprinted before
            out["frame_format"] = self.frame_format.as_settings()
        return out

    @property
    def frame_format(self) -> stored_video.FrameFormat | None:
        """How this dataset stores RGB frames (None for flow): as asked, else as built here, else
        `stored_video.DEFAULT` (H.264 segments)."""
        if self._is_flow:
            return None
        if self._frame_format_arg is None:
            self._frame_format_arg = (
                stored_video.stored_format(self.data_dir) or stored_video.DEFAULT
            )
        return self._frame_format_arg

    def flow_settings(self):
        """The ``flow`` config's `flow_build.FlowSettings` (the defaults unless given)."""
        if self._flow is None:
            self._flow = _flow_build().FlowSettings(bound=self._flow_bound)
        return self._flow

    def _flow_metadata(self) -> dict:
        meta = self.flow_settings().as_metadata()
        if self._flow_fn is not None:
            meta["solver"] = f"stand-in {getattr(self._flow_fn, '__qualname__', self._flow_fn)}"
            meta.pop("solver_version", None)  # not the JAX solver's flow
        return meta

    def flow_cache_dir(self) -> pathlib.Path:
        """Where finished videos' flow waits until the build completes."""
        if self._flow_cache_dir is not None:
            return pathlib.Path(self._flow_cache_dir)
        return pathlib.Path(self.data_dir_root) / "downloads" / "video_folder_flow_cache"

    def _source_root(self, download_config=None) -> pathlib.Path | None:
        if self._root is not None:
            return self._root
        manual = getattr(download_config, "manual_dir", None)
        return pathlib.Path(manual) if manual else None

    def source_mismatch(self, download_config=None) -> str | None:
        """Why the dataset on disk does not match this builder's source folder and settings (a
        message naming both), or None (not built yet, no source given, or the same)."""
        root = self._source_root(download_config)
        if root is None or not self.is_prepared():
            return None
        stored = (self.info.metadata or {}).get(SOURCE_KEY)
        current = source_fingerprint(root, self._listing_files(root), self._settings())
        if stored and stored.get("sha256") == current["sha256"]:
            return None
        where = f"the video_folder dataset in {self.data_dir}"
        if not stored:
            return (
                f"{where} records no source fingerprint (built by an older i3d_jax), so it may "
                f"not come from {_describe(current)}"
            )
        if stored["path"] != current["path"]:
            why = f"was built from {_describe(stored)}, not from {_describe(current)}"
        elif stored.get("settings") != current["settings"] and _without_format(
            stored.get("settings")
        ) == _without_format(current["settings"]):
            had = (stored.get("settings") or {}).get("frame_format") or {"codec": "jpeg"}
            why = (
                f"stores its frames as {had['codec']} ({had}), not as "
                f"{self.frame_format.codec} (--frame_format / frame_format=; leave it out to "
                "use the stored format)"
            )
        elif stored.get("settings") != current["settings"]:
            why = (
                f"was built from {stored['path']} with settings {stored.get('settings')}, not "
                f"{current['settings']}"
            )
        else:
            why = (
                f"was built from {_describe(stored)}; its files changed since: now "
                f"{_describe(current)}"
            )
        return f"{where} {why}"

    def download_and_prepare(self, *args, download_config=None, **kwargs):
        """TFDS's, refusing (`SourceMismatchError`) a dataset built from another source."""
        message = self.source_mismatch(download_config)
        if message is not None:
            raise SourceMismatchError(
                f"{message}. Rebuild it (`python -m i3d_jax.data.build video_folder --data_dir "
                f"... --manual_dir ... --rebuild`, or `video_folder.prepare(rebuild=True, ...)`) "
                "or use another data_dir for this source"
            )
        if self._beam_options is not None:
            download_config = self._with_beam(download_config)
        try:
            out = super().download_and_prepare(*args, download_config=download_config, **kwargs)
        finally:
            self._stop_beam_progress()
        if self._is_flow and self._flow_cache_dir is None:
            shutil.rmtree(self.flow_cache_dir(), ignore_errors=True)  # all stored now
        if self._beam_options is not None:
            shutil.rmtree(self.beam_work_dir(), ignore_errors=True)  # all stored now
        return out

    # ------------------------------------------------------------------------- Beam builds

    def beam_work_dir(self) -> pathlib.Path:
        """Where a Beam build's workers keep finished videos until the build completes."""
        root = pathlib.Path(self.data_dir_root) / "downloads" / "video_folder_beam"
        return root / self.builder_config.name

    def _with_beam(self, download_config):
        from i3d_jax.data import video_beam

        options = video_beam.pipeline_options(self._beam_options)
        if download_config is None:
            return tfds.download.DownloadConfig(beam_options=options)
        return dataclasses.replace(download_config, beam_options=options)

    def _beam_job(self):
        from i3d_jax.data import video_beam

        work = self.beam_work_dir()
        work.mkdir(parents=True, exist_ok=True)
        flow = self.flow_settings() if self._is_flow else None
        return video_beam.VideoJob(
            work_dir=str(work),
            decode=self._decode_options(),
            decode_settings=self._decode_settings(),
            strict=self._strict,
            frame_format=self.frame_format,
            flow=flow,
            flow_cache_dir=str(self.flow_cache_dir()) if flow is not None else None,
            flow_fn=self._flow_fn,
        )

    def _beam_splits(self, entries: list[VideoEntry]) -> dict:
        from i3d_jax.data import video_beam

        job = self._beam_job()
        self._beam_entries = entries
        finished = video_beam.finished_count(entries, job)
        if finished:
            log.warning(
                "video_folder: %d of %d videos already finished in %s (an earlier build); "
                "building the rest",
                finished,
                len(entries),
                job.work_dir,
            )
        self._beam_progress = video_beam.Progress(
            job.work_dir, entries, job, desc=f"{self.name} videos (beam)", enabled=self._progress
        ).__enter__()
        return {
            split: video_beam.split_transform([e for e in entries if e.split == split], job)
            for split in dict.fromkeys(e.split for e in entries)
        }

    def _process_pipeline_result(self, pipeline_result) -> None:
        """After the Beam pipeline: the workers' skipped and rotated videos into the metadata."""
        from i3d_jax.data import video_beam

        self._stop_beam_progress()
        skipped, rotated = video_beam.collect_records(self._beam_entries, self._beam_job())
        self.info.metadata[schema.SKIPPED_KEY] = {"count": len(skipped), "files": skipped}
        self.info.metadata[schema.ROTATED_KEY] = {"count": len(rotated), "files": rotated}
        super()._process_pipeline_result(pipeline_result)

    def _stop_beam_progress(self) -> None:
        if self._beam_progress is not None:
            self._beam_progress.__exit__(None, None, None)
            self._beam_progress = None

    def _listing_files(self, root):
        """The files that list the videos (hashed into the source fingerprint): the Kinetics
        CSVs (None: ``root/*.csv``), or the Charades CSVs and the classes file they use."""
        if self._charades_csv is None:
            return self._csv
        found = charades.classes_file(self._charades_csv, root)
        return [*self._charades_csv, *([found] if found is not None else [])]

    def _has_actions(self) -> bool:
        """Whether the examples carry action intervals: built from Charades CSVs, or (reading)
        the dataset on disk has them."""
        if self._charades_csv is not None:
            return True
        return bool(schema.stored_features_have(self.data_dir, schema.ACTIONS))

    @property
    def _is_flow(self) -> bool:
        return self.builder_config.modality == "flow"

    def _info(self) -> tfds.core.DatasetInfo:
        metadata = {
            schema.MODALITY_KEY: self.builder_config.modality,
            "fps": self._fps,
            "short_side": self._short_side,
            "max_frames": self._max_frames,
            schema.SKIPPED_KEY: {"count": 0, "files": []},
            schema.ROTATED_KEY: {"count": 0, "files": []},
            SOURCE_KEY: None,
        }
        if not self._is_flow:
            metadata[stored_video.FRAME_FORMAT_KEY] = self.frame_format.as_metadata()
        if self._is_flow:
            metadata[schema.FLOW_SCALE_KEY] = self._flow_bound
            metadata["flow_settings"] = None  # set when built (flow_build.METADATA_KEY)
        return tfds.core.DatasetInfo(
            builder=self,
            description="Videos from a local folder (i3d_jax video_folder).",
            features=schema.video_features(
                None,
                flow=self._is_flow,
                actions=self._has_actions(),
                frame_format=None if self._is_flow else self.frame_format.codec,
            ),
            supervised_keys=(schema.VIDEO, schema.LABEL),
            metadata=tfds.core.MetadataDict(metadata),
        )

    def _split_generators(self, dl_manager):
        root = self._root if self._root is not None else pathlib.Path(dl_manager.manual_dir)
        if self._charades_csv is not None:
            found = charades.scan(root, self._charades_csv, self._strict)
            entries, class_names = found.entries, list(found.class_names)
            self.info.metadata[schema.ANNOTATIONS_KEY] = found.record
        else:
            entries = scan(root, self._csv)
            class_names = sorted({e.label for e in entries if e.label})
        self.info.metadata[SOURCE_KEY] = source_fingerprint(
            root, self._listing_files(root), self._settings()
        )
        if self._is_flow:
            self.info.metadata[_flow_build().METADATA_KEY] = self._flow_metadata()
        label_feature = self.info.features[schema.LABEL]
        if label_feature.num_classes is None:
            label_feature.names = class_names
        elif list(label_feature.names) != class_names:
            raise ValueError(
                f"video_folder: classes found in {root} differ from the builder's: "
                f"{class_names} vs {list(label_feature.names)}"
            )
        self._skipped, self._rotated = [], []
        if self._beam_options is not None:
            return self._beam_splits(entries)
        splits = {}
        for split in dict.fromkeys(e.split for e in entries):
            todo = [e for e in entries if e.split == split]
            splits[split] = self._generate_examples(split, todo)
        return splits

    def _decoded(self, split: str, entries: list[VideoEntry], done: list):
        """(frames, example without video) of each good entry; bad ones skipped (or raised)."""
        for entry in self._bar(entries, len(entries), split):
            try:
                frames, example = self._decode(entry)
            except BAD_VIDEO_ERRORS as e:
                if self._strict:
                    raise
                self._skip(entry, str(e))
                continue
            done.append((entry, example))
            yield frames

    def _generate_examples(self, split: str, entries: list[VideoEntry]):
        done: collections.deque = collections.deque()
        frames = self._decoded(split, entries, done)
        if not self._is_flow:
            stored = (stored_video.encode(f, self.frame_format) for f in frames)
        else:
            keys = (self.flow_cache_key(done[-1][0]) for _ in itertools.count())
            flows = self.compute_flow(frames, keys, desc=f"{split} flow", total_videos=len(entries))
            stored = (
                {schema.VIDEO: video, schema.NUM_FRAMES: np.int32(len(video))}
                for video in map(schema.encode_flow_frames, flows)
            )
        for fields in stored:
            entry, example = done.popleft()
            example.update(fields)
            yield example_key(entry), example

    def _decode_settings(self) -> str:
        return repr(sorted(self._settings().items()))

    def scan_entries(self, download_config=None) -> list[VideoEntry]:
        """The videos of every split as a build reads them (`scan` of the source folder)."""
        root = self._source_root(download_config)
        if root is None:
            raise ValueError("video_folder: no source folder given (folder= or manual_dir)")
        return scan(root, self._csv)

    def flow_cache_key(self, entry: VideoEntry) -> str:
        """`entry`'s name in the flow cache (its path as scanned, size, mtime, time range and the
        decode settings); raises `FileNotFoundError` for a missing file."""
        if entry.path is None:
            raise FileNotFoundError(entry.missing_reason)
        return flow_cache_key(entry, self._decode_settings())

    @property
    def strict(self) -> bool:
        """Whether a bad file raises (True) or is skipped."""
        return self._strict

    def compute_flow(self, frames, keys, *, desc: str = "flow", total_videos: int | None = None):
        """`flow_build.flow_videos` of `frames` (an iterable of uint8 `[T, H, W, 3]`, one key
        each) with this builder's flow settings, devices, stand-in and cache: each video's
        quantised flow, uint8 `[T-1, H, W, 2]`, in order."""
        return _flow_build().flow_videos(
            frames,
            self.flow_settings(),
            keys=keys,
            cache_dir=self.flow_cache_dir(),
            progress=self._progress,
            desc=desc,
            total_videos=total_videos,
            flow_fn=self._flow_fn,
            devices=self._flow_devices,
        )

    def decode_frames(self, entry: VideoEntry) -> np.ndarray:
        """`entry`'s frames as a build stores them, uint8 `[T, H, W, 3]`; a bad file raises one
        of `BAD_VIDEO_ERRORS`."""
        return self._decode(entry)[0]

    def _skip(self, entry: VideoEntry, reason: str) -> None:
        log.warning(
            "video_folder: skipping %s (%s)", entry.path or entry.folder or entry.video_id, reason
        )
        self._skipped.append(skipped_record(entry, reason))
        self.info.metadata[schema.SKIPPED_KEY] = {
            "count": len(self._skipped),
            "files": list(self._skipped),
        }

    def _decode_options(self) -> DecodeOptions:
        return DecodeOptions(
            fps=self._fps,
            short_side=self._short_side,
            max_frames=self._max_frames,
            allow_truncated=self._allow_truncated,
            min_frames=2 if self._is_flow else 1,
        )

    def _decode(self, entry: VideoEntry) -> tuple[np.ndarray, dict]:
        frames, example, rotation = decode_entry(entry, self._decode_options())
        if rotation:
            self._rotated.append(rotated_record(entry, rotation))
            self.info.metadata[schema.ROTATED_KEY] = {
                "count": len(self._rotated),
                "files": list(self._rotated),
            }
        return frames, example
