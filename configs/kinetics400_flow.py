"""Kinetics-400 optical flow (TV-L1, 2 channels), the release recipe: as RGB but 155k steps.

Flips negate the x channel. The lr drops are placed at the same fractions of training as RGB's.
"""

from configs import kinetics400_rgb


def get_config():
    c = kinetics400_rgb.get_config()
    c.modality = "flow"
    c.dataset.builder_config = "kinetics400_flow"
    c.num_train_steps = 155_000
    c.lr.boundaries = (130_000, 145_000)
    return c
