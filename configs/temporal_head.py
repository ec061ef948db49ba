"""A temporal head over I3D window features (`config.task = "features"`).

    python -m i3d_jax.extract_features VIDEOS/train/CLASS --weights SOURCE --out FEATS/train/CLASS
    python train.py --config configs/heads/transformer.py --workdir runs/head \
        --config.dataset.folder=FEATS --config.model.num_classes=K

Data: `<dataset.folder>/<split>/<class>/<video>.npz` as written by `extract_features` (or a CSV
of `path,label,split` in `features.csv`); see `i3d_jax.training.tasks.features`. The head is
`i3d_jax.heads.HEADS[head.name]`; each head takes the `head` options it has.
"""

import ml_collections

from configs import default


def get_config():
    c = default.get_config()
    c.task = "features"
    c.dataset.name = "feature_folder"
    c.dataset.folder = ""  # <folder>/<split>/<class>/<video>.npz
    c.model.num_classes = 400
    c.model.dtype = "float32"

    c.features = ml_collections.ConfigDict()
    c.features.csv = ""  # a CSV of path,label,split instead of the folder layout
    c.features.tfds_dir = ""  # or a dataset built by i3d_jax.data.feature_dataset.FeatureSequences
    c.features.feature_dim = 0  # 0: from the first file (1024 per stream for Mixed_5c)
    c.features.max_windows = 64  # training: a random run of at most this many windows
    c.features.feature_dropout = 0.0  # training: dropout on the input features

    c.head = ml_collections.ConfigDict()
    c.head.name = "transformer"  # mean | tcn | transformer | lstm (i3d_jax.heads.HEADS)
    c.head.hidden = 64
    c.head.num_layers = 2  # tcn: dilated layers (dilation 1, 2, 4, ...); transformer: layers
    c.head.kernel_size = 3  # tcn
    c.head.num_heads = 4  # transformer
    c.head.mlp_dim = 128  # transformer
    c.head.min_period = 0.5  # transformer: time encoding periods in seconds
    c.head.max_period = 1000.0
    c.head.bidirectional = True  # lstm
    c.head.dropout_rate = 0.1

    c.batch_size = 32
    c.num_train_steps = 2000
    c.optimizer.name = "adam"
    c.optimizer.weight_decay = 0.0
    c.lr.schedule = "cosine"
    c.lr.base = 1e-3
    c.lr.warmup_steps = 100
    c.checkpoint.every_steps = 500
    c.log_every_steps = 50
    c.eval_every_steps = 500
    c.eval.batch_size = 32
    return c
