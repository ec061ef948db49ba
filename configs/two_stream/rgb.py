"""The two-stream task's RGB stream: the config that ships in the package
(`i3d_jax/projects/two_stream/configs/rgb.py`), here for `--config configs/two_stream/rgb.py`."""

from i3d_jax.projects.two_stream.configs.rgb import get_config

__all__ = ["get_config"]
