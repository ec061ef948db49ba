"""Two streams end to end on the camouflage task (`run`: build both datasets, train an RGB and a
flow I3D per seed, fuse them; `configs/`: the streams' configs); `python -m i3d_jax.two_stream`
(`cli`)."""
