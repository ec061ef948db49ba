"""Pooling-schedule ablation: `paper` (see `python -m i3d_jax.schedules --schedule paper`)."""

from configs import kinetics400_rgb


def get_config():
    c = kinetics400_rgb.get_config()
    c.model.schedule = "paper"
    return c
