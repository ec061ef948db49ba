"""The report of an ablation grid (`python -m i3d_jax.ablate report --workdir W`).

Per setting of `<W>/ablate.json`: the receptive field of Mixed_5c in frames and pixels (from
`i3d_jax.schedules` at the config's training clip shape), GFLOPs per training clip (XLA cost
analysis of the inference forward, batch 1, cached in `<W>/<setting>/cost.json`), parameters,
training clips/s (median of each run's logged rates after the first, which holds the compile; mean
over seeds), and clip and video top-1 over seeds (mean ± sample std, ddof=1). Each setting is
compared with its baseline (the setting that differs only in the `--baseline` fields) by Welch's
t-test (unequal variances, two-sided) per metric; "beyond noise" means p < alpha. Writes
`report.md`, `report.json` and `report.png` into W.
"""

from __future__ import annotations

import json
import math
import pathlib
import statistics
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from scipy import stats

from i3d_jax import schedules
from i3d_jax.projects.ablate import grid as ablate
from i3d_jax.training.config import load_config_file, parse_assignment, with_overrides
from i3d_jax.training.tasks import video_model

METRICS = ("clip_top1", "video_top1")


def forward_cost(config: ml_collections.ConfigDict) -> dict:
    """`{"gflops", "params"}` of one training-shaped clip through the inference forward (XLA's
    cost analysis of the lowered program; nothing is compiled or run)."""
    config = with_overrides(config, [("model.graph", "plain")])  # count the math, not a rewrite
    model = video_model.build_model(config, None)
    rng = jax.random.key(0)
    variables = jax.eval_shape(lambda: video_model.init_variables(config, model, rng))
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"]))
    x = jax.ShapeDtypeStruct(video_model.input_shape(config, 1), jnp.float32)
    lowered = jax.jit(lambda v, x: model.apply(v, x, train=False)[0]).lower(variables, x)
    cost = lowered.cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0]
    return {"gflops": float(cost["flops"]) / 1e9, "params": params}


def cached_cost(config: ml_collections.ConfigDict, setting_dir: pathlib.Path) -> dict:
    path = setting_dir / "cost.json"
    if path.exists():
        return json.loads(path.read_text())
    cost = forward_cost(config)
    setting_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cost) + "\n")
    return cost


def receptive_field(config: ml_collections.ConfigDict) -> tuple[int, int]:
    """(frames, pixels) seen by one Mixed_5c position at the training clip shape."""
    size = (config.input.clip_length, config.input.crop_size, config.input.crop_size)
    row = next(
        r
        for r in schedules.receptive_fields(config.model.schedule, size)
        if r.endpoint == "Mixed_5c"
    )
    return row.receptive_field[0], row.receptive_field[1]


def train_rate(metrics_jsonl: pathlib.Path) -> float | None:
    """Median logged training clips/s of a run, without its first row (compile) when it has more."""
    if not metrics_jsonl.exists():
        return None
    rows = [json.loads(x) for x in metrics_jsonl.read_text().splitlines() if x.strip()]
    rates = [r["clips_per_s"] for r in rows if "clips_per_s" in r]
    if not rates:
        return None
    return float(statistics.median(rates[1:] if len(rates) > 1 else rates))


def summary(values: list[float]) -> dict:
    """mean, sample std (ddof=1; 0 for one value) and the values."""
    if not values:
        return {"mean": None, "std": None, "n": 0, "values": []}
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(np.mean(values)), "std": std, "n": len(values), "values": values}


def welch(a: list[float], b: list[float], alpha: float) -> dict | None:
    """Welch's t-test of a against b (two-sided); None with fewer than 2 values on a side. When
    every seed gave the same value on both sides the test is undefined (its t divides by a zero
    spread): t and p are None and `note` says so, without scipy's precision warning."""
    if len(a) < 2 or len(b) < 2:
        return None
    diff = float(np.mean(a) - np.mean(b))
    if _no_spread(a) and _no_spread(b):
        return {"diff": diff, "t": None, "p": None, "beyond_noise": False, "note": SEEDS_AGREE}
    with warnings.catch_warnings():  # nearly identical values: scipy warns of precision loss
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_ind(a, b, equal_var=False)
    t, p = float(res.statistic), float(res.pvalue)
    return {
        "diff": diff,
        "t": None if math.isnan(t) else t,
        "p": None if math.isnan(p) else p,
        "beyond_noise": bool(not math.isnan(p) and p < alpha),
    }


SEEDS_AGREE = "every seed gave the same value on both sides: no spread to test against"


def _no_spread(values: list[float]) -> bool:
    return float(np.max(values) - np.min(values)) <= 1e-12 * max(1.0, float(np.max(np.abs(values))))


def _baseline_of(overrides: dict, selector: dict, settings: dict) -> str | None:
    want = {**overrides, **selector}
    for name, ov in settings.items():
        if ov == want:
            return name
    return None


def parse_baseline(text: str, grid: ablate.Grid, base: ml_collections.ConfigDict) -> dict:
    if not text:
        field, values = grid.axes[0]
        return {field: values[0]}
    field, value = parse_assignment(text, base, False)
    if field not in dict(grid.axes):
        raise ValueError(f"--baseline {text!r}: {field} is not an axis of the grid")
    if value not in dict(grid.axes)[field]:
        raise ValueError(f"--baseline {text!r}: {value!r} is not among {dict(grid.axes)[field]}")
    return {field: value}


def build_report(workdir: str | pathlib.Path, baseline: str = "", alpha: float = 0.05) -> dict:
    """Collects every run of the grid in `workdir` (missing runs are counted, not invented)."""
    root = pathlib.Path(workdir)
    grid = ablate.read_manifest(root)
    base = load_config_file(grid.config)
    selector = parse_baseline(baseline, grid, base)
    runs = grid.runs(root)
    settings = {name: dict(ov) for name, ov in grid.settings()}
    rows = []
    for name, ov in grid.settings():
        mine = [r for r in runs if r.setting == name]
        config = ablate.run_config(grid, mine[0], base)
        results = [json.loads(r.results.read_text()) for r in mine if r.finished]
        rates = [x for x in (train_rate(r.workdir / "metrics.jsonl") for r in mine) if x]
        rf_t, rf_hw = receptive_field(config)
        row: dict[str, Any] = {
            "setting": name,
            "overrides": dict(ov),
            "schedule": config.model.schedule,
            "rf_t": rf_t,
            "rf_hw": rf_hw,
            **cached_cost(config, root / name),
            "clips_per_s": float(np.mean(rates)) if rates else None,
            "runs_finished": len(results),
            "runs_planned": len(mine),
        }
        for m in METRICS:
            row[m] = summary([float(r[m]) for r in results if m in r])
        rows.append(row)
    by_name = {r["setting"]: r for r in rows}
    for row in rows:
        ref = _baseline_of(row["overrides"], selector, settings)
        row["baseline"] = ref
        row["vs_baseline"] = {}
        if ref is None or ref == row["setting"]:
            continue
        for m in METRICS:
            row["vs_baseline"][m] = welch(row[m]["values"], by_name[ref][m]["values"], alpha)
    command = f"python -m i3d_jax.ablate report --workdir {workdir}"
    if baseline:
        command += f" --baseline {baseline}"
    return {
        "grid": grid.to_json(),
        "baseline": {k: v for k, v in selector.items()},
        "alpha": alpha,
        "test": "Welch's t-test (scipy.stats.ttest_ind, equal_var=False), two-sided, per metric, "
        "of each setting's per-seed top-1 against its baseline's",
        "command": command,
        "settings": rows,
    }


def _pm(s: dict) -> str:
    return "-" if s["mean"] is None else f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"


def _test_cell(t: dict | None) -> str:
    if not t:
        return "n/a (< 2 seeds)"
    if t.get("note") == SEEDS_AGREE:
        return f"{100 * t['diff']:+.1f} (seeds agree: no test)"
    tt = "-" if t["t"] is None else f"{t['t']:+.2f}"
    p = "-" if t["p"] is None else f"{t['p']:.3g}"
    return f"{100 * t['diff']:+.1f} (t={tt}, p={p}{', beyond noise' if t['beyond_noise'] else ''})"


def markdown(report: dict) -> str:
    """The report as a Markdown table with the test and the command that made it."""
    g = report["grid"]
    axes = "; ".join(f"`{k}` ∈ {{{', '.join(map(str, v))}}}" for k, v in g["axes"])
    base = ", ".join(f"{k}={v}" for k, v in report["baseline"].items())
    lines = [
        f"Grid: `{g['config']}`, {axes}, {g['seeds']} seed(s)"
        + (f"; fixed: {', '.join(f'{k}={v}' for k, v in g['fixed'])}" if g["fixed"] else ""),
        "",
        "| setting | RF T (frames) | RF H/W (px) | GFLOPs/clip | params | train clips/s | runs "
        "| clip top-1 % | video top-1 % | Δ clip vs baseline | Δ video vs baseline |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["settings"]:
        rate = "-" if r["clips_per_s"] is None else f"{r['clips_per_s']:.1f}"
        vs = r["vs_baseline"]
        clip_vs = "baseline" if r["baseline"] == r["setting"] else _test_cell(vs.get("clip_top1"))
        video_vs = "baseline" if r["baseline"] == r["setting"] else _test_cell(vs.get("video_top1"))
        lines.append(
            f"| {r['setting']} | {r['rf_t']} | {r['rf_hw']} | {r['gflops']:.3f} | "
            f"{r['params']:,} | {rate} | {r['runs_finished']}/{r['runs_planned']} | "
            f"{_pm(r['clip_top1'])} | {_pm(r['video_top1'])} | {clip_vs} | {video_vs} |"
        )
    lines += [
        "",
        f"Top-1: mean ± sample standard deviation (ddof=1) over seeds. Baseline: {base}. "
        f"Test: {report['test']}; 'beyond noise' = p < {report['alpha']}. Receptive field of "
        "Mixed_5c at the training clip shape; GFLOPs from XLA's cost analysis of one clip's "
        "forward; clips/s: median logged training rate (first log, with the compile, left out), "
        "mean over seeds.",
        "",
        f"Regenerate: `{report['command']}`",
    ]
    return "\n".join(lines)


def plot(report: dict, out_png: str | pathlib.Path) -> None:
    """Video top-1 (mean ± std over seeds) against Mixed_5c's temporal receptive field and GFLOPs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["settings"] if r["video_top1"]["mean"] is not None]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = (("rf_t", "Mixed_5c temporal receptive field (frames)"), ("gflops", "GFLOPs per clip"))
    for ax, (key, label) in zip(axes, panels, strict=True):
        for r in rows:
            y, e = 100 * r["video_top1"]["mean"], 100 * r["video_top1"]["std"]
            ax.errorbar(r[key], y, yerr=e, fmt="o", capsize=4, label=r["setting"])
            ax.annotate(r["setting"], (r[key], y), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")  # fmt: skip
        ax.margins(x=0.2, y=0.1)
        ax.xaxis.set_major_locator(plt.MaxNLocator(5))
        ax.set_xlabel(label)
        ax.set_ylabel("video top-1 (%)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{report['grid']['config']}: mean ± std over {report['grid']['seeds']} seeds")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def write_report(workdir: str | pathlib.Path, baseline: str = "", alpha: float = 0.05) -> dict:
    """Builds the report and writes `report.json`, `report.md`, `report.png` into `workdir`."""
    report = build_report(workdir, baseline, alpha)
    root = pathlib.Path(workdir)
    (root / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (root / "report.md").write_text(markdown(report) + "\n")
    plot(report, root / "report.png")
    return report
