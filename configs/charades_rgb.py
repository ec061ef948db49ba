"""Charades RGB: multi-label training with per-frame sigmoid outputs from the Kinetics-400 I3D.

    python -m i3d_jax.data.build video_folder --data_dir D --manual_dir VIDEOS \
        --charades_csv Charades_v1_train.csv --charades_csv Charades_v1_test.csv
    python train.py --config configs/charades_rgb.py --workdir W --config.dataset.data_dir=D
    python eval.py --config configs/charades_rgb.py --workdir W --config.dataset.data_dir=D

`config.task = "multilabel"` (`i3d_jax.training.tasks.multilabel`): per-frame logits upsampled
over time, loss 1/2 BCE per frame + 1/2 BCE of the max over time; `eval.py` writes `video_mAP`
(Charades_v1_classify), `frame_mAP` (25 frames per video, Charades_v1_localize) and
`per_class_ap`. Weights: the Kinetics-400 RGB I3D (`i3d-jax:kinetics400`) with a new 157-way head.

Optimisation as pytorch-i3d's `train_i3d.py` for Charades: SGD, lr 0.1, momentum 0.9, weight
decay 1e-7 (here on conv kernels only, as every config of this project), 40-clip batches with
the gradients of 4 accumulated per update (`batch_size=160`, `grad_accum_steps=4`), the rate x 0.1
after 300 and 1000 updates (its `MultiStepLR([300, 1000])`; a step schedule, not on a plateau),
64e3 updates at most (its `max_steps`), BatchNorm running averages decaying at 0.99 (its
`momentum=0.01`), dropout 0.5. 64-frame training clips from a random start (short videos loop),
random 224 crops and flips; the test videos whole (up to `eval.max_frames` = 768 frames, 30.7 s at
25 fps; longer ones are scored on their central 768 frames and counted).
"""

from configs import default


def get_config():
    c = default.get_config()
    c.task = "multilabel"
    c.dataset.name = "video_folder"
    c.dataset.builder_config = "rgb"
    c.dataset.eval_split = "test"  # Charades_v1_test.csv
    c.model.preset = "release"
    c.model.num_classes = 157
    c.model.bn_momentum = 0.99
    c.init.method = "pretrained"
    c.init.source = "i3d-jax:kinetics400"
    c.init.new_head = True
    c.multilabel.frame_weight = 0.5
    c.multilabel.max_weight = 0.5
    c.optimizer.name = "sgd"
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 1e-7
    c.batch_size = 160
    c.grad_accum_steps = 4
    c.num_train_steps = 64_000
    c.lr.schedule = "step"
    c.lr.base = 0.1
    c.lr.boundaries = (300, 1000)
    c.lr.decay_factor = 0.1
    c.checkpoint.every_steps = 500
    c.eval_every_steps = 2000
    c.eval.batch_size = 8
    c.eval.max_frames = 768
    return c
