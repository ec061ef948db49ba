"""Kinetics-400 optical flow (TV-L1, 2 channels), the release recipe: as RGB but 155k steps.

Flips negate the x channel. The lr drops are placed at the same fractions of training as RGB's.
The dataset is the `video_folder` builder's `flow` config (TV-L1 at 25 fps, short side 256, clipped
to +-20 px and quantised; `python -m i3d_jax.data.build video_folder --config flow ...`) under
`dataset.data_dir`. `init.method="cross_modality"` with `init.source=<an RGB I3D>` starts from an
RGB network (TSN's cross-modality initialisation); "scratch" is the paper's from-scratch row.
"""

from configs import kinetics400_rgb


def get_config():
    c = kinetics400_rgb.get_config()
    c.modality = "flow"
    c.dataset.builder_config = "flow"  # video_folder's flow config ("kinetics400_flow" is none)
    c.num_train_steps = 155_000
    c.lr.boundaries = (130_000, 145_000)
    return c
