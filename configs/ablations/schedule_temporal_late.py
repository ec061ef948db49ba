"""Pooling-schedule ablation: `temporal_late` (see `python -m i3d_jax.schedules --schedule temporal_late`)."""

from configs import kinetics400_rgb


def get_config():
    c = kinetics400_rgb.get_config()
    c.model.schedule = "temporal_late"
    return c
