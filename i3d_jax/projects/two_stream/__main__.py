"""`python -m i3d_jax.two_stream` (or `i3d_jax.projects.two_stream`): see its `cli` module."""

import sys

from i3d_jax.projects.two_stream.cli import main

sys.exit(main())
