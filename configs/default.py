"""Every field of a training/eval run, with the paper's defaults where it has one.

The fields, their defaults and comments live in the package (`i3d_jax.training.defaults`, so
tools reading a run's config work from an installed package too). Variants import this file and
override a few fields; `--config.a.b=value` overrides on the command line. The dict is locked:
an unknown field name fails at parse time, and `i3d_jax.training.config.validate_config` checks
values (names of schedules, presets, ...) before any work starts.
"""

from i3d_jax.training.defaults import get_config

__all__ = ["get_config"]
