"""What `train.py` and `eval.py` share: their multi-host flags, and absl flag parsing that reports a
bad flag, config file or config field as `error: ...` (exit 2, no traceback) before anything heavy
runs (the `i3d_jax.cli` conventions)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import flags

from i3d_jax import cli


def define_multihost_flags() -> None:
    """`--coordinator --num_processes --process_id` (JAX's distributed runtime; auto-detected on
    TPU pods and SLURM when not given, see docs/training.md)."""
    flags.DEFINE_string(
        "coordinator", None, "Multi-host: coordinator host:port (else auto-detect)."
    )
    flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
    flags.DEFINE_integer("process_id", None, "Multi-host: this process's id.")


def initialize_distributed() -> None:
    """`jax.distributed.initialize` from the multi-host flags (nothing for one process)."""
    from i3d_jax import sharding

    f = flags.FLAGS
    sharding.maybe_initialize_distributed(f.coordinator, f.num_processes, f.process_id)


HELP_FLAGS = {"--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml"}


def parse_flags(argv: Sequence[str]) -> list[str]:
    """`flags.FLAGS(argv)`; a misspelt flag or `--config.field`, a bad value or a config file that
    does not load exits with `error: <what was wrong>` on stderr, status 2; `--help` exits 0
    (absl's own help flag exits 1)."""
    try:
        rest = flags.FLAGS(list(argv))
        if "config" in flags.FLAGS:
            flags.FLAGS.config.keys()  # a config file that failed to load raises here
        return rest
    except SystemExit as e:
        if e.code == 1 and HELP_FLAGS & set(argv[1:]):
            sys.exit(0)
        raise
    except (flags.Error, OSError, AttributeError, KeyError, ValueError, TypeError) as e:
        sys.exit(cli.fail(f"{cli.message(e)} (see {argv[0]} --help)", cli.EXIT_USAGE))
