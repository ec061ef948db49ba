"""TV-L1 flow for whole datasets: batched across videos, quantised, cached per video.

`flow_videos(videos, FlowSettings(...))` yields each video's flow as stored in a dataset (uint8
`[T-1, H, W, 2]`, :func:`i3d_jax.preprocess.quantize_flow` with the settings' bound), in the order
the videos came. With the JAX solver, frame pairs of consecutive videos of the same frame size
share fixed-size batches of `batch_pairs` pairs per device, dispatched over all local devices at
once (`devices=`; `flow.tvl1_sharded`: one program per frame size, each device running its own
solver loops; the last dispatch padded), so the devices stay busy across short videos; the next
dispatch goes out before the previous one is read back. The number of devices changes speed only,
never the flow. The OpenCV solver (the reference) runs pair by pair on the CPU.

With `cache_dir`, each finished video's flow is written there (atomically) under its key and the
settings' fingerprint, so an interrupted build resumes at the video level, and settings that give
other flow never reuse it. Several hosts can fill one cache, each with its shard of the videos
(:mod:`i3d_jax.data.flow_prepass`, ``data.build ... --shard I/N``), before the build reads it.
`FlowSettings.as_metadata()` is what a dataset records (`METADATA_KEY`); `check_expected`
refuses a dataset whose recorded settings differ from a run's.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import pathlib
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from i3d_jax import flow, preprocess

METADATA_KEY = "flow_settings"  # dataset metadata: FlowSettings.as_metadata()
SOLVERS = ("jax", "opencv")
QUANTIZATION = "uint8 = round(clip(flow_px, -bound, bound) * 127 / bound) + 128"
# Held while the first video waits for a full batch of its frame size; beyond, its size is flushed.
# Per device: a dispatch fills every device, so more devices need more videos held to fill it.
_MAX_PENDING_VIDEOS = 16
_MAX_PENDING_PAIRS = 1024


def default_batch_pairs(height: int, width: int, backend: str | None = None) -> int:
    """Frame pairs per device batch for frames of `height x width` (`batch_pairs=None`).

    CPU: 1. On the 2-core CPU, batches of 4 or 16 pairs were not faster per pair than single
    pairs at 32x32 to 224x224 (slower at 32x32: a batched solver iterates until its slowest pair
    converges); BENCHMARKS.md, "Flow dataset builds". Accelerators: 16 pairs at 224x224 and more
    for smaller frames (about the same pixels a batch), up to 256 (not tuned).
    """
    import jax

    if (backend or jax.default_backend()) == "cpu":
        return 1
    return int(np.clip(16 * 224 * 224 // max(height * width, 1), 16, 256))


def _preset_params(preset: str | flow.TVL1Params) -> flow.TVL1Params:
    if isinstance(preset, flow.TVL1Params):
        return preset
    if preset not in flow.PRESETS:
        raise ValueError(
            f"unknown TV-L1 preset {preset!r}; expected one of {sorted(flow.PRESETS)} "
            "or a flow.TVL1Params"
        )
    return flow.PRESETS[preset]


@dataclasses.dataclass(frozen=True)
class FlowSettings:
    """How a flow dataset's flow is made. `batch_pairs` (None: `default_batch_pairs` per frame
    size) is for speed, so it is neither compared nor recorded; XLA's arithmetic differs a
    little between batch sizes, so it can move a few quantised values by one (0.2% of them at
    batch 2 vs 1 on 32x40 CPU frames). How many devices share the work changes nothing."""

    solver: str = "jax"  # "jax" (any JAX device) | "opencv" (the reference, CPU)
    preset: str | flow.TVL1Params = "default"  # a key of flow.PRESETS, or the parameters
    bound: float = preprocess.FLOW_BOUND  # quantisation bound in pixels (dataset `flow_scale`)
    batch_pairs: int | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self):
        if self.solver not in SOLVERS:
            raise ValueError(f"unknown flow solver {self.solver!r}; expected one of {SOLVERS}")
        _preset_params(self.preset)
        if not self.bound > 0:
            raise ValueError(f"flow bound must be > 0 pixels, got {self.bound}")
        if self.batch_pairs is not None and int(self.batch_pairs) < 1:
            raise ValueError(f"batch_pairs must be >= 1, got {self.batch_pairs}")

    @property
    def params(self) -> flow.TVL1Params:
        return _preset_params(self.preset)

    @property
    def preset_name(self) -> str:
        """The preset's name, or "custom" for parameters that are no preset."""
        if isinstance(self.preset, str):
            return self.preset
        return next((k for k, v in flow.PRESETS.items() if v == self.preset), "custom")

    def as_metadata(self) -> dict:
        """What a dataset records: solver (and the JAX solver's `flow.SOLVER_VERSION`), preset
        name, TV-L1 parameters, bound, quantisation."""
        out = {
            "solver": self.solver,
            "preset": self.preset_name,
            "params": dataclasses.asdict(self.params),
            "bound": float(self.bound),
            "quantization": QUANTIZATION,
        }
        if self.solver == "jax":
            out["solver_version"] = flow.SOLVER_VERSION
        return out

    def fingerprint(self) -> str:
        """16 hex digits of sha256 over `as_metadata()`: equal for settings giving the same flow."""
        text = json.dumps(self.as_metadata(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> str:
        return describe_metadata(self.as_metadata())

    @classmethod
    def from_metadata(cls, meta: dict, batch_pairs: int | None = None) -> FlowSettings:
        """The settings a dataset recorded (`as_metadata()`), e.g. to build more like it."""
        params = flow.TVL1Params(**meta["params"])
        preset = meta.get("preset", "custom")
        if flow.PRESETS.get(preset) != params:
            preset = params
        extra = {} if batch_pairs is None else {"batch_pairs": batch_pairs}
        return cls(solver=meta["solver"], preset=preset, bound=float(meta["bound"]), **extra)


def describe_metadata(meta: dict) -> str:
    """One line for recorded flow settings: solver, preset, bound (the JAX solver's version and
    non-preset parameters too)."""
    text = f"solver={meta.get('solver')} preset={meta.get('preset')} bound={meta.get('bound')}"
    if meta.get("solver") == "jax":
        text += f" solver_version={meta.get('solver_version', 1)}"  # none recorded: version 1
    params = meta.get("params")
    if params is not None and meta.get("preset") not in flow.PRESETS:
        text += f" params={params}"
    return text


# ----------------------------------------------------------------------------- run-side check


class FlowSettingsMismatchError(ValueError):
    """A flow dataset was built with other flow settings than the run expects."""


def check_expected(
    recorded: dict | None,
    *,
    solver: str = "",
    preset: str = "",
    bound: float = 0.0,
    where: str = "the flow dataset",
) -> None:
    """Raises `FlowSettingsMismatchError` naming both when `recorded` (a dataset's
    `as_metadata()`) differs from what a run expects; "" / 0 expects nothing for that field.
    Expecting solver "jax" expects this code's `flow.SOLVER_VERSION` too (a dataset recording
    none was made by version 1)."""
    expected = {}
    if solver:
        if solver not in SOLVERS:
            raise ValueError(
                f"expected flow solver {solver!r} is unknown; expected one of {SOLVERS}"
            )
        expected["solver"] = solver
    if preset:
        expected["preset"] = preset
        expected_params = dataclasses.asdict(_preset_params(preset))
    if bound:
        expected["bound"] = float(bound)
    if solver == "jax":
        expected["solver_version"] = flow.SOLVER_VERSION
    if not expected:
        return
    wanted = " ".join(f"{k}={v}" for k, v in expected.items())
    if not recorded:
        raise FlowSettingsMismatchError(
            f"{where} records no flow settings (built before they were recorded, or not flow), "
            f"but the run expects {wanted}; rebuild it, or set config.dataset.flow.* to '' / 0 "
            "to accept it"
        )
    differs = []
    if "solver" in expected and recorded.get("solver") != solver:
        differs.append("solver")
    elif "solver_version" in expected and recorded.get("solver_version", 1) != flow.SOLVER_VERSION:
        differs.append("solver_version")
    if "preset" in expected and recorded.get("params") != expected_params:
        differs.append("preset")
    if "bound" in expected and float(recorded.get("bound", -1)) != expected["bound"]:
        differs.append("bound")
    if differs:
        raise FlowSettingsMismatchError(
            f"{where} was built with flow settings {describe_metadata(recorded)}, but the run "
            f"expects {wanted} (config.dataset.flow; differing: {', '.join(differs)}). Rebuild "
            "the dataset with the expected settings (python -m i3d_jax.data.build ... --config "
            "flow --flow_solver/--flow_preset/--flow_bound), or change config.dataset.flow"
        )


# ----------------------------------------------------------------------------- cache


class _Cache:
    """Finished videos' quantised flow as `<dir>/<key>-<fingerprint>.npy` (atomic writes)."""

    def __init__(self, directory, settings: FlowSettings):
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fingerprint = settings.fingerprint()

    def path(self, key: str) -> pathlib.Path:
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", key)[-60:]
        return self.dir / f"{readable}.{digest}-{self.fingerprint}.npy"

    def load(self, key: str, shape: tuple[int, ...]) -> np.ndarray | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            out = np.load(path)
        except (OSError, ValueError):
            return None  # unreadable: computed again
        return out if out.shape == shape and out.dtype == np.uint8 else None

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def save(self, key: str, flow_uint8: np.ndarray) -> None:
        path = self.path(key)
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-", suffix=".npy")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, flow_uint8)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise


def cached_keys(cache_dir, settings: FlowSettings, keys: Iterable[str]) -> set[str]:
    """The `keys` whose flow (made with `settings`) `flow_videos(cache_dir=...)` would find in
    `cache_dir` (its shape is checked only when it is read)."""
    cache = _Cache(cache_dir, settings)
    return {key for key in keys if cache.has(key)}


# ----------------------------------------------------------------------------- flow of videos


@dataclasses.dataclass(eq=False)
class _Job:
    """One video: its gray frames until done, its quantised flow, pairs still to compute."""

    key: str | None
    out: np.ndarray  # uint8 [T-1, H, W, 2]
    gray: np.ndarray | None = None  # float32 [T, H, W]
    remaining: int = 0


def _check_frames(frames, index: int, key: str | None) -> np.ndarray:
    frames = np.asarray(frames)
    name = f"video {key!r}" if key is not None else f"video #{index}"
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"{name}: expected uint8 RGB frames [T, H, W, 3], got {frames.dtype} {frames.shape}"
        )
    if frames.shape[0] < 2:
        raise ValueError(f"{name}: {frames.shape[0]} frame(s); flow needs at least 2")
    return frames


def _progress_bar(progress: bool, desc: str, total: int | None):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="pair", disable=not progress, dynamic_ncols=True)


class _BarTotal:
    """A pairs bar's total: the given one less cached videos' pairs, or from a video count the
    pairs to compute of the videos read so far plus their mean for each video still to come."""

    def __init__(self, bar, total_pairs: int | None, total_videos: int | None):
        self.bar, self.given, self.total_videos = bar, total_pairs, total_videos
        self.videos = self.pairs = 0

    def read(self, pairs: int, cached: bool) -> None:
        """One more video read, with `pairs` frame pairs (not computed if `cached`)."""
        if self.given is not None:
            if cached:
                self.bar.total = max(self.bar.total - pairs, 0)
            return
        self.videos += 1
        self.pairs += 0 if cached else pairs
        if self.total_videos:
            left = max(self.total_videos - self.videos, 0)
            self.bar.total = self.pairs + round(self.pairs / self.videos * left)
            self.bar.refresh()

    def done(self) -> None:
        if self.given is None and self.total_videos:
            self.bar.total = self.pairs
            self.bar.refresh()


class _JaxBatcher:
    """Queues frame pairs per frame size and solves them in fixed-size dispatches of `batch`
    pairs per device over all `devices` (`flow.tvl1_sharded`), one dispatch in flight. The
    devices (None: `jax.local_devices()`) are looked up at the first dispatch, so a run that
    finds every video cached starts no JAX backend."""

    def __init__(self, settings: FlowSettings, finished, bar, devices=None):
        self.settings = settings
        self.devices = None if devices is None else list(devices)
        self.mesh = None
        self.batches: dict[tuple[int, int], int] = {}  # pairs per device batch, per frame size
        self.queues: dict[tuple[int, int], list[tuple[_Job, int]]] = {}
        self.inflight: collections.deque = collections.deque()
        self.finished = finished  # called with each job whose last pair is stored
        self.bar = bar

    def add(self, job: _Job) -> None:
        size = job.out.shape[1:3]
        queue = self.queues.setdefault(size, [])
        queue.extend((job, t) for t in range(job.remaining))
        dispatch = self._dispatch_pairs(size)
        while len(queue) >= dispatch:
            self._dispatch(queue[:dispatch], dispatch)
            del queue[:dispatch]

    def _dispatch_pairs(self, size: tuple[int, int]) -> int:
        """Pairs per dispatch of frames of `size`: the batch per device times the devices."""
        if self.mesh is None:
            import jax

            self.mesh = flow.pairs_mesh(
                jax.local_devices() if self.devices is None else self.devices
            )
        if size not in self.batches:
            given = self.settings.batch_pairs
            self.batches[size] = int(given) if given else default_batch_pairs(*size)
        return self.batches[size] * self.mesh.devices.size

    def holds_too_much(self, pending: Sequence[_Job]) -> bool:
        """Whether the videos waiting for their flow exceed the bound on held videos and pairs
        (`_MAX_PENDING_*` per device)."""
        n = 1 if self.mesh is None else self.mesh.devices.size
        held = sum(len(j.out) for j in pending if j.remaining)
        return len(pending) > _MAX_PENDING_VIDEOS * n or held > _MAX_PENDING_PAIRS * n

    def flush(self, size: tuple[int, int] | None = None) -> None:
        """Solves every queued pair (of one frame size, or all), padding the last dispatches."""
        for key in [size] if size is not None else list(self.queues):
            queue, dispatch = self.queues.pop(key, []), self._dispatch_pairs(key)
            for start in range(0, len(queue), dispatch):
                self._dispatch(queue[start : start + dispatch], dispatch)
        while self.inflight:
            self._collect()

    def _dispatch(self, items: list[tuple[_Job, int]], pairs: int) -> None:
        padded = items + [items[-1]] * (pairs - len(items))
        i0 = np.stack([job.gray[t] for job, t in padded])
        i1 = np.stack([job.gray[t + 1] for job, t in padded])
        result = flow.tvl1_sharded(i0, i1, self.settings.params, mesh=self.mesh)
        self.inflight.append((items, result))
        if len(self.inflight) > 1:
            self._collect()

    def _collect(self) -> None:
        items, result = self.inflight.popleft()
        q = preprocess.quantize_flow(np.asarray(result)[: len(items)], self.settings.bound)
        for (job, t), f in zip(items, q, strict=True):
            job.out[t] = f
            job.remaining -= 1
            if job.remaining == 0:
                job.gray = None
                self.finished(job)
        self.bar.update(len(items))


def _flow_now(frames: np.ndarray, settings: FlowSettings, flow_fn, bar) -> np.ndarray:
    """One video's quantised flow from `flow_fn` (tests) or OpenCV's solver, at once."""
    if flow_fn is not None:
        pixels = np.asarray(flow_fn(frames), np.float32)
        bar.update(len(frames) - 1)
    else:
        pixels = flow.compute_flow(
            frames, backend="opencv", params=settings.params, progress=bar.update
        )
    return preprocess.quantize_flow(pixels, settings.bound)


def flow_videos(
    videos: Iterable[np.ndarray],
    settings: FlowSettings,
    *,
    keys: Iterable[str] | None = None,
    cache_dir=None,
    progress: bool = True,
    desc: str = "flow",
    total_pairs: int | None = None,
    total_videos: int | None = None,
    flow_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    devices: Sequence | None = None,
) -> Iterator[np.ndarray]:
    """Each video's quantised flow, uint8 `[T-1, H, W, 2]`, in the order of `videos`.

    Args:
      videos: uint8 RGB `[T, H, W, 3]` arrays (T >= 2), read lazily (a few ahead).
      settings: solver, TV-L1 parameters, bound, batch size.
      keys: one stable name per video (needed with `cache_dir`), e.g. its path and mtime.
      cache_dir: where finished videos' flow is kept; a video found there (same key, same
        settings fingerprint, same shape) is not computed again.
      progress: a tqdm bar of frame pairs computed (its rate is pairs per second).
      desc, total_pairs: the bar's label and total (if known); else `total_videos`, the number
        of videos, gives the bar an estimated total (exact once the last video is read).
      flow_fn: a stand-in for the solver, uint8 frames -> float32 pixels `[T-1, H, W, 2]`
        (tests); its flow is quantised and cached as the solver's would be.
      devices: the JAX solver's devices (default `jax.local_devices()`, looked up when the
        first pair is solved): each dispatch holds `batch_pairs` pairs per device, one program
        over all of them (`flow.tvl1_sharded`). Speed only: a pair's flow does not depend on
        the devices nor on the pairs beside it (only on `batch_pairs`, see `FlowSettings`).
    """
    if cache_dir is not None and keys is None:
        raise ValueError("flow_videos: cache_dir needs keys (one stable name per video)")
    cache = _Cache(cache_dir, settings) if cache_dir is not None else None
    key_iter = iter(keys) if keys is not None else None
    with _progress_bar(progress, desc, total_pairs) as bar:
        counts = {"videos": 0, "cached": 0}
        total = _BarTotal(bar, total_pairs, total_videos)

        def finished(job: _Job) -> None:
            if cache is not None:
                cache.save(job.key, job.out)

        use_jax = settings.solver == "jax" and flow_fn is None
        batcher = _JaxBatcher(settings, finished, bar, devices) if use_jax else None
        pending: collections.deque[_Job] = collections.deque()

        def ready() -> Iterator[np.ndarray]:
            while pending and pending[0].remaining == 0:
                counts["videos"] += 1
                bar.set_postfix(counts, refresh=False)
                yield pending.popleft().out

        for index, frames in enumerate(videos):
            key = next(key_iter, None) if key_iter is not None else None
            if key_iter is not None and key is None:
                raise ValueError(f"flow_videos: fewer keys than videos (none for video #{index})")
            frames = _check_frames(frames, index, key)
            t, h, w = frames.shape[:3]
            job = _Job(key, np.empty((t - 1, h, w, 2), np.uint8))
            cached = cache.load(key, job.out.shape) if cache is not None else None
            total.read(t - 1, cached is not None)
            if cached is not None:
                job.out = cached
                counts["cached"] += 1
            elif batcher is None:
                job.out = _flow_now(frames, settings, flow_fn, bar)
                finished(job)
            else:
                job.gray, job.remaining = flow.to_gray(frames), t - 1
                batcher.add(job)
            pending.append(job)
            yield from ready()
            if batcher is not None and batcher.holds_too_much(pending):
                batcher.flush(pending[0].out.shape[1:3])
                yield from ready()
        if batcher is not None:
            batcher.flush()
        yield from ready()
        total.done()
