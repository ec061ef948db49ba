"""`python -m i3d_jax.flow`: see `i3d_jax.flow.cli`."""

import sys

from i3d_jax.flow.cli import main

sys.exit(main())
