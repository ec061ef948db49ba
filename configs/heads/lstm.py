"""A bidirectional LSTM over the windows."""

from configs import temporal_head


def get_config():
    c = temporal_head.get_config()
    c.head.name = "lstm"
    c.head.bidirectional = True
    return c
