"""Train I3D: `python train.py --config configs/FILE.py --workdir DIR [--config.field=value ...]`.

All logic is in `i3d_jax.train_lib.train_and_evaluate`; see docs/training.md for multi-host launch
lines (TPU pod, SLURM). Re-running with the same workdir resumes from its latest checkpoint.
"""

from __future__ import annotations

import json
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "ml_collections config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, metrics and results go here.")
flags.DEFINE_string("coordinator", None, "Multi-host: coordinator host:port (else auto-detect).")
flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
flags.DEFINE_integer("process_id", None, "Multi-host: this process's id.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    from i3d_jax import sharding, train_lib

    config = FLAGS.config
    try:
        train_lib.validate_config(config)
    except ValueError as e:
        sys.exit(f"error: {e}")
    sharding.maybe_initialize_distributed(FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id)
    import jax

    try:
        out = train_lib.train_and_evaluate(config, FLAGS.workdir)
    except (train_lib.TrainingError, PermissionError, ValueError) as e:
        sys.exit(f"error: {e}")
    if jax.process_index() == 0:
        from i3d_jax import eval_lib

        print(
            f"trained {out['steps']} steps in {out['wall_s']:.0f} s; final loss {out['final_loss']:.4f}"
        )
        if out["eval"]:
            print(eval_lib.format_summary(out["eval"]))
            print(json.dumps(eval_lib.scalar_results(out["eval"])))


if __name__ == "__main__":
    app.run(main)
