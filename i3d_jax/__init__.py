"""I3D (Inflated 3D ConvNet) in JAX/Flax."""

from i3d_jax.inflate import inflate
from i3d_jax.model import PRESETS, InceptionI3d, small, tiny
from i3d_jax.schedules import ENDPOINTS, SCHEDULES, PoolingSchedule, get_schedule

__all__ = [
    "ENDPOINTS",
    "PRESETS",
    "SCHEDULES",
    "InceptionI3d",
    "PoolingSchedule",
    "get_schedule",
    "inflate",
    "load_pretrained",
    "small",
    "tiny",
]


def __getattr__(name):
    # Weight loading pulls in optional formats; import it on first use.
    if name == "load_pretrained":
        from i3d_jax.weights import load_pretrained

        return load_pretrained
    raise AttributeError(name)
