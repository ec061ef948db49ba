"""The multi-label CPU demo: `tiny` I3D on `synthetic_motion/multilabel` (4 classes = directions of
travel of discs that appear and disappear at random times and overlap; 64 frames of 32x32, 800
training and 200 validation videos; `i3d_jax.data.synthetic_multilabel`).

    python train.py --config configs/synthetic_multilabel.py --workdir runs/multilabel

builds the dataset with TFDS if missing, trains the multi-label task (per-frame sigmoid outputs,
1/2 BCE per frame + 1/2 BCE of the max over time) on random 32-frame clips, and evaluates the
whole validation videos: `video_mAP`, `frame_mAP` (25 frames per video). The softmax baseline on
the same data (each video's earliest action as its one label) and its scores under the same
protocol:

    python train.py --config configs/synthetic_multilabel.py --workdir runs/softmax \
        --config.task=video
    python eval.py --config configs/synthetic_multilabel.py --workdir runs/softmax \
        --out runs/softmax/eval/multilabel_results.json
"""

from i3d_jax.training.defaults import cpu_demo


def get_config():
    c = cpu_demo()  # tiny I3D, Adam with a cosine schedule, float32, no flips (left/right classes)
    c.task = "multilabel"
    c.dataset.name = "synthetic_motion"
    c.dataset.builder_config = "multilabel"
    c.model.num_classes = 4
    c.input.clip_length = 32  # 3 time steps of per-frame logits (the network's stride is 8)
    c.num_train_steps = 600
    c.checkpoint.every_steps = 300
    c.log_every_steps = 50
    c.eval.batch_size = 40
    c.eval.max_frames = 64  # the whole video
    return c
