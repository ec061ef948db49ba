"""`synthetic_motion`: generated videos whose class is the motion, not the appearance.

Each video shows one elongated shape (bar, ellipse or wedge) of random bright colour, size, position
and orientation on a random dark uniform background, with a little pixel noise. (Bright on dark keeps
the contrast polarity fixed, which a narrow network learns much faster than arbitrary polarity.) The class is what the shape
*does* over time:

=====  ====================  ===========================================
index  name                  motion
=====  ====================  ===========================================
0      ``right``             translates right (``+x``)
1      ``left``              translates left
2      ``down``              translates down (``+y``)
3      ``up``                translates up
4      ``down_right``        translates diagonally down-right
5      ``up_left``           translates diagonally up-left
6      ``clockwise``         rotates clockwise in place (on screen)
7      ``counterclockwise``  rotates counter-clockwise in place
=====  ====================  ===========================================

``num_classes`` (2..8) keeps the first classes of this table. Positions live on a torus (a shape
leaving one edge enters at the other) and starting positions and angles are uniform, so every single
frame has the same distribution whatever the class: a single-frame classifier is at chance, while
the frame-to-frame displacement or rotation gives the label exactly (see ``tests/test_synthetic.py``).

Two builder configs are tasks built to tell pooling schedules apart (``task`` field; see the
README's "Ablations" section and ``python -m i3d_jax.ablate``). Both use 36-frame videos, the
fewest that every named schedule accepts (``temporal_early`` needs 33), and one small disc of random
bright colour on a dark background whose start is uniform on the torus, so a single frame is at
chance:

* ``fast_small`` (8 classes, :data:`FAST_SMALL_NAMES`): a disc of radius about 1.5 px moving right,
  left, down or up at a slow (about 1 px/frame) or fast (about 4 px/frame) speed; class = direction x
  speed. At the fast speed consecutive positions do not overlap, so a max-pool over time early in the
  network merges them into one streak, where direction (which end is newest) is lost unless earlier
  layers encoded it: built to detect the cost of pooling time early.
* ``reverse`` (2 classes, :data:`REVERSE_NAMES`): a disc moves in a uniformly random direction, is
  hidden for ``gap`` frames (background only) around the middle of the video, and reappears moving
  in the same direction (``one_way``) or the opposite one (``reverse``, it turned while hidden). Each
  half alone has the same distribution in both classes; only a view spanning both halves and the gap
  (about ``gap`` + 4 frames) tells them apart: built to detect a too short temporal receptive field.

Two builder configs make the long-range task of the temporal heads (:mod:`i3d_jax.data.synthetic_long`
documents them): ``long_range`` (224-frame videos of two motion events at least 112 still frames
apart, more than I3D's receptive field; class = the ordered pair of kinds) and
``long_range_events`` (24-frame clips of one event, labelled by its kind, to train the network).

Two builder configs make the two-stream task (:mod:`i3d_jax.data.synthetic_camouflage`
documents it): ``camouflage`` (RGB) and ``camouflage_flow`` (its TV-L1 flow, PNG, with
``flow_scale`` and the flow settings in the metadata), 8 classes = tint (warm/cool, seen in any
single RGB frame, absent from the luma the flow is computed on) x direction of a disc camouflaged
in a texture (no single frame shows it; the flow does). ``modality="flow"`` builds any task's flow.

One builder config is the multi-label task (:mod:`i3d_jax.data.synthetic_multilabel` documents
it): ``multilabel``, 64-frame videos of 32x32 where up to 4 discs, one per class (its direction of
travel), appear and disappear at random times and overlap; the examples carry their action
intervals (``actions``, see :mod:`i3d_jax.data.schema`) and ``label`` is the earliest action.

Use it through TFDS (no TensorFlow needed)::

    from i3d_jax.data.synthetic_motion import SyntheticMotion
    builder = SyntheticMotion(data_dir=d, file_format="array_record")  # or config=SyntheticMotionConfig(...)
    builder.download_and_prepare()
    src = schema.data_source(builder, "train")  # video: list of JPEG bytes

or in memory with :func:`generate_dataset` (uint8 ``[N, T, H, W, 3]`` and int labels).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from i3d_jax.data import schema, synthetic_camouflage, synthetic_long, synthetic_multilabel

CLASS_NAMES = (
    "right",
    "left",
    "down",
    "up",
    "down_right",
    "up_left",
    "clockwise",
    "counterclockwise",
)
FAST_SMALL_NAMES = tuple(
    f"{d}_{v}" for d in ("right", "left", "down", "up") for v in ("slow", "fast")
)
REVERSE_NAMES = ("one_way", "reverse")
TASKS = ("motion", "fast_small", "reverse") + synthetic_long.TASKS + ("camouflage", "multilabel")
MODALITIES = ("rgb", "flow")
_AXES = ((1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0))
# Unit motion per class: (dx, dy, dtheta) with dtheta in units of the rotation speed. Image y points
# down, so a clockwise rotation on screen increases the angle measured from +x towards +y.
_MOTIONS = {
    0: (1.0, 0.0, 0.0),
    1: (-1.0, 0.0, 0.0),
    2: (0.0, 1.0, 0.0),
    3: (0.0, -1.0, 0.0),
    4: (0.7071, 0.7071, 0.0),
    5: (-0.7071, -0.7071, 0.0),
    6: (0.0, 0.0, 1.0),
    7: (0.0, 0.0, -1.0),
}
SHAPES = ("bar", "ellipse", "wedge")
_SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}
_SUPERSAMPLE = 2


@dataclasses.dataclass(eq=False)
class SyntheticMotionConfig(tfds.core.BuilderConfig):
    """Options of `synthetic_motion`.

    Attributes:
      num_classes: how many classes of `CLASS_NAMES` to use (2..8).
      num_frames: frames per video (``T``).
      size: frame height and width in pixels.
      num_train, num_validation: examples per split (classes balanced: label = index % classes).
      seed: generator seed; the same config always gives the same videos.
      speed: translation speed in pixels per frame at ``size=32`` (scaled with `size`).
      rotation_deg: rotation speed in degrees per frame.
      noise: standard deviation of the added pixel noise (uint8 units).
      task: "motion" (the shapes above), "fast_small", "reverse", "long_range(_events)",
        "camouflage" or "multilabel" (see the module docstring).
      speeds: fast_small: the slow and fast speeds in pixels per frame at ``size=32``.
      radius: fast_small and reverse: the disc's radius in pixels at ``size=32``.
      gap: reverse: frames the disc is hidden around the middle; long_range: the fewest still
        frames between the two events.
      event_frames: long_range(_events): frames of each motion event; multilabel: the
        shortest action.
      modality: "rgb" (JPEG frames) or "flow" (TV-L1 flow of the same videos, quantised, PNG).
      flow_preset: flow: the `i3d_jax.flow.PRESETS` parameters the JAX TV-L1 runs with.
    """

    num_classes: int = 6
    num_frames: int = 16
    size: int = 32
    num_train: int = 1000
    num_validation: int = 200
    seed: int = 0
    speed: float = 2.0
    rotation_deg: float = 15.0
    noise: float = 6.0
    task: str = "motion"
    speeds: tuple[float, float] = (1.0, 4.0)
    radius: float = 1.5
    gap: int = 8
    event_frames: int = 16
    modality: str = "rgb"
    flow_preset: str = "default"


def render_video(
    rng: np.random.Generator,
    label: int,
    *,
    num_frames: int = 16,
    size: int = 32,
    speed: float = 2.0,
    rotation_deg: float = 15.0,
    noise: float = 6.0,
) -> np.ndarray:
    """Render one video of class `label` as uint8 `[num_frames, size, size, 3]`."""
    if label not in _MOTIONS:
        raise ValueError(f"synthetic_motion: label must be in 0..{len(_MOTIONS) - 1}, got {label}")
    scale = size / 32.0
    half_len = rng.uniform(5.0, 8.0) * scale
    half_wid = max(1.5 * scale, half_len * rng.uniform(0.25, 0.4))
    shape = SHAPES[rng.integers(len(SHAPES))]
    cx, cy = rng.uniform(0.0, size, 2)
    theta0 = rng.uniform(0.0, np.pi)
    vel = speed * scale * rng.uniform(0.85, 1.15)
    omega = np.deg2rad(rotation_deg) * rng.uniform(0.85, 1.15)
    background = rng.uniform(0, 80, 3)  # dark background, bright shape: clear contrast
    colour = rng.uniform(150, 255, 3)

    mx, my, mt = _MOTIONS[label]
    t = np.arange(num_frames, dtype=np.float64)[:, None, None]
    n = size * _SUPERSAMPLE
    grid = (np.arange(n) + 0.5) / _SUPERSAMPLE
    gx, gy = grid[None, None, :], grid[None, :, None]
    # Offsets to the shape centre on the torus, in [-size/2, size/2).
    dx = np.mod(gx - (cx + mx * vel * t) + size / 2, size) - size / 2
    dy = np.mod(gy - (cy + my * vel * t) + size / 2, size) - size / 2
    theta = theta0 + mt * omega * t
    u = dx * np.cos(theta) + dy * np.sin(theta)  # along the shape's long axis
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    if shape == "bar":
        mask = (np.abs(u) <= half_len) & (np.abs(v) <= half_wid)
    elif shape == "ellipse":
        mask = (u / half_len) ** 2 + (v / half_wid) ** 2 <= 1.0
    else:  # wedge: wide at u=-half_len, pointed at u=+half_len
        mask = (np.abs(u) <= half_len) & (np.abs(v) <= half_wid * (half_len - u) / (2 * half_len))
    cover = mask.reshape(num_frames, size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(2, 4))
    frames = background + cover[..., None] * (colour - background)
    if noise > 0:
        frames = frames + rng.normal(0.0, noise, frames.shape)
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def example_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of example `index` of `split` (independent of every other example)."""
    return np.random.default_rng([seed, _SPLIT_IDS[split], index])


def generate_dataset(
    config: SyntheticMotionConfig, split: str = "train", num: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Videos of a split in memory: uint8 `[N, T, size, size, 3]` and int32 labels `[N]`."""
    _check_config(config)
    if config.task == "multilabel":
        raise ValueError(
            "synthetic_motion: the multilabel task's videos have several labels each; use "
            "multilabel_examples"
        )
    if config.modality != "rgb":
        raise ValueError(
            f"synthetic_motion: {config.name!r} is a {config.modality} config; in memory only RGB "
            "videos are generated (build it with TFDS, dataset.in_memory=False)"
        )
    if num is None:
        num = config.num_train if split == "train" else config.num_validation
    videos = np.empty((num, config.num_frames, config.size, config.size, 3), np.uint8)
    labels = np.arange(num, dtype=np.int32) % config.num_classes
    for i in range(num):
        videos[i] = _render_from_config(config, split, i, int(labels[i]))
    return videos, labels


def multilabel_examples(
    config: SyntheticMotionConfig, split: str = "train", num: int | None = None
) -> list[dict]:
    """The multilabel task's examples of a split in memory: dicts with uint8 ``video`` `[T, size,
    size, 3]`, ``label`` (the earliest action), ``video_id``, ``fps`` and ``actions``."""
    _check_config(config)
    if num is None:
        num = config.num_train if split == "train" else config.num_validation
    return [
        synthetic_multilabel.example(example_rng(config.seed, split, i), config, f"{split}_{i:06d}")
        for i in range(num)
    ]


def class_names(config: SyntheticMotionConfig) -> tuple[str, ...]:
    """The label names of a config (its task's table, first `num_classes` of them)."""
    table = {"fast_small": FAST_SMALL_NAMES, "reverse": REVERSE_NAMES, **synthetic_long.NAMES}.get(
        config.task, CLASS_NAMES
    )
    table = synthetic_camouflage.CLASS_NAMES if config.task == "camouflage" else table
    table = (
        CLASS_NAMES[: synthetic_multilabel.MOST_CLASSES] if config.task == "multilabel" else table
    )
    return table[: config.num_classes]


def _disc_video(rng, centres, visible, radius, size, noise) -> np.ndarray:
    """uint8 `[T, size, size, 3]`: a disc at `centres [T, 2]` (x, y, on the torus) where visible."""
    background = rng.uniform(0, 80, 3)
    colour = rng.uniform(150, 255, 3)
    n = size * _SUPERSAMPLE
    grid = (np.arange(n) + 0.5) / _SUPERSAMPLE
    dx = np.mod(grid[None, None, :] - centres[:, 0, None, None] + size / 2, size) - size / 2
    dy = np.mod(grid[None, :, None] - centres[:, 1, None, None] + size / 2, size) - size / 2
    mask = (dx**2 + dy**2 <= radius**2) & visible[:, None, None]
    t = len(centres)
    cover = mask.reshape(t, size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(2, 4))
    frames = background + cover[..., None] * (colour - background)
    if noise > 0:
        frames = frames + rng.normal(0.0, noise, frames.shape)
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def render_fast_small(rng: np.random.Generator, label: int, config: SyntheticMotionConfig):
    """`fast_small` class `label` (direction = label // 2, fast = label % 2) as uint8 frames."""
    scale = config.size / 32.0
    start = rng.uniform(0.0, config.size, 2)
    vel = config.speeds[label % 2] * scale * rng.uniform(0.9, 1.1)
    radius = config.radius * scale * rng.uniform(0.9, 1.1)
    t = np.arange(config.num_frames, dtype=np.float64)[:, None]
    centres = start + t * vel * np.asarray(_AXES[label // 2])
    visible = np.ones(config.num_frames, bool)
    return _disc_video(rng, centres, visible, radius, config.size, config.noise)


def render_reverse(rng: np.random.Generator, label: int, config: SyntheticMotionConfig):
    """`reverse` class `label` (0 one_way, 1 reverse) as uint8 frames; the turn is hidden."""
    scale, num = config.size / 32.0, config.num_frames
    start = rng.uniform(0.0, config.size, 2)
    angle = rng.uniform(0.0, 2 * np.pi)
    vel = config.speed * scale * rng.uniform(0.85, 1.15)
    radius = config.radius * scale * rng.uniform(0.9, 1.1)
    hide = num // 2 - config.gap // 2 + int(rng.integers(-2, 3))
    turn = hide + config.gap / 2  # the disc turns while hidden
    t = np.arange(num, dtype=np.float64)
    travelled = t if label == 0 else np.where(t <= turn, t, 2 * turn - t)
    centres = start + travelled[:, None] * vel * np.array([np.cos(angle), np.sin(angle)])
    visible = (t < hide) | (t >= hide + config.gap)
    return _disc_video(rng, centres, visible, radius, config.size, config.noise)


def _render_from_config(config: SyntheticMotionConfig, split: str, index: int, label: int):
    if config.task == "camouflage":
        return synthetic_camouflage.render_camouflage(
            example_rng(config.seed, split, index),
            label,
            **{k: getattr(config, k) for k in ("num_frames", "size", "speed", "radius", "noise")},
        )
    if config.task in synthetic_long.TASKS:
        return synthetic_long.render_from_config(
            example_rng(config.seed, split, index), label, config
        )
    if config.task != "motion":
        render = render_fast_small if config.task == "fast_small" else render_reverse
        return render(example_rng(config.seed, split, index), label, config)
    return render_video(
        example_rng(config.seed, split, index),
        label,
        num_frames=config.num_frames,
        size=config.size,
        speed=config.speed,
        rotation_deg=config.rotation_deg,
        noise=config.noise,
    )


def _config_dict(config: SyntheticMotionConfig) -> dict:
    names = ("num_classes", "num_frames", "size", "num_train", "num_validation", "seed", "speed")
    out = {k: getattr(config, k) for k in names + ("rotation_deg", "noise")}
    if config.task != "motion":  # the motion task's metadata stays as it was
        out.update(task=config.task, speeds=list(config.speeds), radius=config.radius)
        out["gap"] = config.gap
    if config.task in synthetic_long.TASKS + ("multilabel",):
        out["event_frames"] = config.event_frames
    if config.modality != "rgb":  # rgb configs' metadata stays as it was
        out.update(modality=config.modality, flow_preset=config.flow_preset)
    return out


def _check_config(config: SyntheticMotionConfig) -> None:
    if config.task not in TASKS:
        raise ValueError(f"synthetic_motion: task must be one of {TASKS}, got {config.task!r}")
    most = len(class_names(dataclasses.replace(config, num_classes=99)))
    if not 2 <= config.num_classes <= most:
        raise ValueError(
            f"synthetic_motion: num_classes must be in 2..{most} for task {config.task!r}, "
            f"got {config.num_classes}"
        )
    if config.task == "reverse" and not 0 < config.gap <= config.num_frames - 8:
        raise ValueError(
            f"synthetic_motion: reverse needs 0 < gap <= num_frames - 8, got gap={config.gap}, "
            f"num_frames={config.num_frames}"
        )
    if config.modality not in MODALITIES:
        raise ValueError(
            f"synthetic_motion: modality must be one of {MODALITIES}, got {config.modality!r}"
        )
    if config.modality == "flow":
        synthetic_camouflage.flow_settings(config.flow_preset)  # a known preset
    if config.task == "long_range":
        synthetic_long.check_long(config.num_frames, config.event_frames, config.gap)
    if config.task == "multilabel" and not 1 <= config.event_frames <= config.num_frames:
        raise ValueError(
            f"synthetic_motion: multilabel needs 1 <= event_frames <= num_frames, got "
            f"event_frames={config.event_frames}, num_frames={config.num_frames}"
        )
    if config.task == "multilabel" and config.modality != "rgb":
        raise ValueError("synthetic_motion: the multilabel task is RGB only")
    if config.num_frames < 2 or config.size < 8:
        raise ValueError(
            "synthetic_motion: need num_frames >= 2 and size >= 8, "
            f"got num_frames={config.num_frames}, size={config.size}"
        )


class SyntheticMotion(schema.VideoDatasetBuilder):
    """TFDS builder of `synthetic_motion` (see the module docstring); no downloads, no TF."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        SyntheticMotionConfig(
            name="default", description="6 translation directions, 16 frames of 32x32."
        ),
        SyntheticMotionConfig(
            name="directions4",
            description="4 translation directions, 16 frames of 32x32 (the easiest).",
            num_classes=4,
        ),
        SyntheticMotionConfig(
            name="motion8",
            description="All 8 classes, 16 frames of 48x48, 2000 train videos.",
            num_classes=8,
            size=48,
            num_train=2000,
            num_validation=400,
        ),
        SyntheticMotionConfig(
            name="tiny",
            description="For tests: 4 classes, 8 frames of 16x16, 16/8 videos.",
            num_classes=4,
            num_frames=8,
            size=16,
            num_train=16,
            num_validation=8,
        ),
        SyntheticMotionConfig(
            name="fast_small",
            description="Ablation task: a small disc, 4 directions x slow/fast, 36 frames of 32x32.",
            task="fast_small",
            num_classes=8,
            num_frames=36,
        ),
        SyntheticMotionConfig(
            name="reverse",
            description="Ablation task: one way vs reversed while hidden, 36 frames of 32x32.",
            task="reverse",
            num_classes=2,
            num_frames=36,
            radius=2.5,
        ),
        SyntheticMotionConfig(
            name="long_range",
            description="Two motion events >= 112 frames apart, class = their ordered kinds; "
            "224 frames of 32x32 (i3d_jax.data.synthetic_long).",
            task="long_range",
            num_classes=6,
            num_frames=224,
            num_train=600,
            num_validation=120,
            speed=1.5,
            radius=2.5,
            gap=112,
        ),
        SyntheticMotionConfig(
            name="long_range_events",
            description="One motion event (or none) per 24-frame clip of 32x32, labelled by kind: "
            "the network of the long_range recipe is trained on these.",
            task="long_range_events",
            num_classes=4,
            num_frames=24,
            num_train=800,
            num_validation=200,
            speed=1.5,
            radius=2.5,
        ),
        *(
            SyntheticMotionConfig(
                name=f"camouflage{suffix}",
                description="Two-stream task: tint (RGB sees it) x direction of a camouflaged disc "
                f"(flow sees it), 8 classes, 16 frames of 32x32{what}"
                " (i3d_jax.data.synthetic_camouflage).",
                task="camouflage",
                num_classes=8,
                radius=7.0,
                noise=4.0,
                modality=modality,
                flow_preset="fast",
            )
            for suffix, what, modality in (
                ("", "", "rgb"),
                ("_flow", ", as TV-L1 flow (JAX, 'fast' preset)", "flow"),
            )
        ),
        SyntheticMotionConfig(
            name="multilabel",
            description="Multi-label task: up to 4 discs (one per direction of travel) appear and "
            "disappear at random times and overlap; 64 frames of 32x32 with action intervals "
            "(i3d_jax.data.synthetic_multilabel).",
            task="multilabel",
            num_classes=4,
            num_frames=64,
            num_train=800,
            num_validation=200,
            speed=1.5,
            radius=2.5,
            event_frames=12,
        ),
    ]
    DEFAULT_CONFIG_NAME = "default"

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        _check_config(config)
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__.split("\n\n")[0],
            features=schema.video_features(
                class_names(config),
                flow=config.modality == "flow",
                actions=config.task == "multilabel",
            ),
            supervised_keys=(schema.VIDEO, schema.LABEL),
            metadata=tfds.core.MetadataDict(
                {schema.MODALITY_KEY: config.modality, "config": _config_dict(config)}
                | synthetic_camouflage.flow_metadata(config.modality, config.flow_preset)
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {
            "train": self._generate_examples("train", self.builder_config.num_train),
            "validation": self._generate_examples("validation", self.builder_config.num_validation),
        }

    def _generate_examples(self, split: str, num: int):
        config = self.builder_config
        if config.task == "multilabel":
            yield from self._multilabel_examples(split, num)
            return
        labels = [i % config.num_classes for i in range(num)]
        videos = (_render_from_config(config, split, i, labels[i]) for i in range(num))
        if config.modality == "flow":
            videos = synthetic_camouflage.quantized_flow(videos, preset=config.flow_preset)
        for i, frames in enumerate(self._bar(videos, num, split)):
            label = labels[i]
            encoded = (
                schema.encode_flow_frames(frames)
                if config.modality == "flow"
                else schema.encode_jpeg_frames(frames, quality=95, subsampling=0)
            )
            yield (
                i,
                {
                    schema.VIDEO: encoded,
                    schema.LABEL: label,
                    schema.VIDEO_ID: f"{split}_{i:06d}",
                    schema.PATH: "",
                    schema.FPS: np.float32(25.0),
                    schema.NUM_FRAMES: np.int32(len(encoded)),
                    schema.HEIGHT: np.int32(config.size),
                    schema.WIDTH: np.int32(config.size),
                },
            )

    def _multilabel_examples(self, split: str, num: int):
        config = self.builder_config
        for i in self._bar(range(num), num, split):
            ex = synthetic_multilabel.example(
                example_rng(config.seed, split, i), config, f"{split}_{i:06d}"
            )
            frames = ex[schema.VIDEO]
            encoded = schema.encode_jpeg_frames(frames, quality=95, subsampling=0)
            ex.update({
                schema.VIDEO: encoded, schema.PATH: "", schema.NUM_FRAMES: np.int32(len(encoded)),
                schema.HEIGHT: np.int32(config.size), schema.WIDTH: np.int32(config.size),
            })  # fmt: skip
            yield i, ex
