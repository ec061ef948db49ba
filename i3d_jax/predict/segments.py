"""Exact whole-video inference in bounded memory: the frames each pass reads, the steps it keeps.

One pass of I3D over a whole video of T frames gives `Logits_per_time` steps on a grid of the
network's temporal stride J. A pass over frames [s, e) gives the same values for the steps whose
receptive field lies inside [s, e) (or reaches past the video's own ends, padded alike) when
1. s is a multiple of J (the grids coincide), and
2. e - s = T (mod J): TF SAME pads each strided layer by an amount that depends on its input
   length modulo its stride, so the lengths must agree there for the padding to agree.
`plan` cuts the video into cores of `chunk` frames (rounded to J), each read with the margins the
receptive field needs on either side (`i3d_jax.schedules`), every pass of one length L, so that
the concatenated kept steps equal the one pass to float tolerance at any chunk size.
"""

from __future__ import annotations

import dataclasses
import math

from i3d_jax import schedules


@dataclasses.dataclass(frozen=True)
class Segment:
    """A pass over frames [start, end) keeping global output steps [keep_from, keep_to)."""

    start: int
    end: int
    keep_from: int
    keep_to: int


@dataclasses.dataclass(frozen=True)
class TimeGeometry:
    """The network's temporal geometry for an input of `frames` frames."""

    stride: int  # J: frames per output step
    receptive_field: int  # frames one output step sees
    offset: int  # output step t sees frames [t*J - offset, t*J - offset + receptive_field)
    steps: int  # output steps of a pass over all `frames`


def geometry(schedule, frames: int) -> TimeGeometry:
    """Stride, receptive field, left offset and output steps of the time axis (TF SAME)."""
    layers = schedules.layers(schedule)
    n, jump, offset, rf = frames, 1, 0, 1
    for layer in layers[:-1]:
        k, s = layer.kernel[0], layer.stride[0]
        out = math.ceil(n / s)
        offset += (max((out - 1) * s + k - n, 0) // 2) * jump
        rf += (k - 1) * jump
        jump *= s
        n = out
    pool = layers[-1].kernel[0]  # the logits' average pool: VALID, stride 1
    return TimeGeometry(jump, rf + (pool - 1) * jump, offset, max(n - pool + 1, 0))


def pass_length(schedule, frames: int, chunk: int) -> int:
    """L: the frames of every pass over a video of `frames` frames (or `frames` if fewer)."""
    g = geometry(schedule, frames)
    core, left, right = _core_and_margins(g, chunk)
    length = core + left + right
    length += (frames - length) % g.stride
    return min(length, frames)


def plan(schedule, frames: int, chunk: int) -> list[Segment]:
    """The passes over a video of `frames` frames, cores of about `chunk` frames, in order."""
    g = geometry(schedule, frames)
    length = pass_length(schedule, frames, chunk)
    if length >= frames:
        return [Segment(0, frames, 0, g.steps)]
    core, left, _ = _core_and_margins(g, chunk)
    out = []
    for c0 in range(0, g.steps * g.stride, core):
        start = min(max(c0 - left, 0), frames - length)
        keep_from, keep_to = c0 // g.stride, min((c0 + core) // g.stride, g.steps)
        out.append(Segment(start, start + length, keep_from, keep_to))
    return out


def _core_and_margins(g: TimeGeometry, chunk: int) -> tuple[int, int, int]:
    """Core frames per pass (a multiple of J) and the left/right margins (multiples of J)."""
    j = g.stride
    core = max(j, chunk // j * j)
    left = -(-g.offset // j) * j
    # The last kept step of a core ending at c1 is (c1 - J) / J; it reads up to
    # c1 - J - offset + receptive_field.
    right = -(-max(g.receptive_field - g.offset - j, 0) // j) * j
    return core, left, right
