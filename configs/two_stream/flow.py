"""The two-stream task's flow stream: the config that ships in the package
(`i3d_jax/projects/two_stream/configs/flow.py`), here for `--config configs/two_stream/flow.py`."""

from i3d_jax.projects.two_stream.configs.flow import get_config

__all__ = ["get_config"]
