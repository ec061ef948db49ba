"""What every weight format shares: the unit list, name mapping, option inference, checked merge.

A format module turns a foreign `{name: array}` dict into a `Mapped` (our flat paths such as
`params/Mixed_3b/Branch_1/Conv3d_0b_3x3/conv_3d/kernel`, each with the source name it came from),
using two tables: foreign unit name -> our unit path, and foreign leaf name -> (collection, our
leaf, layout transform). `build` then infers the model options the tensors imply, builds the
model, and `merge` checks the tensors against `jax.eval_shape(model.init, ...)`: every source
tensor used (or dropped by an explicit rule), every target variable filled, every shape right.
Values may be numpy arrays or `Abstract` shapes (to check a name mapping from an index alone).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from i3d_jax import schedules
from i3d_jax.model import BRANCH_UNITS, InceptionI3d, _channel_items
from i3d_jax.schedules import RELEASE_CHANNELS

CONV_UNITS = ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3")
MIXED_BLOCKS = tuple(k for k in RELEASE_CHANNELS if k.startswith("Mixed_"))
LOGITS_UNIT = "Logits/Conv3d_0c_1x1"


def block_units(block: str) -> list[str]:
    """Our unit paths of one Inception block, in channel-table order."""
    return [f"{block}/{branch}/{name}" for branch, units in BRANCH_UNITS for name, _, _ in units]


def unit_paths() -> list[str]:
    """Every unit of the network, in order: conv units, the 6 units of each block, logits."""
    out = list(CONV_UNITS)
    for block in MIXED_BLOCKS:
        out += block_units(block)
    return [*out, LOGITS_UNIT]


@dataclasses.dataclass(frozen=True)
class Abstract:
    """A shape/dtype stand-in for a tensor (supports the layout transforms, holds no values)."""

    shape: tuple[int, ...]
    dtype: Any = np.float32

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def transpose(self, axes: Iterable[int]) -> Abstract:
        return Abstract(tuple(self.shape[a] for a in axes), self.dtype)

    def reshape(self, shape: Iterable[int]) -> Abstract:
        return Abstract(tuple(shape), self.dtype)


# Layout transforms from a foreign tensor to ours (they work on arrays and on `Abstract`).
def identity(x):
    return x


def to_vector(x):
    """(1, ..., 1, C) or (C,) -> (C,): BatchNorm statistics and offsets stored with broadcast dims."""
    if x.ndim > 1 and all(d == 1 for d in x.shape[:-1]):
        return x.reshape((x.shape[-1],))
    return x


def torch_conv(x):
    """PyTorch conv weight [out, in, *spatial] -> ours [*spatial, in, out]."""
    return x.transpose((*range(2, x.ndim), 1, 0))


def from_torch_conv(x):
    """Ours [*spatial, in, out] -> PyTorch [out, in, *spatial]."""
    n = x.ndim
    return x.transpose((n - 1, n - 2, *range(n - 2)))


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One foreign leaf of a unit: where it goes (collection and our leaf name) and how."""

    collection: str
    name: str
    transform: Callable = identity


@dataclasses.dataclass
class Mapped:
    """Source tensors renamed to our flat paths, plus what no rule matched and what was dropped."""

    origin: str
    tensors: dict[str, tuple[str, Any]] = dataclasses.field(default_factory=dict)
    unexpected: list[str] = dataclasses.field(default_factory=list)
    dropped: list[str] = dataclasses.field(default_factory=list)
    mismatched: list[str] = dataclasses.field(default_factory=list)

    def add(self, path: str, source_name: str, value: Any) -> None:
        if path in self.tensors:
            raise ValueError(
                f"{self.origin}: {source_name!r} and {self.tensors[path][0]!r} both map to {path}"
            )
        self.tensors[path] = (source_name, value)


def map_tensors(
    source: Mapping[str, Any],
    origin: str,
    units: Mapping[str, str],
    leaves: Mapping[str, Leaf],
    sep: str,
    drop: Iterable[str] = (),
) -> Mapped:
    """Renames `source` by splitting each name into a foreign unit and a leaf.

    Args:
      source: {foreign name: array or Abstract}.
      units: {foreign unit name: our unit path}.
      leaves: {foreign leaf name (may contain `sep`): Leaf}.
      sep: the separator between unit and leaf in foreign names ("." for PyTorch, "/" for TF).
      drop: regexes (full match) of foreign names dropped on purpose (optimizer slots, counters).
    """
    drop_res = [re.compile(p) for p in drop]
    out = Mapped(origin)
    for name, value in source.items():
        if any(r.fullmatch(name) for r in drop_res):
            out.dropped.append(name)
            continue
        target = None
        for leaf_name, leaf in leaves.items():
            suffix = sep + leaf_name
            if name.endswith(suffix) and name[: -len(suffix)] in units:
                unit = units[name[: -len(suffix)]]
                target = (f"{leaf.collection}/{unit}/{leaf.name}", leaf.transform)
                break
        if target is None:
            out.unexpected.append(name)
            continue
        try:
            converted = target[1](value)
        except ValueError as e:  # a layout transform that cannot apply (wrong rank)
            out.mismatched.append(f"{name} (as {target[0]}): shape {tuple(value.shape)} ({e})")
            continue
        out.add(target[0], name, converted)
    return out


def _is_ones(value: Any) -> bool:
    return not isinstance(value, Abstract) and bool(np.all(np.asarray(value) == 1))


def infer_options(tensors: Mapping[str, tuple[str, Any]], ndim: int = 3) -> dict[str, Any]:
    """Model options implied by the tensors: num_classes, input_channels, channels, bn_scale."""
    shapes = {path: tuple(v.shape) for path, (_, v) in tensors.items()}
    options: dict[str, Any] = {}
    first = shapes.get("params/Conv3d_1a_7x7/conv_3d/kernel")
    if first is not None and len(first) == ndim + 2:
        options["input_channels"] = first[-2]
    logits = shapes.get(f"params/{LOGITS_UNIT}/conv_3d/kernel")
    if logits is not None:
        options["num_classes"] = logits[-1]
    table: dict[str, Any] = {}
    for unit in CONV_UNITS:
        kernel = shapes.get(f"params/{unit}/conv_3d/kernel")
        if kernel is not None:
            table[unit] = kernel[-1]
    for block in MIXED_BLOCKS:
        kernels = [shapes.get(f"params/{u}/conv_3d/kernel") for u in block_units(block)]
        if all(k is not None for k in kernels):
            table[block] = tuple(k[-1] for k in kernels)
    if set(table) == set(RELEASE_CHANNELS):
        options["channels"] = _channel_items(table)
    options["bn_scale"] = any(p.endswith("/batch_norm/scale") for p in shapes)
    return options


def abstract_variables(model: InceptionI3d) -> dict:
    """`{'params', 'batch_stats'}` of `model` as `jax.ShapeDtypeStruct`s (through Logits)."""
    model = model.clone(final_endpoint="Logits")
    sched = schedules.get_schedule(model.schedule)
    side = schedules.min_spatial(sched, model.global_pool)
    if model.ndim == 3:
        shape = (1, schedules.min_frames(sched), side, side, model.input_channels)
    else:
        shape = (1, side, side, model.input_channels)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)


def _fmt(items: list[str], limit: int = 400) -> str:
    return "\n    ".join(items[:limit]) + (
        f"\n    ... {len(items) - limit} more" if len(items) > limit else ""
    )


def merge(mapped: Mapped, target: Mapping) -> dict:
    """Fills `target` (a variables tree of shapes, e.g. `abstract_variables(model)`) from `mapped`.

    Returns `{'params': ..., 'batch_stats': ...}` of numpy arrays in the target dtypes (or of
    `Abstract` where the source was abstract). Raises ValueError listing, by name, every target
    variable left unfilled, every source tensor unused, and every shape mismatch.
    """
    flat = traverse_util.flatten_dict(dict(target), sep="/")
    missing = [p for p in flat if p not in mapped.tensors]
    unexpected = list(mapped.unexpected)
    mismatched, out = list(mapped.mismatched), {}
    missing = [p for p in missing if not any(f"(as {p})" in m for m in mismatched)]
    for path, (src, value) in mapped.tensors.items():
        label = src if src == path else f"{src} (as {path})"
        if path not in flat:
            unexpected.append(label)
            continue
        want = tuple(flat[path].shape)
        if tuple(value.shape) != want:
            mismatched.append(f"{label}: got {tuple(value.shape)}, expected {want}")
            continue
        dtype = np.dtype(flat[path].dtype)
        out[path] = (
            Abstract(want, dtype) if isinstance(value, Abstract) else np.asarray(value, dtype)
        )
    if missing or unexpected or mismatched:
        parts = [f"{mapped.origin}: the weights do not match the model"]
        if missing:
            parts.append(
                f"  missing ({len(missing)}; model variables not in the file):\n    {_fmt(missing)}"
            )
        if unexpected:
            parts.append(
                f"  unexpected ({len(unexpected)}; file tensors with no model variable):\n    {_fmt(unexpected)}"
            )
        if mismatched:
            parts.append(f"  shape mismatches ({len(mismatched)}):\n    {_fmt(mismatched)}")
        raise ValueError("\n".join(parts))
    return traverse_util.unflatten_dict(out, sep="/")


def from_variables(variables: Mapping, origin: str, keep: Iterable[str] = ()) -> Mapped:
    """A variables tree already named like ours (`{'params': ..., 'batch_stats': ...}`) as a
    `Mapped`; paths starting with a `keep` prefix (e.g. "params/Logits") are dropped on purpose."""
    out = Mapped(origin)
    for path, value in traverse_util.flatten_dict(dict(variables), sep="/").items():
        if any(path.startswith(prefix) for prefix in keep):
            out.dropped.append(path)
        else:
            out.add(path, path, value)
    return out


def merge_onto(init: Mapping, loaded: Mapping, origin: str, keep: Iterable[str] = ()) -> dict:
    """`loaded` onto the values of `init` through `merge` (every name and shape checked), except
    paths under a `keep` prefix, which keep their `init` values (a new classifier head)."""
    keep = tuple(keep)
    flat = traverse_util.flatten_dict(dict(init), sep="/")
    kept = {k: v for k, v in flat.items() if any(k.startswith(p) for p in keep)}
    target = traverse_util.unflatten_dict({k: v for k, v in flat.items() if k not in kept}, sep="/")
    merged = traverse_util.flatten_dict(
        merge(from_variables(loaded, origin, keep), target), sep="/"
    )
    return traverse_util.unflatten_dict({**merged, **kept}, sep="/")


def build(mapped: Mapped, ndim: int = 3, **overrides) -> tuple[InceptionI3d, dict]:
    """Infers the options, builds `InceptionI3d(**inferred, **overrides)` and merges the tensors.

    BatchNorm scales that are all exactly one (a PyTorch BN with default affine weight) mean
    `bn_scale=False` and are dropped; `bn_scale=False` given while a scale differs from one is an
    error (it would silently change the outputs).
    """
    options = infer_options(mapped.tensors, ndim)
    scales = [p for p in mapped.tensors if p.endswith("/batch_norm/scale")]
    if scales:
        all_ones = all(_is_ones(mapped.tensors[p][1]) for p in scales)
        want_scale = overrides.get("bn_scale", not all_ones)
        if not want_scale:
            if not all_ones:
                bad = next(
                    mapped.tensors[p][0] for p in scales if not _is_ones(mapped.tensors[p][1])
                )
                raise ValueError(
                    f"{mapped.origin}: bn_scale=False but BatchNorm scale {bad!r} is not all ones"
                )
            for p in scales:
                mapped.dropped.append(mapped.tensors.pop(p)[0])
        options["bn_scale"] = want_scale
    if ndim != 3:
        options["ndim"] = ndim
    model = InceptionI3d(**{**options, **overrides})
    return model, merge(mapped, abstract_variables(model))


# Model fields of earlier versions that are now part of `graph` (how, not what, is computed).
LEGACY_GRAPH_FIELDS = ("time_to_channels", "conv1_space_to_depth", "remat", "fold_bn", "fuse_1x1")


def model_options(model: InceptionI3d) -> dict[str, Any]:
    """The constructor fields of a model as JSON-able values (for a model card).

    `graph` (how the network is computed, not what) is left out: a loaded model takes the
    fastest graph of the machine it runs on.
    """
    out = {}
    for f in dataclasses.fields(model):
        if f.name in ("parent", "name", "graph"):
            continue
        v = getattr(model, f.name)
        if isinstance(v, schedules.PoolingSchedule):
            v = v.name if schedules.SCHEDULES.get(v.name) == v else dataclasses.asdict(v)
        elif f.name == "channels":
            v = {k: list(c) if isinstance(c, tuple) else c for k, c in v}
        elif f.name in ("dtype", "param_dtype"):
            v = np.dtype(v).name
        out[f.name] = v
    return out


def model_from_options(options: Mapping[str, Any], **overrides) -> InceptionI3d:
    """Inverse of `model_options` (cards written before `graph` existed included)."""
    opts = {k: v for k, v in options.items() if k not in LEGACY_GRAPH_FIELDS}
    if "channels" in opts:
        opts["channels"] = _channel_items(
            {k: tuple(c) if isinstance(c, list) else c for k, c in opts["channels"].items()}
        )
    if isinstance(opts.get("schedule"), dict):
        s = dict(opts["schedule"])
        for key in ("pool_2a", "pool_3a", "pool_4a", "pool_5a"):
            s[key] = schedules.Pool(tuple(s[key]["window"]), tuple(s[key]["stride"]))
        for key in ("conv1_stride", "logits_pool"):
            s[key] = tuple(s[key])
        opts["schedule"] = schedules.PoolingSchedule(**s)
    for key in ("dtype", "param_dtype"):
        if key in opts:
            opts[key] = getattr(jnp, opts[key])
    return InceptionI3d(**{**opts, **overrides})


def random_variables(model: InceptionI3d, seed: int = 0) -> dict:
    """Variables of `model` with random values (He-normal kernels, BN stats/affine near identity).

    Cheap (no `model.init`): for tests and for checking a format end to end.
    """
    rng = np.random.default_rng(seed)

    def fill(path, spec):
        name = path[-1].key
        shape = tuple(spec.shape)
        if name == "kernel":
            fan_in = int(np.prod(shape[:-1]))
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        elif name in ("var", "scale"):
            value = rng.uniform(0.5, 1.5, shape)
        else:  # bias, mean
            value = rng.normal(0.0, 0.1, shape)
        return value.astype(spec.dtype)

    return jax.tree_util.tree_map_with_path(fill, abstract_variables(model))
