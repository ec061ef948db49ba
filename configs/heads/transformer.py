"""A 2-layer transformer encoder, positions from the windows' times in seconds."""

from configs import temporal_head


def get_config():
    c = temporal_head.get_config()
    c.head.name = "transformer"
    return c
