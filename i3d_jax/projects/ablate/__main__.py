"""`python -m i3d_jax.ablate` (or `i3d_jax.projects.ablate`): see `i3d_jax.projects.ablate.cli`."""

import sys

from i3d_jax.projects.ablate.cli import main

sys.exit(main())
