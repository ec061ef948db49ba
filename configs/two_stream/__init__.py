"""The two streams of `python -m i3d_jax.two_stream` on `synthetic_motion/camouflage(_flow)`."""
