"""TV-L1 optical flow for the I3D flow stream (`i3d_jax.flow.tvl1`: the JAX solver and OpenCV's).

`compute_flow(frames uint8 [T, H, W, 3]) -> float32 pixels [T-1, H, W, 2]` (x then y, from frame
t to t+1). `python -m i3d_jax.flow VIDEO --out FLOW.npz` computes a whole video's flow in bounded
memory (`i3d_jax.flow.cli`).
"""

from i3d_jax.flow.tvl1 import (
    BACKENDS,
    DEFAULT,
    FAST,
    LUMA,
    PAIRS_AXIS,
    PRESETS,
    SOLVER_VERSION,
    TVL1Params,
    compute_flow,
    opencv_available,
    pairs_mesh,
    pyramid_shapes,
    to_gray,
    tvl1_batch,
    tvl1_pair,
    tvl1_sharded,
)

__all__ = [
    "BACKENDS",
    "DEFAULT",
    "FAST",
    "LUMA",
    "PAIRS_AXIS",
    "PRESETS",
    "SOLVER_VERSION",
    "TVL1Params",
    "compute_flow",
    "opencv_available",
    "pairs_mesh",
    "pyramid_shapes",
    "to_gray",
    "tvl1_batch",
    "tvl1_pair",
    "tvl1_sharded",
]
