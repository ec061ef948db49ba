"""Kinetics-400 RGB, the release recipe.

SGD momentum 0.9, global batch 384 (64 replicas x 6 clips, BatchNorm per replica), weight decay 1e-7,
dropout 0.5, lr 0.1 -> 0.01 at 97k -> 0.001 at 108k of 115k steps, 64-frame 224x224 clips.
Set `init.method="inflate"` with `init.source=<2D Inception-v1 .npz>` for the ImageNet-initialised
variant (the paper's 71.1 top-1), leave "scratch" for 68.4. The dataset is a `video_folder` build
of Kinetics-400 at 25 fps, smaller side 256.
"""

from configs import default


def get_config():
    c = default.get_config()
    c.dataset.name = "video_folder"
    c.dataset.builder_config = "rgb"  # video_folder's RGB config
    c.model.preset = "release"
    c.model.num_classes = 400
    c.batch_size = 384
    c.bn.group_size = 6
    c.num_train_steps = 115_000
    c.lr.base = 0.1
    c.lr.boundaries = (97_000, 108_000)
    c.checkpoint.every_steps = 2000
    c.eval_every_steps = 5000
    c.eval.max_frames = 250
    return c
