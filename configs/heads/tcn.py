"""Dilated temporal convolutions (MS-TCN single stage): 6 layers, receptive field 127 windows."""

from configs import temporal_head


def get_config():
    c = temporal_head.get_config()
    c.head.name = "tcn"
    c.head.num_layers = 6
    return c
