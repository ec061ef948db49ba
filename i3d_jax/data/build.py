"""Build a dataset: ``python -m i3d_jax.data.build NAME --data_dir DIR [options]``.

NAME is ``synthetic_motion``, ``video_folder`` or a TFDS catalog name (e.g. ``ucf101``; needs
TensorFlow, see :mod:`i3d_jax.data.catalog`). Examples::

    python -m i3d_jax.data.build synthetic_motion --data_dir ~/tfds --config directions4
    python -m i3d_jax.data.build synthetic_motion --data_dir ~/tfds --num_train 500 --size 48
    python -m i3d_jax.data.build video_folder --data_dir ~/tfds/ucf --manual_dir ~/videos/ucf \
        --config rgb --short_side 256 --fps 25
    python -m i3d_jax.data.build video_folder --data_dir ~/tfds/k400 --manual_dir ~/k400 \
        --csv ~/k400/train.csv --csv ~/k400/validate.csv --strict
    python -m i3d_jax.data.build video_folder --data_dir ~/tfds/ucf --manual_dir ~/videos/ucf \
        --config flow --flow_solver jax --flow_preset default --flow_batch 16

The ``flow`` config computes TV-L1 (:mod:`i3d_jax.data.flow_build`): ``--flow_solver jax`` (default)
batches frame pairs across videos over all local JAX devices (GPUs when present), ``opencv`` runs
OpenCV's reference on the CPU; ``--flow_preset`` names the TV-L1 parameters (`i3d_jax.flow.PRESETS`),
``--flow_batch`` the pairs per device batch (default `flow_build.default_batch_pairs`: 1 on CPU),
``--flow_bound`` the quantisation bound in pixels. A bar shows frame pairs per second; finished
videos are cached, so a build stopped midway and run again computes only the rest.

``--beam_pipeline_options`` builds ``video_folder`` (either config) on Apache Beam
(:mod:`i3d_jax.data.video_beam`; ``pip install -r requirements-beam.txt``), with TFDS's option
string: on N local processes::

    python -m i3d_jax.data.build video_folder --data_dir ~/tfds/k400 --manual_dir ~/k400 \
        --beam_pipeline_options "runner=DirectRunner,direct_num_workers=16,direct_running_mode=multi_processing"

on Google Cloud Dataflow (data_dir and videos on GCS; workers install the project from a
setup.py or container)::

    python -m i3d_jax.data.build video_folder --data_dir gs://B/tfds --manual_dir gs://B/k400 \
        --beam_pipeline_options "runner=DataflowRunner,project=P,region=R,temp_location=gs://B/tmp,num_workers=64"

on a Spark or Flink cluster (Beam's portable runners; a job server beside the cluster)::

    ... --beam_pipeline_options "runner=SparkRunner,spark_master_url=spark://HOST:7077,environment_type=LOOPBACK"
    ... --beam_pipeline_options "runner=FlinkRunner,flink_master=HOST:8081,environment_type=LOOPBACK"

The Beam build writes the same examples as the sequential one (order may differ), skips and
counts bad files the same way, and resumes at the video level: a build killed midway and run again
reads the videos its workers finished from ``<data_dir>/downloads/video_folder_beam``.

Flow on many hosts (:mod:`i3d_jax.data.flow_prepass`): ``--shard I/N`` (or ``auto``: this
process's `jax.process_index()` of `jax.process_count()`) computes only shard I's videos into the
cache, prints one JSON line and builds no dataset; then the same command without ``--shard`` builds
the dataset from the cache. ``--data_dir`` (the cache is in it) must be on storage all hosts share,
and every host must see the videos at the same ``--manual_dir`` path (cache keys hold it)::

    # a SLURM array (#SBATCH --array=0-7), one task per shard:
    python -m i3d_jax.data.build video_folder --config flow --data_dir /shared/tfds/ucf \
        --manual_dir /shared/ucf --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT
    # a TPU pod, one shard per host:
    gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=all --command \
        "python -m i3d_jax.data.build video_folder --config flow --data_dir /shared/tfds/ucf \
         --manual_dir /shared/ucf --shard auto"
    # then the final build, on one host (of a TPU pod: with JAX_PLATFORMS=cpu):
    python -m i3d_jax.data.build video_folder --config flow --data_dir /shared/tfds/ucf \
        --manual_dir /shared/ucf

Prints one progress bar per split and, at the end, the dataset directory, the split sizes and the
number of skipped files. A ``video_folder`` dataset already in ``--data_dir`` that was built from
another source folder (or its files changed, or other settings) is an error naming both sources;
``--rebuild`` deletes it and builds the new one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import sys

import tensorflow_datasets as tfds

from i3d_jax import cli, flow
from i3d_jax.data import flow_build, flow_prepass, schema, video_beam, video_folder
from i3d_jax.data.synthetic_motion import SyntheticMotion
from i3d_jax.data.video_folder import VideoFolder

_FLOW_OPTIONS = ("flow_solver", "flow_preset", "flow_batch", "flow_bound", "shard")
_SYNTHETIC_OPTIONS = (
    "num_classes",
    "num_frames",
    "size",
    "num_train",
    "num_validation",
    "seed",
    "speed",
    "rotation_deg",
    "noise",
)


def _none_or(kind):
    def parse(text: str):
        return None if text.lower() == "none" else kind(text)

    return parse


def parse_args(argv=None) -> argparse.Namespace:
    p = cli.ArgumentParser(prog="python -m i3d_jax.data.build", description=__doc__)
    p.add_argument("name", help="synthetic_motion | video_folder | a TFDS catalog name")
    p.add_argument("--data_dir", required=True, help="where datasets are written")
    p.add_argument("--manual_dir", help="video_folder: the source folder (or TFDS manual_dir)")
    p.add_argument("--config", help="builder config (video_folder: rgb|flow)")
    p.add_argument("--strict", action="store_true", help="fail on the first bad video file")
    g = p.add_argument_group("video_folder")
    g.add_argument("--csv", action="append", help="Kinetics-style CSV (repeatable)")
    g.add_argument(
        "--charades_csv",
        action="append",
        help="Charades-format CSV (id,...,actions,length; split from its name; repeatable): "
        "multi-label videos with action intervals",
    )
    g.add_argument("--fps", type=_none_or(float), default=25.0, help="frame rate; none: native")
    g.add_argument("--short_side", type=_none_or(int), default=256, help="pixels; none: keep")
    g.add_argument(
        "--max_frames", type=int, default=None, help="frames kept per video (default all)"
    )
    g.add_argument(
        "--allow_truncated", action="store_true", help="keep files that end before their length"
    )
    g.add_argument(
        "--frame_format",
        choices=("h264", "jpeg"),
        default=None,
        help="how RGB frames are stored: h264 (16-frame H.264 segments, the default for a new "
        "dataset; about 8x smaller and faster to read than JPEG) or jpeg (one JPEG a frame); "
        "default: the format of the dataset already in --data_dir, else h264",
    )
    g.add_argument(
        "--beam_pipeline_options",
        metavar="OPTIONS",
        help="build on Apache Beam with these options, e.g. "
        '"runner=DirectRunner,direct_num_workers=4,direct_running_mode=multi_processing"',
    )
    g.add_argument(
        "--rebuild",
        action="store_true",
        help="replace a dataset in --data_dir built from another source or settings",
    )
    g = p.add_argument_group("video_folder --config flow")
    g.add_argument("--flow_solver", choices=flow_build.SOLVERS, help="TV-L1 solver (default jax)")
    g.add_argument(
        "--flow_preset", choices=sorted(flow.PRESETS), help="TV-L1 parameters (default: default)"
    )
    g.add_argument(
        "--flow_batch",
        type=int,
        help="frame pairs per batch (default: 1 on CPU, by frame size on GPU)",
    )
    g.add_argument("--flow_bound", type=float, help="quantisation bound in pixels (default 20)")
    g.add_argument(
        "--shard",
        type=flow_prepass.parse_shard,
        help="I/N or auto: only compute shard I of N's flow into the cache (no dataset)",
    )
    g = p.add_argument_group("synthetic_motion (override the config's fields)")
    g.add_argument("--num_classes", type=int, help="classes of motion")
    g.add_argument("--num_frames", type=int, help="frames per video")
    g.add_argument("--size", type=int, help="frame side in pixels")
    g.add_argument("--num_train", type=int, help="training videos")
    g.add_argument("--num_validation", type=int, help="validation videos")
    g.add_argument("--seed", type=int, help="generator seed")
    g.add_argument("--speed", type=float, help="pixels per frame")
    g.add_argument("--rotation_deg", type=float, help="degrees per frame of the rotation classes")
    g.add_argument("--noise", type=float, help="pixel noise (std)")
    args = p.parse_args(argv)
    flow_flags = [f"--{k}" for k in _FLOW_OPTIONS if getattr(args, k) is not None]
    if flow_flags and (args.name != "video_folder" or args.config != "flow"):
        p.error(f"{', '.join(flow_flags)} apply to video_folder --config flow only")
    if args.beam_pipeline_options is not None and args.name != "video_folder":
        p.error("--beam_pipeline_options applies to video_folder builds only")
    if args.flow_batch is not None and args.flow_batch < 1:
        p.error(f"--flow_batch must be >= 1 (frame pairs per batch), got {args.flow_batch}")
    if args.flow_bound is not None and not args.flow_bound > 0:
        p.error(f"--flow_bound must be > 0 pixels, got {args.flow_bound}")
    return args


def flow_settings(args: argparse.Namespace) -> flow_build.FlowSettings:
    """The flow settings the ``--flow_*`` flags name (defaults where not given)."""
    given = {
        "solver": args.flow_solver,
        "preset": args.flow_preset,
        "bound": args.flow_bound,
        "batch_pairs": args.flow_batch,
    }
    return flow_build.FlowSettings(**{k: v for k, v in given.items() if v is not None})


def _video_folder_kwargs(args: argparse.Namespace) -> dict:
    extra = {"flow": flow_settings(args)} if args.config == "flow" else {}
    if args.config == "flow" and args.frame_format is not None:
        raise cli.UsageError(
            f"--frame_format {args.frame_format} is for RGB frames; a flow dataset stores its "
            "quantised flow as lossless PNG (drop --frame_format, or build --config rgb)"
        )
    return dict(
        **extra,
        config=args.config or "rgb",
        data_dir=args.data_dir,
        folder=args.manual_dir,
        csv=args.csv,
        charades_csv=args.charades_csv,
        fps=args.fps,
        short_side=args.short_side,
        max_frames=args.max_frames,
        strict=args.strict,
        allow_truncated=args.allow_truncated,
        frame_format=args.frame_format,
        beam_options=args.beam_pipeline_options,
        progress=True,
    )


def make_builder(args: argparse.Namespace) -> tfds.core.DatasetBuilder:
    """The builder that `args` name (does not build)."""
    if args.name == "synthetic_motion":
        name = args.config or SyntheticMotion.DEFAULT_CONFIG_NAME
        known = {c.name: c for c in SyntheticMotion.BUILDER_CONFIGS}
        if name not in known:
            raise cli.UsageError(
                f"synthetic_motion: unknown --config {name!r}; expected one of {sorted(known)}"
            )
        overrides = {
            k: getattr(args, k) for k in _SYNTHETIC_OPTIONS if getattr(args, k) is not None
        }
        config = known[name]
        if overrides:
            # A changed config gets its own name, hence its own directory.
            suffix = "_".join(f"{k}{v}" for k, v in sorted(overrides.items()))
            config = dataclasses.replace(config, name=f"{name}_{suffix}", **overrides)
        return SyntheticMotion(config=config, data_dir=args.data_dir, progress=True)
    if args.name == "video_folder":
        return VideoFolder(**_video_folder_kwargs(args))
    from i3d_jax.data import catalog

    return catalog.builder(args.name, data_dir=args.data_dir, config=args.config)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.shard is not None:  # the flow pre-pass of one shard (i3d_jax.data.flow_prepass)
        return cli.run(flow_prepass.run, args.shard, _video_folder_kwargs(args), args.rebuild)
    return cli.run(_build, args)


def _quiet_beam() -> None:
    """Beam's runner and its workers log every channel they open; keep warnings and errors."""
    for name in ("apache_beam", "apache_beam.runners.portability.local_job_service"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _build(args: argparse.Namespace) -> int:
    tfds.disable_progress_bar()  # our builders show their own bar with a known total
    download_config = tfds.download.DownloadConfig(manual_dir=args.manual_dir)
    if args.beam_pipeline_options is not None:
        _quiet_beam()
        options = args.beam_pipeline_options
        if "sdk_harness_log_level" not in options:
            options += ",default_sdk_harness_log_level=WARNING"
        try:
            video_beam.pipeline_options(options)  # a bad option string fails before any work
        except (ImportError, ValueError) as e:
            raise cli.UsageError(cli.message(e)) from e
        args.beam_pipeline_options = options
    try:
        if args.name == "video_folder":
            builder = video_folder.prepare(
                rebuild=args.rebuild, download_config=download_config, **_video_folder_kwargs(args)
            )
        else:
            builder = make_builder(args)
            builder.download_and_prepare(download_config=download_config)
    except (video_folder.SourceMismatchError, FileNotFoundError) as e:
        raise cli.UsageError(cli.message(e)) from e  # found before any video was read
    except Exception as e:
        bad = _bad_video(e)
        if bad is None:
            raise
        raise video_beam.BadVideoError(bad) from e  # --strict: the bad file, named (exit 1)
    info = builder.info
    skipped = info.metadata.get(schema.SKIPPED_KEY, {"count": 0}) if info.metadata else {}
    for record in skipped.get("files", []):
        print(f"skipped: {record['path']} ({record['reason']})", file=sys.stderr)
    print(
        json.dumps(
            {
                "dataset_dir": str(builder.data_dir),
                "splits": {k: v.num_examples for k, v in info.splits.items()},
                "skipped": skipped.get("count", 0),
            }
        )
    )
    return 0


def _bad_video(error: BaseException) -> str | None:
    """The message of a --strict build's bad video, also from a Beam worker's wrapped error."""
    seen = error
    while seen is not None:
        if isinstance(seen, video_folder.BAD_VIDEO_ERRORS + (video_beam.BadVideoError,)):
            return cli.message(seen)
        seen = seen.__cause__ or seen.__context__
    match = re.search(r"BadVideoError: (video_folder: bad video [^\n]*)", str(error))
    return match.group(1) if match else None


if __name__ == "__main__":
    sys.exit(main())
