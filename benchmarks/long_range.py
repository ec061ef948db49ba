"""The long-range recipe: does a temporal head tell "A then B" from "B then A" where I3D cannot?

    python benchmarks/long_range.py --workdir DIR [--heads mean,tcn,transformer,lstm]
        [--i3d_steps 400] [--head_steps 400]

Stages (each skipped when its output is already in DIR, so a rerun resumes):
  1. builds `synthetic_motion/long_range_events` and `synthetic_motion/long_range` with TFDS
     under DIR/tfds (see i3d_jax/data/synthetic_long.py);
  2. trains the `tiny` I3D on the single-event clips (`configs/long_range/i3d.py`, through
     `train_and_evaluate`, DIR/i3d) and saves its weights as an Orbax directory (DIR/weights);
  3. writes the long videos as H.264 files (DIR/videos, 25 fps) and extracts Mixed_5c features
     of 16-frame windows at stride 8 with `i3d_jax.extract_features.extract` (DIR/features, one
     `.npz` per video, and `features.csv` naming each file's class and split);
  4. trains each head (`configs/long_range/heads.py:<head>`, DIR/heads/<head>) with the same
     loop, `mean` being the paper's protocol (a linear classifier per window, logits averaged);
  5. prints a table and one JSON line: video accuracy of each head on the validation videos,
     and two parts of it read from the confusion matrix: `pair` (the two kinds right, in either
     order) and `order` (the order right among the videos whose kinds are right; 0.5 is chance).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import sys
import time

import av
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from configs.long_range import heads as heads_config  # noqa: E402
from configs.long_range import i3d as i3d_config  # noqa: E402
from i3d_jax import extract_features as ef  # noqa: E402
from i3d_jax.data import schema, synthetic_long  # noqa: E402
from i3d_jax.data.synthetic_motion import SyntheticMotion  # noqa: E402
from i3d_jax.training import loop  # noqa: E402
from i3d_jax.training.task import task_for  # noqa: E402
from i3d_jax.weights import orbax_dir  # noqa: E402

SPLITS = ("train", "validation")
FPS = 25
EXTRACT = ef.ExtractConfig(
    window=16, stride=8, fps=float(FPS), short_side=32, crop_size=32, crops="center", batch_size=64
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_datasets(data_dir: pathlib.Path) -> dict[str, SyntheticMotion]:
    """Both builder configs, prepared under `data_dir` (TFDS skips a finished build)."""
    builders = {}
    for name in ("long_range_events", "long_range"):
        builders[name] = SyntheticMotion(config=name, data_dir=str(data_dir))
        builders[name].download_and_prepare()
    return builders


def train_network(workdir: pathlib.Path, data_dir: pathlib.Path, steps: int) -> pathlib.Path:
    """Trains the network on single events; returns its weights directory (written once)."""
    config = i3d_config.get_config()
    config.dataset.data_dir = str(data_dir)
    config.num_train_steps = steps
    config.checkpoint.every_steps = min(config.checkpoint.every_steps, steps)
    weights = workdir / "weights"
    # A finished run returns from its records without its state unless asked (load_state).
    out = loop.train_and_evaluate(
        config, workdir / "i3d", load_state=not orbax_dir.is_orbax_dir(weights)
    )
    print("\n".join(loop.summary_lines(out)), file=sys.stderr)
    if out["eval"]:
        log(f"network on single-event clips: video top-1 {out['eval']['video_top1']:.3f}")
    if not orbax_dir.is_orbax_dir(weights):
        import jax

        state = jax.device_get(out["state"])
        variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
        names = workdir / "i3d_labels.txt"
        names.write_text("\n".join(synthetic_long.EVENT_NAMES) + "\n")
        model = task_for(config).build_model(None)
        source = f"{workdir / 'i3d'} step {out['steps']}"
        tmp = workdir / ".weights.tmp"
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp)
        orbax_dir.save(variables, model, tmp, source=source, labels=str(names))
        os.replace(tmp, weights)
    return weights


def _write_video(path: pathlib.Path, frames: np.ndarray) -> None:
    """H.264 (crf 8, near lossless) at 25 fps, written to a temporary name then renamed."""
    tmp = path.with_name(f".{path.name}.part")
    with av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "8", "preset": "ultrafast"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    os.replace(tmp, path)


def write_videos(
    builder: SyntheticMotion, root: pathlib.Path
) -> list[tuple[pathlib.Path, str, str]]:
    """The long videos as files `root/<split>_<index>.mp4`: (path, class name, split) of each."""
    root.mkdir(parents=True, exist_ok=True)
    names = builder.info.features[schema.LABEL].names
    rows = []
    for split in SPLITS:
        src = builder.as_data_source(split, deserialize_method=schema.RAW_DESERIALIZE)
        for i in tqdm(range(len(src)), desc=f"videos {split}", file=sys.stderr):
            path = root / f"{split}_{i:06d}.mp4"
            ex = None
            if not path.is_file():
                ex = src[i]
                _write_video(path, schema.decode_frames(ex[schema.VIDEO]))
            label = int((ex or src[i])[schema.LABEL])
            rows.append((path, names[label], split))
    return rows


def extract(rows, weights: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
    """Features of every video (finished ones skipped) and `features.csv`; returns the CSV."""
    result = ef.extract([p for p, _, _ in rows], out, {"rgb": orbax_dir.load(weights)}, EXTRACT,
                        ef.weights_identity(weights))  # fmt: skip
    log(f"features: wrote {len(result.written)}, skipped {len(result.skipped)} already done, "
        f"failed {len(result.failed)}")  # fmt: skip
    if result.failed:
        raise RuntimeError(f"feature extraction failed for {result.failed}")
    table = out / "features.csv"
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        for path, label, split in rows:
            w.writerow([ef.output_name(path), label, split])
    return table


def order_scores(results: dict) -> tuple[float, float]:
    """(pair, order): the kinds right in either order; the order right given the kinds right."""
    names = results["label_set"]
    confusion = np.asarray(results["confusion"])
    kinds = [frozenset(n.split("_then_")) for n in names]
    same_pair = np.array([[a == b for b in kinds] for a in kinds])
    pair_right = float((confusion * same_pair).sum())
    total = float(confusion.sum())
    return pair_right / total, float(np.trace(confusion)) / max(pair_right, 1.0)


def train_heads(workdir: pathlib.Path, table: pathlib.Path, names, steps: int) -> dict:
    """Trains each head on the features; returns {head: results of its final evaluation}."""
    out = {}
    for name in names:
        log(f"head {name}")
        config = heads_config.get_config(name)
        config.features.csv = str(table)
        config.num_train_steps = steps
        config.checkpoint.every_steps = steps
        run = loop.train_and_evaluate(config, workdir / "heads" / name)
        print("\n".join(loop.summary_lines(run)), file=sys.stderr)
        out[name] = run["eval"]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="everything is written (and resumed) here")
    parser.add_argument("--heads", default=",".join(heads_config.HEADS),
                        help=f"comma-separated, of {','.join(heads_config.HEADS)}")  # fmt: skip
    parser.add_argument("--i3d_steps", type=int, default=i3d_config.get_config().num_train_steps)
    parser.add_argument("--head_steps", type=int, default=heads_config.get_config().num_train_steps)
    args = parser.parse_args(argv)
    names = [h for h in args.heads.split(",") if h]
    unknown = sorted(set(names) - set(heads_config.HEADS))
    if unknown or not names:
        print(f"error: --heads {args.heads!r}: unknown {unknown}; expected some of "
              f"{','.join(heads_config.HEADS)}", file=sys.stderr)  # fmt: skip
        return 2
    if args.i3d_steps < 1 or args.head_steps < 1:
        print("error: --i3d_steps and --head_steps must be >= 1", file=sys.stderr)
        return 2
    workdir = pathlib.Path(args.workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    log("[1/4] datasets")
    builders = build_datasets(workdir / "tfds")
    log("[2/4] the network on single events")
    weights = train_network(workdir, workdir / "tfds", args.i3d_steps)
    log("[3/4] long videos and their features")
    rows = write_videos(builders["long_range"], workdir / "videos")
    table = extract(rows, weights, workdir / "features")
    log("[4/4] heads")
    results = train_heads(workdir, table, names, args.head_steps)
    wall = time.time() - t0
    summary = {}
    print(f"{'head':<12} {'video top-1':>11} {'pair':>6} {'order':>6}")
    for name, r in results.items():
        pair, order = order_scores(r)
        summary[name] = {"video_top1": r["video_top1"], "pair": pair, "order": order,
                         "num_videos": r["num_videos"]}  # fmt: skip
        print(f"{name:<12} {r['video_top1']:>11.3f} {pair:>6.3f} {order:>6.3f}")
    record = {"benchmark": "long_range", "workdir": str(workdir), "wall_s": round(wall, 1),
              "heads": summary, "i3d_steps": args.i3d_steps, "head_steps": args.head_steps}  # fmt: skip
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
