"""Inflation ablation: ImageNet 2D Inception-v1 inflated with `mean` (set init.source to the .npz)."""

from configs import kinetics400_rgb


def get_config():
    c = kinetics400_rgb.get_config()
    c.init.method = "inflate"
    c.init.inflate_method = "mean"
    c.init.source = "inception_v1_imagenet.npz"
    return c
