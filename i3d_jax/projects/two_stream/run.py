"""Two streams end to end: build both datasets, train both streams per seed, fuse them
(`python -m i3d_jax.two_stream`, `i3d_jax.projects.two_stream.cli`).

On the camouflage task of `synthetic_motion` (i3d_jax/data/synthetic_camouflage.py: class = tint,
which RGB sees, x direction of a camouflaged disc, which TV-L1 flow sees) it builds the RGB and the
flow dataset (default under `<workdir>/data`), then for each seed k (`config.seed = k`) trains the
RGB and the flow I3D (`i3d_jax.training.loop.train_and_evaluate`, in `<workdir>/seed_<k>/rgb` and
`.../flow`) and evaluates their late fusion (`i3d_jax.training.evaluate`, averaged logits, into
`<workdir>/seed_<k>/fused/results.json` with each stream and the fusion side by side). It prints
video top-1 of RGB, flow and fused (per seed, mean ± sd over seeds) as a table and one JSON line,
and writes `<workdir>/summary.json`.

`<workdir>/two_stream.json` records the settings; another run in the same workdir with other
settings is refused. A run cut short resumes (finished seeds and streams are not redone, a stream
cut short resumes from its checkpoint); a finished one prints its summary and exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from i3d_jax.data import synthetic_motion
from i3d_jax.training import evaluate, loop
from i3d_jax.training.config import (
    load_config_file,
    parse_assignment,
    validate_config,
    with_overrides,
)

MANIFEST = "two_stream.json"
SUMMARY = "summary.json"
STREAMS = ("rgb", "flow", evaluate.FUSED)
METRIC = "video_top1"
# The streams' configs ship inside the package (an installed package has no configs/ folder).
CONFIGS = pathlib.Path(__file__).resolve().parent / "configs"


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a workdir runs: the two config files, overrides for both, data_dir, fusion weights."""

    rgb_config: str
    flow_config: str
    fixed: tuple[tuple[str, Any], ...]
    data_dir: str
    weights: tuple[float, float]

    def to_json(self) -> dict:
        return {
            "rgb_config": self.rgb_config,
            "flow_config": self.flow_config,
            "fixed": [[k, list(v) if isinstance(v, tuple) else v] for k, v in self.fixed],
            "data_dir": self.data_dir,
            "fusion_weights": list(self.weights),
        }

    def config(self, stream: str, seed: int) -> ml_collections.ConfigDict:
        """The full config of one stream's run: its file, the overrides, data_dir and the seed."""
        path = self.rgb_config if stream == "rgb" else self.flow_config
        overrides = (*self.fixed, ("dataset.data_dir", self.data_dir), ("seed", seed))
        overrides += (("eval.fusion_weights", self.weights),)
        return with_overrides(load_config_file(path), overrides)


@dataclasses.dataclass(frozen=True)
class Stages:
    """The heavy steps (tests substitute stand-ins): dataset build, training, fused evaluation."""

    build: Callable[[ml_collections.ConfigDict], None]
    train: Callable[[ml_collections.ConfigDict, pathlib.Path], Any]
    fuse: Callable[[ml_collections.ConfigDict, ml_collections.ConfigDict, pathlib.Path], dict]


def build_dataset(config: ml_collections.ConfigDict) -> None:
    """Builds a `synthetic_motion` dataset with a progress bar (others are built by training)."""
    if config.dataset.name != "synthetic_motion":
        return
    tfds.disable_progress_bar()  # the builder shows its own bar with a known total
    builder = synthetic_motion.SyntheticMotion(
        config=config.dataset.builder_config,
        data_dir=config.dataset.data_dir or None,
        file_format="array_record",
        progress=True,
    )
    builder.download_and_prepare()


def train_stream(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict:
    return loop.train_and_evaluate(config, workdir)


def fuse_streams(
    rgb: ml_collections.ConfigDict, flow: ml_collections.ConfigDict, seed_dir: pathlib.Path
) -> dict:
    """Late fusion of the seed's trained streams through `eval.py`'s unit; its results dict."""
    config = ml_collections.ConfigDict(rgb.to_dict())
    config.eval.fuse_with = str(seed_dir / "flow")
    out = seed_dir / evaluate.FUSED / "results.json"
    return evaluate.evaluate(config, seed_dir / "rgb", out=str(out), fuse_config=flow)


REAL_STAGES = Stages(build=build_dataset, train=train_stream, fuse=fuse_streams)


def make_plan(args: argparse.Namespace) -> Plan:
    """The plan of the command line, every config validated before any work (ValueError)."""
    if args.seeds < 1:
        raise ValueError(f"--seeds must be a positive integer, got {args.seeds}")
    weights = parse_weights(args.fusion_weights)
    data_dir = args.data_dir or str(pathlib.Path(args.workdir) / "data")
    base = load_config_file(args.rgb_config)
    fixed = tuple(parse_assignment(f, base, False) for f in args.set)
    paths = (str(pathlib.Path(p).resolve()) for p in (args.rgb_config, args.flow_config))
    plan = Plan(*paths, fixed, data_dir, weights)  # a file named two ways is one setting
    rgb, flow = plan.config("rgb", 0), plan.config("flow", 0)
    for name, config, modality in (("--rgb_config", rgb, "rgb"), ("--flow_config", flow, "flow")):
        validate_config(config)
        if config.modality != modality:
            raise ValueError(f"{name}: expected modality {modality!r}, got {config.modality!r}")
    if rgb.model.num_classes != flow.model.num_classes:
        raise ValueError(
            f"the streams have different class counts: rgb {rgb.model.num_classes}, "
            f"flow {flow.model.num_classes}"
        )
    return plan


def parse_weights(text: str) -> tuple[float, float]:
    try:
        weights = tuple(float(w) for w in text.split(","))
    except ValueError:
        weights = ()
    if len(weights) != 2 or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(
            f"--fusion_weights {text!r}: expected two non-negative numbers, not both 0, e.g. 0.5,0.5"
        )
    return weights


def check_manifest(plan: Plan, workdir: pathlib.Path) -> None:
    """Writes `<workdir>/two_stream.json`, or refuses a workdir that ran other settings."""
    path = workdir / MANIFEST
    if path.exists():
        old = json.loads(path.read_text())
        if old != plan.to_json():
            raise ValueError(
                f"{path} holds other settings ({json.dumps(old)}) than this command's "
                f"({json.dumps(plan.to_json())}); use another --workdir"
            )
        return
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plan.to_json(), indent=2) + "\n")


def fused_results_path(workdir: pathlib.Path, seed: int) -> pathlib.Path:
    return workdir / f"seed_{seed}" / evaluate.FUSED / "results.json"


def seed_accuracies(results: dict) -> dict[str, float]:
    """{rgb, flow, fused: video top-1} of one seed's fused results.json."""
    return {s: float(results["streams"][s][METRIC]) for s in STREAMS}


def run(
    plan: Plan, workdir: pathlib.Path, seeds: int, stages: Stages = REAL_STAGES
) -> dict[str, Any]:
    """Builds, trains and fuses every unfinished seed; returns {"per_seed", "ran", "skipped",
    "seconds"} (seconds of this call: the builds and each seed's stages)."""
    check_manifest(plan, workdir)
    per_seed, ran, skipped, seconds = [], [], [], {}
    todo = [k for k in range(seeds) if not fused_results_path(workdir, k).exists()]
    if todo:
        t = time.time()
        stages.build(plan.config("rgb", 0))
        stages.build(plan.config("flow", 0))
        seconds["build"] = round(time.time() - t, 1)
    for seed in range(seeds):
        path = fused_results_path(workdir, seed)
        if seed in todo:
            seed_dir = workdir / f"seed_{seed}"
            rgb, flow = plan.config("rgb", seed), plan.config("flow", seed)
            times = [time.time()]
            stages.train(rgb, seed_dir / "rgb")
            times.append(time.time())
            stages.train(flow, seed_dir / "flow")
            times.append(time.time())
            stages.fuse(rgb, flow, seed_dir)
            times.append(time.time())
            steps = np.diff(times).round(1).tolist()
            seconds[f"seed_{seed}"] = dict(
                zip(("train_rgb", "train_flow", "fuse"), steps, strict=True)
            )
            ran.append(seed)
        else:
            skipped.append(seed)
        per_seed.append({"seed": seed, **seed_accuracies(json.loads(path.read_text()))})
        if seed in ran:
            print(f"seed {seed}: " + ", ".join(f"{s} {_pct(per_seed[-1][s])}%" for s in STREAMS))
    return {"per_seed": per_seed, "ran": ran, "skipped": skipped, "seconds": seconds}


def summarize(per_seed: Sequence[dict], plan: Plan) -> dict:
    """Mean and sample sd (ddof=1; None for one seed) over seeds of each stream's video top-1."""
    stats = {}
    for s in STREAMS:
        values = np.array([r[s] for r in per_seed], np.float64)
        sd = float(values.std(ddof=1)) if len(values) > 1 else None
        stats[s] = {"mean": float(values.mean()), "sd": sd}
    rgb = plan.config("rgb", 0)
    return {
        "metric": METRIC,
        "seeds": len(per_seed),
        "streams": stats,
        "per_seed": list(per_seed),
        "datasets": {
            "rgb": f"{rgb.dataset.name}/{rgb.dataset.builder_config}",
            "flow": f"{plan.config('flow', 0).dataset.name}/"
            f"{plan.config('flow', 0).dataset.builder_config}",
        },
        "plan": plan.to_json(),
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def format_table(summary: dict) -> str:
    """Per-seed video top-1 of each stream and the fusion, and mean ± sd over seeds."""
    seeds = [r["seed"] for r in summary["per_seed"]]
    head = f"{'stream':7s}" + "".join(f"{f'seed {k}':>8s}" for k in seeds) + f"{'mean ± sd':>15s}"
    lines = [
        f"video top-1 (%) on {summary['datasets']['rgb']} / {summary['datasets']['flow']}, "
        f"{summary['seeds']} seed(s)",
        head,
    ]
    for s in STREAMS:
        cells = "".join(f"{_pct(r[s]):>8s}" for r in summary["per_seed"])
        st = summary["streams"][s]
        lines.append(f"{s:7s}{cells}{_pct(st['mean']) + ' ± ' + _pct(st['sd']):>15s}")
    return "\n".join(lines)


def json_line(summary: dict, path: pathlib.Path) -> str:
    out = {s: summary["streams"][s] for s in STREAMS}
    return json.dumps({**out, "metric": METRIC, "seeds": summary["seeds"], "summary": str(path)})
