"""Ablation grids in one command: every combination of the varied config fields x seeds.

    python -m i3d_jax.ablate run --config configs/synthetic_motion.py \\
        --axis model.schedule=paper,temporal_early --axis init.inflate_method=mean,center \\
        --seeds 3 --workdir runs/ablate [--set num_train_steps=200] [--launch [--prefix srun]]
    python -m i3d_jax.ablate report --workdir runs/ablate [--baseline model.schedule=paper]

`run` writes `<workdir>/ablate.json` (the grid: config file, axes, fixed overrides, seeds) and trains
each run in `<workdir>/<setting>/seed_<k>` one after another (`config.seed = k`) through
`i3d_jax.training.loop.train_and_evaluate`. It is resumable: a run with `eval/results.json` is
skipped without building anything, a run cut short resumes from its last checkpoint. `--launch`
prints one `train.py` command line per unfinished run instead (prefix them for a cluster, e.g.
`srun`; see the multi-host lines in docs/training.md). `report` is `i3d_jax.projects.ablate.report`. Local
runs share an XLA compilation cache (`--compile_cache`), so a setting's later seeds skip the compile.
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Sequence

import jax

from i3d_jax import cli
from i3d_jax.projects.ablate import report as ablate_report
from i3d_jax.projects.ablate.grid import launch_lines, make_grid, run_grid, write_manifest


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = cli.ArgumentParser(prog="python -m i3d_jax.ablate", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train the grid (or print its launch lines)")
    r.add_argument("--config", required=True, help="base config file, e.g. configs/X.py")
    r.add_argument("--axis", action="append", default=[], help="FIELD=V1,V2,... (repeatable)")
    r.add_argument("--set", action="append", default=[], help="FIELD=VALUE for every run")
    r.add_argument("--seeds", type=int, default=3, help="seeds per setting (config.seed 0..N-1)")
    r.add_argument("--workdir", required=True, help="runs go to <workdir>/<setting>/seed_<k>")
    r.add_argument("--launch", action="store_true", help="print one command line per run")
    r.add_argument("--prefix", default="", help="with --launch: put before each line (srun ...)")
    r.add_argument(
        "--compile_cache",
        default="",
        help="XLA compilation cache directory (default <workdir>/xla_cache; 'none' for off): "
        "the seeds of a setting run the same programs, so only the first compiles",
    )
    rep = sub.add_parser("report", help="collect the runs into report.md/.json/.png")
    rep.add_argument("--workdir", required=True, help="the grid's workdir (made by run)")
    rep.add_argument("--baseline", default="", help="FIELD=VALUE of the reference setting")
    rep.add_argument("--alpha", type=float, default=0.05, help="significance level")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(_ablate, parse_args(argv))


def _ablate(args: argparse.Namespace) -> int:
    if args.command == "report":
        with cli.before_work():
            report = ablate_report.write_report(args.workdir, args.baseline, args.alpha)
        print(ablate_report.markdown(report))
        return 0
    with cli.before_work():
        if not args.axis:
            raise ValueError("give at least one --axis FIELD=V1,V2")
        grid = make_grid(args.config, args.axis, args.set, args.seeds)
        write_manifest(grid, args.workdir)  # another grid in the workdir is refused here
        if args.launch:
            print("\n".join(launch_lines(grid, args.workdir, args.prefix)))
            return 0
    if args.compile_cache != "none":
        cache = args.compile_cache or str(pathlib.Path(args.workdir) / "xla_cache")
        jax.config.update("jax_compilation_cache_dir", cache)
    done = run_grid(grid, args.workdir)
    print(f"ran {len(done['ran'])} runs, skipped {len(done['skipped'])} finished ones")
    return 0
