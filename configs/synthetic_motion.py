"""The CPU demo: `tiny` I3D on `synthetic_motion/directions4` (4 motion directions, 16 frames of
32x32, 1000 training and 200 validation videos).

`python train.py --config configs/synthetic_motion.py --workdir runs/demo` builds the dataset with
TFDS if it is missing (seconds), trains 400 steps of 16 random 12-frame clips on CPU in float32,
evaluates the whole validation videos and prints a summary. Horizontal flips are off: they would
swap the `left` and `right` classes. BatchNorm running averages decay at 0.9 (the release's 0.999
needs thousands of steps before evaluation-mode statistics are usable).

All six classes (with the two rotations): `--config.dataset.builder_config=default
--config.model.num_classes=6 --config.num_train_steps=500 --config.input.clip_length=16`
(measured 0.975 video top-1 after 500 steps, 73 s with the dataset build on the 2-core CPU).
"""

from i3d_jax.training.defaults import cpu_demo


def get_config():
    c = cpu_demo()  # tiny I3D, 400 Adam steps of 16 random 12-frame clips of 32x32, float32
    c.dataset.name = "synthetic_motion"
    c.dataset.builder_config = "directions4"
    c.model.num_classes = 4
    return c
