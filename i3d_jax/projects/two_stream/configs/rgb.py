"""RGB stream of the two-stream task: `tiny` I3D on `synthetic_motion/camouflage` (8 classes = tint
x direction of a camouflaged disc; i3d_jax/data/synthetic_camouflage.py), the CPU demo's recipe
(`i3d_jax.training.defaults.cpu_demo`: 400 Adam steps of 16 random 12-frame clips of 32x32, no flips).

    python train.py --config configs/two_stream/rgb.py --workdir runs/two_stream_rgb

`python -m i3d_jax.two_stream` trains it beside `flow.py` and fuses them. (configs/two_stream/
holds the same two files for a repository checkout.)
"""

from i3d_jax.training.defaults import cpu_demo


def get_config():
    c = cpu_demo()
    c.dataset.name = "synthetic_motion"
    c.dataset.builder_config = "camouflage"
    c.model.num_classes = 8
    return c
