"""`python -m i3d_jax.extract_features`: see `i3d_jax.extract_features.cli`."""

import sys

from i3d_jax.extract_features.cli import main

sys.exit(main())
