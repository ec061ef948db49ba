"""Every field of a training/eval run, with the paper's defaults where it has one, and the CPU
demo's recipe. `configs/default.py` is this `get_config`; config files build on it.

Variants import it and override a few fields; `--config.a.b=value` overrides on the command
line. The dict is locked: an unknown field name fails at parse time, and `i3d_jax.training.
config.validate_config` checks values (names of schedules, presets, ...) before any work starts.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    """Every field, with the paper's defaults."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    # "video": I3D on clips; "features": a temporal head (configs/temporal_head.py);
    # "multilabel": I3D with per-frame sigmoid outputs on action intervals (configs/charades_rgb.py)
    c.task = "video"
    c.modality = "rgb"  # "rgb" (3 channels) or "flow" (2 channels)

    c.model = ml_collections.ConfigDict()
    c.model.preset = "release"  # i3d_jax.model.PRESETS: release | small | tiny (+ register_preset)
    c.model.num_classes = 400  # must equal the dataset's class count (checked before training)
    c.model.allow_extra_classes = False  # True: a head larger than the dataset's classes
    c.model.schedule = "paper"  # i3d_jax.schedules.SCHEDULES
    c.model.dropout_rate = 0.5
    c.model.temporal_padding = "zeros"
    c.model.bn_momentum = 0.999  # running-average decay (the release); short runs want ~0.9
    c.model.dtype = "bfloat16"  # compute dtype; params, BatchNorm statistics and loss stay float32
    c.model.remat = False  # recompute activations in the backward pass (less memory)
    # How the network is computed, never what: "auto" (the graph measured fastest on this
    # backend, i3d_jax.graph.FASTEST) or a name in i3d_jax.graph.NAMED ("plain", "t2c_taps", ...)
    c.model.graph = "auto"

    c.dataset = ml_collections.ConfigDict()
    c.dataset.name = "synthetic_motion"  # synthetic_motion | video_folder | a TFDS name
    c.dataset.builder_config = ""  # TFDS builder config name ("" = default)
    c.dataset.data_dir = ""  # "" = ~/tensorflow_datasets
    c.dataset.folder = ""  # video_folder: the folder of class sub-folders
    # video_folder RGB built by a run: "h264" | "jpeg" ("" = the built dataset's, else h264)
    c.dataset.frame_format = ""
    c.dataset.train_split = "train"
    c.dataset.eval_split = "validation"
    c.dataset.in_memory = False  # synthetic_motion only: generate in memory, skip TFDS (tests)
    # Flow datasets: the flow settings the run expects; a dataset recording others is refused
    # (i3d_jax.data.flow_build.check_expected). "" / 0 accepts what the dataset recorded.
    c.dataset.flow = ml_collections.ConfigDict()
    c.dataset.flow.solver = ""  # jax | opencv
    c.dataset.flow.preset = ""  # a key of i3d_jax.flow.PRESETS (default | fast)
    c.dataset.flow.bound = 0.0  # quantisation bound in pixels (20 in the paper)

    _training_fields(c)
    _evaluation_fields(c)
    c.progress = True  # tqdm bar
    return c


def _training_fields(c: ml_collections.ConfigDict) -> None:
    """Input pipeline, batch, optimizer, learning rate, mesh, BatchNorm, initialisation."""
    c.input = ml_collections.ConfigDict()
    c.input.clip_length = 64
    c.input.crop_size = 224
    c.input.loop_short = True
    c.input.flip = True
    c.input.scale_jitter_min = 0.0  # > 0: crop side uniform in [min, max] x min(H, W), resized
    c.input.scale_jitter_max = 1.0
    c.input.num_threads = 2
    c.input.num_workers = 0  # > 0: decode in that many worker processes
    c.input.prefetch = 2

    c.batch_size = 384  # global (all hosts); the release: 64 replicas x 6 clips
    c.grad_accum_steps = 1  # micro-batches per step (each batch_size / grad_accum_steps)
    c.num_train_steps = 115_000

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "sgd"  # sgd | adam
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = False
    c.optimizer.weight_decay = 1e-7  # L2 on conv kernels only (not BN offsets, not biases)
    c.optimizer.grad_clip_norm = 0.0  # 0 = off

    c.lr = ml_collections.ConfigDict()
    c.lr.schedule = "step"  # step | cosine | constant
    c.lr.base = 0.1
    c.lr.warmup_steps = 0
    c.lr.boundaries = (97_000, 108_000)  # step: multiply by decay_factor at each
    c.lr.decay_factor = 0.1

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1  # -1: all devices not used by fsdp
    c.mesh.fsdp = 1  # > 1: params and optimizer state sharded over this many devices
    c.mesh.fsdp_min_size = 2**14  # arrays smaller than this stay replicated

    c.bn = ml_collections.ConfigDict()
    c.bn.group_size = 0  # 0: statistics over the global batch; k: over groups of k examples
    c.bn.frozen = False  # use the running statistics in training (fine-tuning; disables dropout)

    c.init = ml_collections.ConfigDict()
    c.init.method = "scratch"  # scratch | inflate | pretrained | cross_modality (RGB->flow)
    # inflate: a 2D .npz ('/'-joined keys) or "random"; pretrained / cross_modality: a
    # load_pretrained source (a training run's workdir too: its best, else latest checkpoint)
    c.init.source = ""
    c.init.inflate_method = "mean"  # mean | center
    c.init.new_head = False  # pretrained: re-initialise Logits (set when num_classes differs)

    # task="multilabel": loss = frame_weight * BCE of every frame's logits + max_weight * BCE of
    # their max over the clip's time against the clip's classes (pytorch-i3d's Charades recipe)
    c.multilabel = ml_collections.ConfigDict()
    c.multilabel.frame_weight = 0.5
    c.multilabel.max_weight = 0.5


def _evaluation_fields(c: ml_collections.ConfigDict) -> None:
    """Checkpoints, logging and evaluation."""
    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every_steps = 1000
    c.checkpoint.keep = 3  # the last k, plus the best by validation accuracy in <workdir>/best
    c.checkpoint.async_save = True

    c.log_every_steps = 100
    c.eval_every_steps = 5000  # 0: only at the end

    c.eval = ml_collections.ConfigDict()
    c.eval.protocol = "whole"  # whole (the paper) | multiview
    c.eval.batch_size = 8  # global
    c.eval.max_frames = 250  # whole: videos looped/trimmed to this length
    c.eval.clip_length = 64  # multiview
    c.eval.num_clips = 10
    c.eval.num_crops = 1  # 1 or 3
    c.eval.max_videos = 0  # 0 = all
    c.eval.fusion_weights = (0.5, 0.5)  # eval.py --fuse: weights of (this, other) stream logits
    c.eval.fuse_with = ""  # eval.py: the other stream's workdir/checkpoint or pretrained source
    c.eval.fuse_config = ""  # eval.py: the other stream's config file
    # eval.py: `field=value` overrides of the other stream's config, separated by ";", e.g.
    # "dataset.data_dir=/data/tfds; model.num_classes=10" (what --config.a.b=v is for this one)
    c.eval.fuse_overrides = ""


def cpu_demo() -> ml_collections.ConfigDict:
    """The CPU demo's recipe, for any small dataset of 16-frame 32x32 videos: `tiny` I3D in
    float32, 400 Adam steps (cosine, 20 warmup) of 16 random 12-frame clips of 32x32, no flips
    (they would swap left and right), BatchNorm averages decaying at 0.9, whole-video evaluation
    (`configs/synthetic_motion.py` and the two-stream configs set the dataset)."""
    c = get_config()
    c.model.preset = "tiny"
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
