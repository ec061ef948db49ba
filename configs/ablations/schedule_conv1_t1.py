"""Pooling-schedule ablation: `conv1_t1` (see `python -m i3d_jax.schedules --schedule conv1_t1`)."""

from configs import kinetics400_rgb


def get_config():
    c = kinetics400_rgb.get_config()
    c.model.schedule = "conv1_t1"
    return c
