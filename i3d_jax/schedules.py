"""Named pooling schedules of I3D and a receptive-field calculator.

A schedule is data: the stride of the first convolution and the window/stride of every pooling
layer. The model (`i3d_jax.model`) and the calculator both read the layer list built here, so the
table printed by `python -m i3d_jax.schedules` is the network that runs.

    python -m i3d_jax.schedules --schedule paper --frames 64 [--size 224] [--json]
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Sequence

Triple = tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class Pool:
    """A max-pool (or the final average pool): window and stride as (T, H, W)."""

    window: Triple
    stride: Triple


@dataclasses.dataclass(frozen=True)
class PoolingSchedule:
    """Strides and pooling windows of I3D; everything else about the network is fixed."""

    name: str
    conv1_stride: Triple = (2, 2, 2)
    pool_2a: Pool = Pool((1, 3, 3), (1, 2, 2))
    pool_3a: Pool = Pool((1, 3, 3), (1, 2, 2))
    pool_4a: Pool = Pool((3, 3, 3), (2, 2, 2))
    pool_5a: Pool = Pool((2, 2, 2), (2, 2, 2))
    logits_pool: Triple = (2, 7, 7)
    description: str = ""


SCHEDULES: dict[str, PoolingSchedule] = {
    s.name: s
    for s in (
        PoolingSchedule(
            "paper",
            description="the release: no temporal pooling in MaxPool3d_2a/3a, stride-2 conv1",
        ),
        PoolingSchedule(
            "temporal_early",
            pool_2a=Pool((3, 3, 3), (2, 2, 2)),
            pool_3a=Pool((3, 3, 3), (2, 2, 2)),
            description="temporal pooling from the start (every max-pool strides in time)",
        ),
        PoolingSchedule(
            "temporal_late",
            pool_4a=Pool((1, 3, 3), (1, 2, 2)),
            description="no temporal pooling until MaxPool3d_5a",
        ),
        PoolingSchedule(
            "conv1_t1",
            conv1_stride=(1, 2, 2),
            description="stride 1 in time for Conv3d_1a_7x7, pooling as in the paper",
        ),
        PoolingSchedule(
            "no_temporal_pool",
            conv1_stride=(1, 2, 2),
            pool_4a=Pool((1, 3, 3), (1, 2, 2)),
            pool_5a=Pool((1, 2, 2), (1, 2, 2)),
            description="full temporal resolution throughout (stride 1 in time everywhere)",
        ),
    )
}


def get_schedule(schedule: str | PoolingSchedule) -> PoolingSchedule:
    """Returns a schedule by name (or passes one through)."""
    if isinstance(schedule, PoolingSchedule):
        return schedule
    if schedule not in SCHEDULES:
        raise ValueError(
            f"unknown pooling schedule {schedule!r}; expected one of {sorted(SCHEDULES)}"
        )
    return SCHEDULES[schedule]


# The release's channel table: Conv units give one width, Inception blocks give
# (branch0 1x1, branch1 1x1, branch1 3x3, branch2 1x1, branch2 3x3, branch3 1x1).
RELEASE_CHANNELS: dict[str, int | tuple[int, ...]] = {
    "Conv3d_1a_7x7": 64,
    "Conv3d_2b_1x1": 64,
    "Conv3d_2c_3x3": 192,
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}

ENDPOINTS: tuple[str, ...] = (
    "Conv3d_1a_7x7",
    "MaxPool3d_2a_3x3",
    "Conv3d_2b_1x1",
    "Conv3d_2c_3x3",
    "MaxPool3d_3a_3x3",
    "Mixed_3b",
    "Mixed_3c",
    "MaxPool3d_4a_3x3",
    "Mixed_4b",
    "Mixed_4c",
    "Mixed_4d",
    "Mixed_4e",
    "Mixed_4f",
    "MaxPool3d_5a_2x2",
    "Mixed_5b",
    "Mixed_5c",
    "Logits",
    "Predictions",
)


@dataclasses.dataclass(frozen=True)
class Layer:
    """One endpoint of the network: kind is 'conv', 'pool', 'inception' or 'logits'."""

    name: str
    kind: str
    kernel: Triple = (1, 1, 1)
    stride: Triple = (1, 1, 1)


def layers(schedule: str | PoolingSchedule) -> tuple[Layer, ...]:
    """The endpoints up to Logits, in order, with their kernels and strides."""
    s = get_schedule(schedule)
    return (
        Layer("Conv3d_1a_7x7", "conv", (7, 7, 7), s.conv1_stride),
        Layer("MaxPool3d_2a_3x3", "pool", s.pool_2a.window, s.pool_2a.stride),
        Layer("Conv3d_2b_1x1", "conv", (1, 1, 1)),
        Layer("Conv3d_2c_3x3", "conv", (3, 3, 3)),
        Layer("MaxPool3d_3a_3x3", "pool", s.pool_3a.window, s.pool_3a.stride),
        Layer("Mixed_3b", "inception", (3, 3, 3)),
        Layer("Mixed_3c", "inception", (3, 3, 3)),
        Layer("MaxPool3d_4a_3x3", "pool", s.pool_4a.window, s.pool_4a.stride),
        Layer("Mixed_4b", "inception", (3, 3, 3)),
        Layer("Mixed_4c", "inception", (3, 3, 3)),
        Layer("Mixed_4d", "inception", (3, 3, 3)),
        Layer("Mixed_4e", "inception", (3, 3, 3)),
        Layer("Mixed_4f", "inception", (3, 3, 3)),
        Layer("MaxPool3d_5a_2x2", "pool", s.pool_5a.window, s.pool_5a.stride),
        Layer("Mixed_5b", "inception", (3, 3, 3)),
        Layer("Mixed_5c", "inception", (3, 3, 3)),
        Layer("Logits", "logits", s.logits_pool, (1, 1, 1)),
    )


@dataclasses.dataclass(frozen=True)
class FieldRow:
    """Receptive field, cumulative stride (jump) and output size of one endpoint, as (T, H, W)."""

    endpoint: str
    receptive_field: Triple
    stride: Triple
    output_size: Triple


def receptive_fields(
    schedule: str | PoolingSchedule,
    input_size: Sequence[int] = (64, 224, 224),
    global_pool: bool = False,
) -> list[FieldRow]:
    """Per endpoint: receptive field and cumulative stride in input frames/pixels, output size.

    Convolutions and max-pools use TF "SAME" padding (output = ceil(input / stride)); the
    final average pool is VALID over `logits_pool` (or over all space when `global_pool`).
    The receptive field of an Inception block is that of its deepest path (a 3x3x3 conv or the
    3x3x3 max-pool followed by a 1x1x1 conv, which reach equally far).
    """
    rf = [1, 1, 1]
    jump = [1, 1, 1]
    size = [int(v) for v in input_size]
    rows = []
    for layer in layers(schedule):
        kernel = list(layer.kernel)
        if layer.kind == "logits":
            if global_pool:
                kernel = [kernel[0], size[1], size[2]]
            size = [n - k + 1 for n, k in zip(size, kernel, strict=True)]
        else:
            size = [math.ceil(n / s) for n, s in zip(size, layer.stride, strict=True)]
        rf = [r + (k - 1) * j for r, k, j in zip(rf, kernel, jump, strict=True)]
        jump = [j * s for j, s in zip(jump, layer.stride, strict=True)]
        rows.append(FieldRow(layer.name, tuple(rf), tuple(jump), tuple(size)))
    return rows


def min_frames(schedule: str | PoolingSchedule) -> int:
    """The shortest clip that yields at least one logits step under this schedule."""
    s = get_schedule(schedule)
    t_strides = [layer.stride[0] for layer in layers(s) if layer.kind != "logits"]
    # Smallest T whose ceil-divisions by every stride leave >= the logits pool's time window.
    need = s.logits_pool[0]
    for stride in reversed(t_strides):
        need = (need - 1) * stride + 1
    return need


def min_spatial(schedule: str | PoolingSchedule, global_pool: bool = False) -> int:
    """The smallest height/width that reaches Logits (1 with global pooling)."""
    s = get_schedule(schedule)
    need = 1 if global_pool else s.logits_pool[1]
    for layer in reversed(layers(s)[:-1]):
        need = (need - 1) * layer.stride[1] + 1
    return need


def format_table(rows: list[FieldRow], schedule: PoolingSchedule, input_size: Sequence[int]) -> str:
    head = (
        f"schedule {schedule.name!r} ({schedule.description}); input T x H x W = "
        f"{' x '.join(map(str, input_size))}; min frames {min_frames(schedule)}"
    )
    lines = [
        head,
        f"{'endpoint':<18} {'RF T':>5} {'RF H/W':>7} {'stride T':>9} {'stride H/W':>11} "
        f"{'out T x H x W':>15}",
    ]
    for r in rows:
        out = "x".join(map(str, r.output_size))
        lines.append(
            f"{r.endpoint:<18} {r.receptive_field[0]:>5} {r.receptive_field[1]:>7} "
            f"{r.stride[0]:>9} {r.stride[1]:>11} {out:>15}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from i3d_jax import cli

    parser = cli.ArgumentParser(prog="python -m i3d_jax.schedules", description=__doc__)
    parser.add_argument("--schedule", default="paper", choices=sorted(SCHEDULES),
                        help="pooling schedule")  # fmt: skip
    parser.add_argument("--frames", type=int, default=64, help="clip length")
    parser.add_argument("--size", type=int, nargs="+", default=[224], help="H [W]")
    parser.add_argument("--global_pool", action="store_true", help="logits pooled over any size")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    args = parser.parse_args(argv)
    schedule = get_schedule(args.schedule)
    h, w = (args.size * 2)[:2]
    input_size = (args.frames, h, w)
    if args.frames < min_frames(schedule):
        print(
            f"error: {args.frames} frames is too short for schedule {schedule.name!r}: "
            f"need at least {min_frames(schedule)}",
            file=sys.stderr,
        )
        return 2
    rows = receptive_fields(schedule, input_size, args.global_pool)
    if args.json:
        print(
            json.dumps(
                {
                    "schedule": dataclasses.asdict(schedule),
                    "input_size": list(input_size),
                    "min_frames": min_frames(schedule),
                    "endpoints": [dataclasses.asdict(r) for r in rows],
                }
            )
        )
    else:
        print(format_table(rows, schedule, input_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
