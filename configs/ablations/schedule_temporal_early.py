"""Pooling-schedule ablation: `temporal_early` (see `python -m i3d_jax.schedules --schedule temporal_early`)."""

from configs import kinetics400_rgb


def get_config():
    c = kinetics400_rgb.get_config()
    c.model.schedule = "temporal_early"
    return c
