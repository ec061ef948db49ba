"""I3D (Inflated 3D ConvNet) in JAX/Flax.

The package in layers (docs/architecture.md; `tests/test_import_cycles.py` enforces that imports
only run downward):

  the network    model, conv, pooling, graph, schedules, inflate, inception2d, heads, deploy
  the contract   preprocess (decode, fps, resize, crop, scale), clips (geometry), sharding,
                 plots, cli (the tools' flag and error conventions), labels, samples
  weights/       every foreign format in and out: load_pretrained, convert, export (safetensors,
                 StableHLO, SavedModel, ONNX)
  nnx/           the network as a Flax NNX module (from_linen, load_pretrained, to_linen)
  flow/          TV-L1 optical flow (`python -m i3d_jax.flow` computes a video's)
  data/          TFDS builders, Grain pipelines, synthetic tasks, feature-file datasets
  training/      config -> state -> steps -> checkpoints -> loop, evaluate; tasks/ plug in
  tools          extract_features/, predict/, fvd/: one package per command
  projects/      studies built on the layers: ablate/, two_stream/

The names below are imported on first use (PEP 562), so `python -m i3d_jax.<module>` runs that
module once, as `__main__`, without the package having imported it already.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# `inflate` is both a submodule and a function: bind the function now (the module imports
# nothing of ours), or a later `import i3d_jax.inflate` would leave the module under the name.
from i3d_jax.inflate import inflate as inflate

_EXPORTS = {
    "ENDPOINTS": "i3d_jax.schedules",
    "SCHEDULES": "i3d_jax.schedules",
    "PoolingSchedule": "i3d_jax.schedules",
    "get_schedule": "i3d_jax.schedules",
    "PRESETS": "i3d_jax.model",
    "InceptionI3d": "i3d_jax.model",
    "small": "i3d_jax.model",
    "tiny": "i3d_jax.model",
    "load_pretrained": "i3d_jax.weights",
}

# Commands whose code lives deeper in the package: `python -m i3d_jax.convert` and
# `import i3d_jax.convert` stay valid names for good.
COMMANDS = {
    "i3d_jax.convert": "i3d_jax.weights.convert",
    "i3d_jax.export": "i3d_jax.weights.export",
    "i3d_jax.ablate": "i3d_jax.projects.ablate",
    "i3d_jax.two_stream": "i3d_jax.projects.two_stream",
}
# Module paths of the flat layout (before 0.2), kept for one release with a DeprecationWarning.
MOVED = {
    "i3d_jax.ablate_grid": "i3d_jax.projects.ablate.grid",
    "i3d_jax.ablate_report": "i3d_jax.projects.ablate.report",
    "i3d_jax.feature_dataset": "i3d_jax.data.feature_dataset",
    "i3d_jax.feature_presets": "i3d_jax.extract_features.presets",
    "i3d_jax.flow_cli": "i3d_jax.flow.cli",
    "i3d_jax.fvd_cli": "i3d_jax.fvd.cli",
    "i3d_jax.fvd_clips": "i3d_jax.fvd.clips",
    "i3d_jax.predict_head": "i3d_jax.predict.head",
    "i3d_jax.training.features": "i3d_jax.training.tasks.features",
    "i3d_jax.training.video": "i3d_jax.training.tasks.video",
}

__all__ = sorted([*_EXPORTS, "inflate"])


class _Alias(importlib.abc.Loader):
    """Loads an old or command name as the module it names (the same module object)."""

    def __init__(self, target: str, deprecated: bool):
        self.target, self.deprecated = target, deprecated

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        if self.deprecated:
            warnings.warn(
                f"{module.__name__} moved to {self.target}; the old path goes in the next release",
                DeprecationWarning,
                stacklevel=2,
            )
        sys.modules[module.__name__] = importlib.import_module(self.target)

    def get_code(self, name):  # `python -m <old name>` runs the target's code as __main__
        spec = importlib.util.find_spec(self.target)
        return spec.loader.get_code(self.target)


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        new = COMMANDS.get(name) or MOVED.get(name)
        if new is None:
            return None
        real = importlib.util.find_spec(new)
        spec = importlib.util.spec_from_loader(
            name, _Alias(new, name in MOVED), origin=real.origin,
            is_package=real.submodule_search_locations is not None,
        )  # fmt: skip
        if real.submodule_search_locations is not None:
            spec.submodule_search_locations = list(real.submodule_search_locations)
        return spec


if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _AliasFinder())


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'i3d_jax' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
