"""Studies built on the layers below (they only call them): `ablate` (pooling-schedule and
inflation grids with their report) and `two_stream` (RGB + flow trained apart, late fusion)."""
