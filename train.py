"""Train I3D: `python train.py --config configs/FILE.py --workdir DIR [--config.field=value ...]`.

All logic is in `i3d_jax.training.loop.train_and_evaluate`; see docs/training.md (multi-host
launch lines for TPU pods and SLURM) and docs/architecture.md. Re-running the same command with
the same workdir resumes from its latest checkpoint; a finished run says so and exits 0.
"""

from __future__ import annotations

import json
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from i3d_jax.cli import EXIT_USAGE, fail, message
from i3d_jax.training import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "ml_collections config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics and results go here.")
cli.define_multihost_flags()
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    # Imported here, after the flags parsed: a typo is reported in a second, not after JAX loads.
    import jax

    from i3d_jax.training import evaluation, loop
    from i3d_jax.training.config import TrainingError, validate_config

    config = FLAGS.config
    try:
        validate_config(config)
    except ValueError as e:
        sys.exit(fail(str(e), EXIT_USAGE))
    cli.initialize_distributed()
    try:
        out = loop.train_and_evaluate(config, FLAGS.workdir)
    except (TrainingError, PermissionError, FileNotFoundError, ValueError) as e:
        sys.exit(fail(message(e)))
    if jax.process_index() == 0:
        print("\n".join(loop.summary_lines(out)))
        if out["eval"]:
            print(evaluation.format_summary(out["eval"]))
            print(json.dumps(evaluation.scalar_results(out["eval"])))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
