"""Pooling-schedule ablation: `no_temporal_pool` (see `python -m i3d_jax.schedules --schedule no_temporal_pool`)."""

from configs import kinetics400_rgb


def get_config():
    c = kinetics400_rgb.get_config()
    c.model.schedule = "no_temporal_pool"
    return c
