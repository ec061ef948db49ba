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

from configs import default


def get_config():
    c = default.get_config()
    c.dataset.name = "synthetic_motion"
    c.dataset.builder_config = "directions4"
    c.model.preset = "tiny"
    c.model.num_classes = 4
    c.model.dtype = "float32"
    c.model.dropout_rate = 0.0
    c.model.bn_momentum = 0.9
    c.input.clip_length = 12  # a random 12-frame window of the 16: cheaper steps, more variety
    c.input.crop_size = 32
    c.input.flip = False
    c.batch_size = 16
    c.num_train_steps = 400
    c.optimizer.name = "adam"
    c.optimizer.weight_decay = 0.0
    c.lr.schedule = "cosine"
    c.lr.base = 3e-3
    c.lr.warmup_steps = 20
    c.checkpoint.every_steps = 200
    c.log_every_steps = 20
    c.eval_every_steps = 0
    c.eval.batch_size = 40
    c.eval.max_frames = 16
    return c
