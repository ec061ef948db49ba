"""The paper's protocol as a head: a linear classifier per window, logits averaged over time."""

from configs import temporal_head


def get_config():
    c = temporal_head.get_config()
    c.head.name = "mean"
    c.head.dropout_rate = 0.0
    return c
