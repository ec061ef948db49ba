"""The CPU demo's flow stream: `tiny` I3D on TV-L1 flow (2 input channels) of small videos.

The same scale and recipe as `configs/synthetic_motion.py` (16 random 12-frame clips of 32x32, 400
Adam steps, no flips), on a `video_folder` dataset built with the `flow` builder config (TV-L1,
quantised to uint8 with the bound in the dataset metadata `flow_scale`). (`synthetic_motion`'s
only flow builder config is the camouflage task's, `configs/two_stream/flow.py`.) Point
`dataset.folder` at a folder of the demo's videos
(`<folder>/<split>/<class>/<video>`), `dataset.data_dir` where the flow build goes, and
`model.num_classes` at the folder's class count (4 here, as `directions4`):

  python -m i3d_jax.data.build video_folder --config flow --short_side none --fps none \
      --manual_dir VIDEOS --data_dir DATA
  python train.py --config configs/synthetic_motion_flow.py --workdir runs/demo_flow \
      --config.dataset.folder=VIDEOS --config.dataset.data_dir=DATA

Initialisation from the RGB demo run instead of scratch (TSN's cross-modality initialisation,
`i3d_jax.inflate.cross_modality`: the first kernel averaged over colour, repeated to 2 channels):
`--config.init.method=cross_modality --config.init.source=runs/demo`.
"""

from configs import synthetic_motion


def get_config():
    c = synthetic_motion.get_config()
    c.modality = "flow"  # 2 input channels (x, y) in [-1, 1]: pixels clipped to +-20, / 20
    c.dataset.name = "video_folder"
    c.dataset.builder_config = "flow"
    c.dataset.folder = ""
    # 16-frame videos give 15 flow frames; clips stay 12 frames, evaluation takes them all.
    c.eval.max_frames = 15
    return c
