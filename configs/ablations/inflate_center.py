"""Inflation ablation: ImageNet 2D Inception-v1 inflated with `center` (set init.source to the .npz)."""

from configs import kinetics400_rgb


def get_config():
    c = kinetics400_rgb.get_config()
    c.init.method = "inflate"
    c.init.inflate_method = "center"
    c.init.source = "inception_v1_imagenet.npz"
    return c
