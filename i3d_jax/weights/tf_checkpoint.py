"""DeepMind's kinetics-i3d TF (Sonnet v1) checkpoints: `rgb_imagenet`, `flow_imagenet`, ...

Names: `RGB/inception_i3d/<unit>/conv_3d/w` `[T, H, W, in, out]` (our layout),
`.../batch_norm/{beta, moving_mean, moving_variance}`, head `Logits/Conv3d_0c_1x1/conv_3d/{w, b}`.
The scope prefix (`RGB/inception_i3d/`, `Flow/inception_i3d/`, `inception_i3d/` or none, as in the
Kinetics-600 scratch checkpoint) is stripped. The release's one naming quirk is mapped:
`Mixed_5b/Branch_2/Conv3d_0a_3x3` is our `Mixed_5b/Branch_2/Conv3d_0b_3x3`. BatchNorm tensors are
stored as `(C,)` in the ImageNet-initialised checkpoints and as `(1, 1, 1, 1, C)` in the
Kinetics-600 one; both become `(C,)`. Sonnet's BN has no scale (`bn_scale=False`), epsilon 1e-3.

Dropped on purpose: optimizer slots (`.../Momentum`, Adam's `.../Adam`, `.../Adam_1`,
`beta1_power`, `beta2_power`), moving-average shadows (`.../ExponentialMovingAverage`) and
`global_step`.

Values are read with TensorFlow's `tf.train.load_checkpoint` when TensorFlow is installed, else by
the pure-Python reader `tf_index.read_tensors`.
"""

from __future__ import annotations

import os
import re

from i3d_jax.weights import common, tf_index

SCOPE = re.compile(r"^(?:(?:RGB|Flow)/)?(?:inception_i3d/)?")
QUIRKS = {"Mixed_5b/Branch_2/Conv3d_0a_3x3": "Mixed_5b/Branch_2/Conv3d_0b_3x3"}


def _units() -> dict[str, str]:
    units = {u: u for u in common.unit_paths()}
    for theirs, ours in QUIRKS.items():
        del units[ours]
        units[theirs] = ours
    return units


UNITS = _units()  # release unit name (without scope) -> our unit path
LEAVES = {
    "conv_3d/w": common.Leaf("params", "conv_3d/kernel"),
    "conv_3d/b": common.Leaf("params", "conv_3d/bias", common.to_vector),
    "batch_norm/beta": common.Leaf("params", "batch_norm/bias", common.to_vector),
    "batch_norm/gamma": common.Leaf("params", "batch_norm/scale", common.to_vector),
    "batch_norm/moving_mean": common.Leaf("batch_stats", "batch_norm/mean", common.to_vector),
    "batch_norm/moving_variance": common.Leaf("batch_stats", "batch_norm/var", common.to_vector),
}
DROP = (
    r".*/(?:Momentum|Adam|Adam_1|ExponentialMovingAverage)",
    r"(?:.*/)?(?:global_step|beta1_power|beta2_power)",
)


def from_named(tensors: dict, origin: str) -> common.Mapped:
    """Renames `{checkpoint name: array or Abstract}` to our paths (scope stripped, quirk mapped)."""
    drop_res = [re.compile(p) for p in DROP]
    kept, dropped = {}, []
    for name, value in tensors.items():
        if any(r.fullmatch(name) for r in drop_res):
            dropped.append(name)
            continue
        kept[SCOPE.sub("", name, count=1)] = (name, value)
    stripped = common.map_tensors({k: v for k, (_, v) in kept.items()}, origin, UNITS, LEAVES, "/")
    # Report the original (scoped) names.
    out = common.Mapped(origin, dropped=dropped)
    for path, (short, value) in stripped.tensors.items():
        out.add(path, kept[short][0], value)
    out.unexpected = [kept[s][0] for s in stripped.unexpected]
    return out


def from_index(prefix: str | os.PathLike) -> common.Mapped:
    """The name mapping of a checkpoint from its `.index` alone (values are `Abstract` shapes)."""
    entries = tf_index.read_index(prefix)
    tensors = {n: common.Abstract(e.shape, e.dtype or "unknown") for n, e in entries.items()}
    return from_named(tensors, os.fspath(prefix))


def checkpoint_prefix(path: str | os.PathLike) -> str:
    """A checkpoint prefix from a prefix, a `.index`/`.data-*` file, or a directory."""
    path = os.fspath(path)
    if os.path.isdir(path):
        state = os.path.join(path, "checkpoint")
        if os.path.exists(state):
            with open(state) as f:
                m = re.search(r'^model_checkpoint_path:\s*"(.*)"', f.read(), re.M)
            if m:
                name = os.path.basename(m.group(1))
                if os.path.exists(os.path.join(path, name + ".index")):
                    return os.path.join(path, name)
        found = sorted(f for f in os.listdir(path) if f.endswith(".index"))
        if len(found) != 1:
            raise FileNotFoundError(
                f"{path}: expected one TF checkpoint (*.index) in the directory, found {found}"
            )
        return os.path.join(path, found[0][: -len(".index")])
    if path.endswith(".index"):
        return path[: -len(".index")]
    m = re.match(r"(.*)\.data-\d{5}-of-\d{5}$", path)
    return m.group(1) if m else path


def load(path: str | os.PathLike) -> common.Mapped:
    """Reads a TF checkpoint (prefix, `.index` file or directory) and renames it to our paths."""
    prefix = checkpoint_prefix(path)
    drop_res = [re.compile(p) for p in DROP]
    everything = list(tf_index.read_index(prefix))
    # Read only what is kept (skips optimizer slots, which double the size).
    names = [n for n in everything if not any(r.fullmatch(n) for r in drop_res)]
    try:
        import tensorflow as tf

        reader = tf.train.load_checkpoint(prefix)
        tensors = {n: reader.get_tensor(n) for n in names}
    except ImportError:
        tensors = tf_index.read_tensors(prefix, names)
    mapped = from_named(tensors, prefix)
    mapped.dropped += [n for n in everything if n not in tensors]
    return mapped
