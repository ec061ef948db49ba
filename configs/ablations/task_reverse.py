"""Schedule-ablation task `synthetic_motion/reverse` (one way vs reversed while hidden for 8 frames,
2 classes; see i3d_jax/data/synthetic_motion.py), `tiny` I3D on whole 36-frame clips of 32x32.

    python -m i3d_jax.ablate run --config configs/ablations/task_reverse.py --seeds 3 \\
        --axis model.schedule=paper,temporal_early,temporal_late,conv1_t1,no_temporal_pool \\
        --workdir runs/ablate_reverse
"""

from configs import synthetic_motion


def get_config():
    c = synthetic_motion.get_config()
    c.dataset.builder_config = "reverse"
    c.model.num_classes = 2
    c.input.clip_length = 36  # the whole video: temporal_early needs at least 33 frames
    c.eval.max_frames = 36
    c.num_train_steps = 600  # 300 left `paper` at chance (50.0%); 600 reached 75.0% (one seed)
    c.checkpoint.every_steps = 200
    return c
