"""`python -m i3d_jax.predict`: see `i3d_jax.predict.cli`."""

import sys

from i3d_jax.predict.cli import main

sys.exit(main())
