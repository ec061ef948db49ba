"""`python -m i3d_jax.two_stream`: build both datasets, train both streams per seed, fuse them.

    python -m i3d_jax.two_stream --workdir runs/two_stream [--seeds 3] [--data_dir DIR] \\
        [--set num_train_steps=200] [--fusion_weights 0.5,0.5] [--rgb_config FILE] \\
        [--flow_config FILE]

See `i3d_jax.projects.two_stream.run` for what it runs and writes. Bad flags or configs print
`error: ...` (exit 2) before any work.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from collections.abc import Sequence

import jax

from i3d_jax import cli
from i3d_jax.projects.two_stream.run import (
    CONFIGS,
    REAL_STAGES,
    SUMMARY,
    Stages,
    check_manifest,
    format_table,
    fused_results_path,
    json_line,
    make_plan,
    run,
    summarize,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = cli.ArgumentParser(prog="python -m i3d_jax.two_stream", description=__doc__)
    p.add_argument("--workdir", required=True, help="where datasets, runs and the summary go")
    p.add_argument("--seeds", type=int, default=3, help="training seeds (config.seed 0..N-1)")
    p.add_argument("--data_dir", default="", help="dataset directory (default <workdir>/data)")
    p.add_argument("--rgb_config", default=str(CONFIGS / "rgb.py"), help="RGB stream config")
    p.add_argument("--flow_config", default=str(CONFIGS / "flow.py"), help="flow stream config")
    p.add_argument(
        "--set", action="append", default=[], help="FIELD=VALUE for both streams (repeatable)"
    )
    p.add_argument("--fusion_weights", default="0.5,0.5", help="RGB,flow weights of the logits")
    p.add_argument(
        "--compile_cache",
        default="",
        help="XLA compilation cache directory (default <workdir>/xla_cache; 'none' for off): "
        "later seeds run the same programs, so only the first compiles",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None, stages: Stages = REAL_STAGES) -> int:
    args = parse_args(argv)
    command = "python -m i3d_jax.two_stream " + " ".join(sys.argv[1:] if argv is None else argv)
    return cli.run(_two_stream, args, stages, command)


def _two_stream(args: argparse.Namespace, stages: Stages, command: str) -> int:
    workdir = pathlib.Path(args.workdir)
    t0 = time.time()
    with cli.before_work():
        plan = make_plan(args)
        check_manifest(plan, workdir)  # a workdir that ran other settings is refused here
    summary_path = workdir / SUMMARY
    finished = all(fused_results_path(workdir, k).exists() for k in range(args.seeds))
    if finished and summary_path.exists():
        summary = json.loads(summary_path.read_text())
        if summary["plan"] == plan.to_json() and summary["seeds"] == args.seeds:
            print(f"already finished: {args.seeds} seed(s) in {workdir} (nothing to run)")
            print(format_table(summary))
            print(json_line(summary, summary_path))
            return 0
    if args.compile_cache != "none":
        cache = args.compile_cache or str(workdir / "xla_cache")
        jax.config.update("jax_compilation_cache_dir", cache)
    done = run(plan, workdir, args.seeds, stages)
    summary = summarize(done["per_seed"], plan)
    summary.update(
        command=command,
        wall_s=round(time.time() - t0, 1),
        ran_seeds=done["ran"],
        skipped_seeds=done["skipped"],
        seconds=done["seconds"],
    )
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"ran {len(done['ran'])} seed(s), {len(done['skipped'])} finished before, "
          f"in {summary['wall_s']:.0f} s")  # fmt: skip
    print(format_table(summary))
    print(json_line(summary, summary_path))
    return 0
