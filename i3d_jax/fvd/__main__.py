"""`python -m i3d_jax.fvd`: see `i3d_jax.fvd.cli`."""

import sys

from i3d_jax.fvd.cli import main

sys.exit(main())
