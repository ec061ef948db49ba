"""RGB stream of the two-stream task: `tiny` I3D on `synthetic_motion/camouflage` (8 classes = tint
x direction of a camouflaged disc; i3d_jax/data/synthetic_camouflage.py), the CPU demo's recipe
(configs/synthetic_motion.py: 400 Adam steps of 16 random 12-frame clips of 32x32, no flips).

    python train.py --config configs/two_stream/rgb.py --workdir runs/two_stream_rgb

`python -m i3d_jax.two_stream` trains it beside configs/two_stream/flow.py and fuses them.
"""

from configs import synthetic_motion


def get_config():
    c = synthetic_motion.get_config()
    c.dataset.builder_config = "camouflage"
    c.model.num_classes = 8
    return c
