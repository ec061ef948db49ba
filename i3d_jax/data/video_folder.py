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

Video extensions: see `VIDEO_EXTENSIONS`. Frames are decoded with :func:`i3d_jax.preprocess.load_video`
(``fps``, ``short_side``, ``max_frames`` builder options; defaults 25 fps, smaller side 256).

Configs: ``rgb`` stores JPEG frames; ``flow`` stores TV-L1 flow from
``i3d_jax.flow.compute_flow(frames_uint8 [T, H, W, 3]) -> float32 [T-1, H, W, 2]`` (pixels),
quantised with :func:`i3d_jax.preprocess.quantize_flow` into PNG frames (see
:mod:`i3d_jax.data.schema`; ``info.metadata["flow_scale"]`` is the bound).

Bad files (undecodable, missing, too short) are skipped with a warning and recorded in
``info.metadata["skipped"] = {"count": n, "files": [{"split", "path", "reason"}, ...]}``;
``strict=True`` raises instead. A stream that ends clearly before its declared frame count is a bad
file too (``allow_truncated=True`` keeps what decodes).

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

import csv
import dataclasses
import hashlib
import logging
import os
import pathlib
import shutil

import numpy as np
import tensorflow_datasets as tfds

from i3d_jax import preprocess
from i3d_jax.data import schema

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (
    ".mp4",
    ".avi",
    ".mkv",
    ".webm",
    ".mov",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".ogv",
    ".flv",
    ".gif",
)
CSV_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")
SOURCE_KEY = schema.SOURCE_KEY
_SPLIT_ALIASES = {"val": "validation", "valid": "validation", "validate": "validation"}


@dataclasses.dataclass(frozen=True)
class VideoEntry:
    """One video to store: where it is, its class name, split, id and optional time range."""

    split: str
    label: str
    video_id: str
    path: str | None  # None: the file was not found
    start: float | None = None
    end: float | None = None
    missing_reason: str = ""


def split_name(name: str) -> str:
    """Folder/CSV split name -> TFDS split name (``val``/``validate`` -> ``validation``)."""
    name = name.strip()
    return _SPLIT_ALIASES.get(name.lower(), name)


def scan_folders(root) -> list[VideoEntry]:
    """Entries of a ``root/<split>/<class>/<video>`` tree, sorted by split, class and file."""
    root = pathlib.Path(root)
    entries = []
    for split_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        loose = [p.name for p in split_dir.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS]
        if loose:
            raise ValueError(
                f"video_folder: {split_dir} holds video files ({loose[0]}, ...) directly; expected "
                "the layout <root>/<split>/<class>/<video>"
            )
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            for video in sorted(class_dir.iterdir()):
                if video.is_file() and video.suffix.lower() in VIDEO_EXTENSIONS:
                    entries.append(
                        VideoEntry(
                            split_name(split_dir.name), class_dir.name, video.stem, str(video)
                        )
                    )
    if not entries:
        raise ValueError(
            f"video_folder: no video files found under {root}; expected <root>/<split>/<class>/"
            f"<video> with one of the extensions {', '.join(VIDEO_EXTENSIONS)}, or *.csv files "
            f"with columns {','.join(CSV_COLUMNS)}"
        )
    return entries


def scan_csv(root, csv_paths=None) -> list[VideoEntry]:
    """Entries of Kinetics-style CSV files (module docstring); missing videos have ``path=None``."""
    root = pathlib.Path(root)
    if csv_paths is None:
        csv_paths = sorted(root.glob("*.csv"))
    elif isinstance(csv_paths, str | os.PathLike):
        csv_paths = [csv_paths]
    index: dict[str, str] = {}
    for dirpath, _, files in os.walk(root):
        for f in sorted(files):
            stem, ext = os.path.splitext(f)
            if ext.lower() in VIDEO_EXTENSIONS:
                index.setdefault(stem, os.path.join(dirpath, f))
    entries = []
    for csv_path in csv_paths:
        with open(csv_path, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(
                    f"video_folder: {csv_path} lacks the column(s) {', '.join(missing)}; expected "
                    f"a header with {','.join(CSV_COLUMNS)} (found {reader.fieldnames})"
                )
            for line, row in enumerate(reader, start=2):
                label = (row["label"] or "").strip()
                if not label:
                    continue  # unlabelled rows (e.g. Kinetics' test set) cannot be trained on
                try:
                    t0, t1 = float(row["time_start"]), float(row["time_end"])
                except ValueError as e:
                    raise ValueError(
                        f"video_folder: {csv_path}:{line}: time_start/time_end must be numbers "
                        f"(seconds), got {row['time_start']!r}, {row['time_end']!r}"
                    ) from e
                yid = row["youtube_id"].strip()
                clip = f"{yid}_{int(t0):06d}_{int(t1):06d}"
                split = split_name(row["split"])
                if clip in index:
                    entries.append(VideoEntry(split, label, clip, index[clip]))
                elif yid in index:
                    entries.append(VideoEntry(split, label, clip, index[yid], t0, t1))
                else:
                    reason = f"missing file: no {clip}.* or {yid}.* under {root} (row {line})"
                    entries.append(VideoEntry(split, label, clip, None, t0, t1, reason))
    if not entries:
        raise ValueError(f"video_folder: no labelled rows in {[str(p) for p in csv_paths]}")
    return entries


def scan(root, csv_paths=None) -> list[VideoEntry]:
    """`scan_csv` if `csv_paths` is given or ``root`` has ``*.csv`` files, else `scan_folders`."""
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"video_folder: source folder not found: {str(root)!r}")
    if csv_paths is not None or any(root.glob("*.csv")):
        return scan_csv(root, csv_paths)
    return scan_folders(root)


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


def _compute_flow():
    try:
        from i3d_jax.flow import compute_flow
    except ImportError as e:
        raise ImportError(
            "video_folder config 'flow' needs i3d_jax.flow.compute_flow(frames_uint8 [T,H,W,3]) "
            f"-> float32 [T-1,H,W,2], which is not available ({e}). Build the 'rgb' config, or "
            "install the optical-flow dependencies."
        ) from e
    return compute_flow


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
        "(label,youtube_id,time_start,time_end,split) in <manual_dir> beside the video files."
    )

    def __init__(
        self,
        *,
        folder=None,
        csv=None,
        fps: float | None = 25.0,
        short_side: int | None = 256,
        max_frames: int | None = None,
        strict: bool = False,
        flow_bound: float = preprocess.FLOW_BOUND,
        allow_truncated: bool = False,
        **kwargs,
    ):
        """Args beyond TFDS's (`data_dir`, `config`, ...).

        Args:
          folder: the source folder (default: TFDS's ``manual_dir``). Not needed to read.
          csv: CSV file(s) to use instead of the ``*.csv`` files in ``root``.
          fps, short_side, max_frames: passed to `preprocess.load_video`.
          strict: raise on the first bad file instead of skipping it.
          flow_bound: the flow quantisation bound in pixels (``flow`` config).
          allow_truncated: keep the frames of a file that ends before its declared frame count.
          progress: show a tqdm bar per split (with a known total).
          **kwargs: `progress` and TFDS's builder arguments.
        """
        self._root = None if folder is None else pathlib.Path(folder)
        self._csv = csv
        self._fps = fps
        self._short_side = short_side
        self._max_frames = max_frames
        self._strict = strict
        self._flow_bound = float(flow_bound)
        self._allow_truncated = bool(allow_truncated)
        self._skipped: list[dict] = []
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
        return out

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
        current = source_fingerprint(root, self._csv, self._settings())
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
        return super().download_and_prepare(*args, download_config=download_config, **kwargs)

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
            SOURCE_KEY: None,
        }
        if self._is_flow:
            metadata[schema.FLOW_SCALE_KEY] = self._flow_bound
        return tfds.core.DatasetInfo(
            builder=self,
            description="Videos from a local folder (i3d_jax video_folder).",
            features=schema.video_features(None, flow=self._is_flow),
            supervised_keys=(schema.VIDEO, schema.LABEL),
            metadata=tfds.core.MetadataDict(metadata),
        )

    def _split_generators(self, dl_manager):
        root = self._root if self._root is not None else pathlib.Path(dl_manager.manual_dir)
        entries = scan(root, self._csv)
        self.info.metadata[SOURCE_KEY] = source_fingerprint(root, self._csv, self._settings())
        compute_flow = _compute_flow() if self._is_flow else None
        class_names = sorted({e.label for e in entries})
        label_feature = self.info.features[schema.LABEL]
        if label_feature.num_classes is None:
            label_feature.names = class_names
        elif list(label_feature.names) != class_names:
            raise ValueError(
                f"video_folder: classes found in {root} differ from the builder's: "
                f"{class_names} vs {list(label_feature.names)}"
            )
        self._skipped = []
        splits = {}
        for split in dict.fromkeys(e.split for e in entries):
            todo = [e for e in entries if e.split == split]
            splits[split] = self._generate_examples(split, todo, compute_flow)
        return splits

    def _generate_examples(self, split: str, entries: list[VideoEntry], compute_flow=None):
        for entry in self._bar(entries, len(entries), split):
            try:
                example = self._make_example(entry, compute_flow)
            except (preprocess.VideoDecodeError, FileNotFoundError, _TooShort) as e:
                if self._strict:
                    raise
                self._skip(entry, str(e))
                continue
            yield f"{split}/{entry.video_id}/{entry.path}", example

    def _skip(self, entry: VideoEntry, reason: str) -> None:
        log.warning("video_folder: skipping %s (%s)", entry.path or entry.video_id, reason)
        self._skipped.append({"split": entry.split, "path": entry.path or "", "reason": reason})
        self.info.metadata[schema.SKIPPED_KEY] = {
            "count": len(self._skipped),
            "files": list(self._skipped),
        }

    def _make_example(self, entry: VideoEntry, compute_flow) -> dict:
        if entry.path is None:
            raise FileNotFoundError(entry.missing_reason)
        frames = preprocess.load_video(
            entry.path,
            fps=self._fps,
            short_side=self._short_side,
            start=entry.start,
            end=entry.end,
            max_frames=self._max_frames,
            allow_truncated=self._allow_truncated,
        )
        info = preprocess.video_info(entry.path)
        fps = self._fps if self._fps is not None else info["fps"]
        if compute_flow is None:
            encoded = schema.encode_jpeg_frames(frames)
        else:
            if len(frames) < 2:
                raise _TooShort(f"{entry.path}: {len(frames)} frame(s); flow needs at least 2")
            flow = np.asarray(compute_flow(frames), np.float32)
            encoded = schema.encode_flow_frames(preprocess.quantize_flow(flow, self._flow_bound))
        return {
            schema.VIDEO: encoded,
            schema.LABEL: entry.label,
            schema.VIDEO_ID: entry.video_id,
            schema.PATH: entry.path,
            schema.FPS: np.float32(fps),
            schema.NUM_FRAMES: np.int32(len(encoded)),
            schema.HEIGHT: np.int32(info["height"] or frames.shape[1]),
            schema.WIDTH: np.int32(info["width"] or frames.shape[2]),
        }


class _TooShort(ValueError):
    pass
