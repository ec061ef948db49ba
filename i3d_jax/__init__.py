"""I3D (Inflated 3D ConvNet) in JAX/Flax.

The names below are imported on first use (PEP 562), so `python -m i3d_jax.<module>` runs that
module once, as `__main__`, without the package having imported it already.
"""

import importlib

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

__all__ = sorted([*_EXPORTS, "inflate"])


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'i3d_jax' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
