"""Ablation grids (`grid`: every combination of varied config fields x seeds, run or launched)
and their report (`report`: receptive fields, GFLOPs, accuracy over seeds, Welch's t-test);
`python -m i3d_jax.ablate run|report` (`cli`)."""
