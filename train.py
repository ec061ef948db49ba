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

from i3d_jax.cli import EXIT_USAGE, UsageError, fail, message
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
    from i3d_jax.training import contract, summary
    from i3d_jax.training.config import validate_config

    config = FLAGS.config
    try:
        validate_config(config)
        # A finished run says so from its workdir's records (a changed contract is refused):
        # no dataset, model or device work, and the training code is not even imported.
        out = contract.finished_run(FLAGS.workdir, config)
    except ValueError as e:  # contract.ContractError included
        sys.exit(fail(message(e), EXIT_USAGE))
    if out is not None:  # the distributed runtime never started: the first process prints
        first = FLAGS.process_id in (None, 0)
    else:
        import jax

        out = _train(config)
        first = jax.process_index() == 0
    if not first:
        return
    from i3d_jax.training import evaluation

    print("\n".join(summary.summary_lines(out)))
    if out["eval"]:
        print(evaluation.format_summary(out["eval"]))
        print(json.dumps(evaluation.scalar_results(out["eval"])))


def _train(config) -> dict:
    from i3d_jax.training import loop
    from i3d_jax.training.config import TrainingError

    cli.initialize_distributed()
    try:
        return loop.train_and_evaluate(config, FLAGS.workdir)
    except UsageError as e:  # found before any work: the contract, the data, the config
        sys.exit(fail(message(e), EXIT_USAGE))
    except (TrainingError, PermissionError, FileNotFoundError, ValueError) as e:
        sys.exit(fail(message(e)))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
