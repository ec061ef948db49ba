"""Flow stream of the two-stream task: `tiny` I3D on `synthetic_motion/camouflage_flow` (TV-L1 flow
of the same videos as `rgb.py`, 2 channels in [-1, 1]), the same recipe.

    python train.py --config configs/two_stream/flow.py --workdir runs/two_stream_flow

Flips stay off as in the RGB stream (they would swap left and right; flow flips negate x anyway).
"""

from i3d_jax.projects.two_stream.configs import rgb


def get_config():
    c = rgb.get_config()
    c.modality = "flow"
    c.dataset.builder_config = "camouflage_flow"
    c.eval.max_frames = 15  # 16-frame videos give 15 flow frames; training clips stay 12
    # The flow the dataset must hold (its metadata; another is refused, naming both).
    c.dataset.flow.solver, c.dataset.flow.preset, c.dataset.flow.bound = "jax", "fast", 20.0
    return c
