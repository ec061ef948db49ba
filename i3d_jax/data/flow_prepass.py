"""Flow on every host: a pre-pass computes one shard of a flow build's videos into its cache.

``python -m i3d_jax.data.build video_folder --config flow --data_dir D --manual_dir V --shard I/N``
(the same flags as the build, plus ``--shard``) computes the TV-L1 flow of shard ``I`` of ``N``
of the videos into the build's per-video flow cache, ``D/downloads/video_folder_flow_cache``
(:mod:`i3d_jax.data.flow_build`), on all of this process's JAX devices, and stops: it writes no
dataset, and prints one JSON line: the shard, its videos, how many it computed, how many were
cached already, and the bad or missing files it skipped (``skipped``, ``skipped_files``). Run
again, a shard computes only what is not cached yet. The same command without ``--shard`` is the
final build: it reads every video's flow from the cache, computes only what is missing, records
the skipped files in the dataset's metadata as always, and removes the cache when complete.

The shards are a deterministic function of the scanned source (`shard_entries`): the distinct
videos (file and time range) of all splits, sorted by path, dealt round-robin, so every process
agrees without talking to the others and the order they run in does not matter. ``--shard
auto`` takes this process's `jax.process_index()` of `jax.process_count()`, after
`jax.distributed.initialize()` where a cluster is detected (`sharding.maybe_initialize_distributed`:
a TPU pod, SLURM with several tasks, Open MPI, or ``I3D_COORDINATOR``/``I3D_NUM_PROCESSES``/
``I3D_PROCESS_ID``). The processes of such a run are tied together: one that finishes waits at
exit for the others (up to `SHUTDOWN_WAIT_S`), and one that dies stops the rest (their finished
videos stay cached; run the command again). Explicit ``--shard I/N`` processes are independent.

Both the cache and the source must be shared: the cache is under ``--data_dir``, so put that on
storage every host mounts, and a video's cache key is its path as scanned (with its size, mtime,
time range and the decode settings), so every host, and the final build, must see the source
folder at the same path (give the same absolute ``--manual_dir``) and the same flags.

A SLURM array of 8 independent tasks, then the final build::

    #SBATCH --array=0-7
    python -m i3d_jax.data.build video_folder --config flow --data_dir /shared/tfds/k400 \\
        --manual_dir /shared/k400 --csv /shared/k400/train.csv \\
        --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT
    # once all tasks are done (e.g. sbatch --dependency=afterany:<array job id>):
    python -m i3d_jax.data.build video_folder --config flow --data_dir /shared/tfds/k400 \\
        --manual_dir /shared/k400 --csv /shared/k400/train.csv

A TPU pod, one shard per host, then the final build on one host::

    gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=all --command \\
        "python -m i3d_jax.data.build video_folder --config flow --data_dir /shared/tfds/ucf \\
         --manual_dir /shared/ucf --shard auto"
    gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=0 --command \\
        "JAX_PLATFORMS=cpu python -m i3d_jax.data.build video_folder --config flow \\
         --data_dir /shared/tfds/ucf --manual_dir /shared/ucf"

(``JAX_PLATFORMS=cpu``: the final build only reads the cache, and a JAX program that starts the
TPUs of one worker of a multi-host slice alone may wait for the other workers; a video the shards
did not finish is then computed on that host's CPU).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import itertools
import json
import logging
import re
from collections.abc import Sequence

from i3d_jax import cli
from i3d_jax.data import flow_build, video_folder
from i3d_jax.data.video_scan import VideoEntry

log = logging.getLogger(__name__)

AUTO = "auto"
# How long a finished process of a `--shard auto` run waits at exit for the others
# (`jax.distributed.initialize(shutdown_timeout_seconds=...)`; JAX's default of 5 minutes would
# abort every process, the unfinished ones included, once the shards' end times differ by more).
SHUTDOWN_WAIT_S = 7 * 24 * 3600


@dataclasses.dataclass(frozen=True)
class Shard:
    """Shard `index` (0-based) of `count`."""

    index: int
    count: int

    def __post_init__(self):
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(
                f"shard {self.index}/{self.count}: expected I/N with N >= 1 and 0 <= I < N"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard | str:
    """`--shard`'s value: ``I/N`` (0 <= I < N) -> `Shard`, or ``auto`` -> `AUTO`."""
    if text.strip().lower() == AUTO:
        return AUTO
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"expected I/N (shard I of N, 0 <= I < N, e.g. 0/4) or 'auto', got {text!r}"
        )
    index, count = int(match[1]), int(match[2])
    if count < 1 or index >= count:
        raise argparse.ArgumentTypeError(
            f"{text!r}: the shard index I of I/N must be in 0..N-1 (N >= 1)"
        )
    return Shard(index, count)


def resolve(shard: Shard | str) -> Shard:
    """`shard` itself, or for `AUTO` this process's (`jax.process_index()` of
    `jax.process_count()`), after `jax.distributed.initialize()` where a cluster is detected."""
    if isinstance(shard, Shard):
        return shard
    if shard != AUTO:
        raise ValueError(f"shard: expected a Shard or {AUTO!r}, got {shard!r}")
    import jax

    from i3d_jax import sharding

    sharding.maybe_initialize_distributed(shutdown_timeout_seconds=SHUTDOWN_WAIT_S)
    return Shard(jax.process_index(), jax.process_count())


def _order(entry: VideoEntry) -> tuple:
    """A video's place in the deal: its file and time range (a missing file: split and id)."""
    missing = "" if entry.path else f"{entry.split}/{entry.video_id}"
    start = -1.0 if entry.start is None else entry.start
    end = -1.0 if entry.end is None else entry.end
    return (entry.path or "", start, end, missing)


def shard_entries(entries: Sequence[VideoEntry], shard: Shard) -> list[VideoEntry]:
    """`shard`'s videos of `entries` (the scan of all splits): the distinct videos (a file and
    time range listed twice, e.g. in two splits, is one video: one cached flow) sorted by path
    and time range, every `shard.count`-th from `shard.index`. Missing files are dealt too."""
    distinct = {}
    for entry in entries:
        distinct.setdefault(_order(entry), entry)
    return [distinct[k] for k in sorted(distinct)][shard.index :: shard.count]


def prepass(
    builder: video_folder.VideoFolder, shard: Shard, entries: Sequence[VideoEntry] | None = None
) -> dict:
    """Computes the flow of `shard`'s videos of `builder`'s source (a ``flow`` config
    `VideoFolder` with a source folder; `entries`: its scan, if done already) into its flow
    cache; returns the report printed by the CLI: ``shard, videos, computed, cached, skipped,
    skipped_files [{split, path, reason}], cache_dir``. A bad or missing file is skipped
    (raised if the builder is strict)."""
    if builder.builder_config.modality != "flow":
        raise ValueError(
            f"flow pre-pass: the builder's config is {builder.builder_config.name!r}; --shard "
            "computes flow, for video_folder --config flow only"
        )
    mine = shard_entries(builder.scan_entries() if entries is None else entries, shard)
    skipped: list[dict] = []

    def skip(entry: VideoEntry, error: Exception) -> None:
        if builder.strict:
            raise error
        log.warning("video_folder: skipping %s (%s)", entry.path or entry.video_id, error)
        skipped.append({"split": entry.split, "path": entry.path or "", "reason": str(error)})

    keyed = []
    for entry in mine:
        try:
            keyed.append((entry, builder.flow_cache_key(entry)))
        except FileNotFoundError as e:
            skip(entry, e)
    settings = builder.flow_settings()
    cached = flow_build.cached_keys(builder.flow_cache_dir(), settings, (k for _, k in keyed))
    todo = [(entry, key) for entry, key in keyed if key not in cached]
    done: collections.deque = collections.deque()

    def frames():
        for entry, key in todo:
            try:
                video = builder.decode_frames(entry)
            except video_folder.BAD_VIDEO_ERRORS as e:
                skip(entry, e)
                continue
            done.append(key)
            yield video

    keys = (done[-1] for _ in itertools.count())
    computed = 0
    for _ in builder.compute_flow(
        frames(), keys, desc=f"shard {shard} flow", total_videos=len(todo)
    ):
        computed += 1
    return {
        "shard": str(shard),
        "videos": len(mine),
        "computed": computed,
        "cached": len(cached),
        "skipped": len(skipped),
        "skipped_files": skipped,
        "cache_dir": str(builder.flow_cache_dir()),
    }


def run(shard: Shard | str, builder_kwargs: dict, rebuild: bool = False) -> int:
    """The CLI's pre-pass (`data.build ... --shard`): resolves `shard`, builds the
    `VideoFolder(**builder_kwargs)`, prints `prepass`'s report as one JSON line. A dataset
    already in the data_dir from the same source: nothing to compute (``already_built``); from
    another source: a usage error, as the final build's, unless `rebuild` (``--rebuild``)."""
    if builder_kwargs.get("folder") is None:
        raise cli.UsageError("--shard needs --manual_dir (the source folder of the videos)")
    builder = video_folder.VideoFolder(**builder_kwargs)
    with cli.before_work():
        entries = builder.scan_entries()  # a missing source folder, or one without videos
        mismatch = builder.source_mismatch()
    if mismatch is not None and not rebuild:
        raise cli.UsageError(
            f"{mismatch}. The final build would refuse it: add --rebuild (here and there) to "
            "replace it, or use another --data_dir"
        )
    shard = resolve(shard)
    if builder.is_prepared() and mismatch is None:
        report = {"shard": str(shard), "already_built": str(builder.data_dir), "computed": 0}
    else:
        report = prepass(builder, shard, entries)
    print(json.dumps(report), flush=True)
    return 0
