"""Temporal heads over sequences of I3D window features (flax.linen).

Every head takes `features` float `[B, N, D]` (one row per window, e.g. the pooled `Mixed_5c`
features `python -m i3d_jax.extract_features` writes), `mask` bool `[B, N]` (True for real
windows; padding is at the end) and `times` float `[B, N]` (each window's centre in seconds), and
returns `(video_logits [B, K], window_logits [B, N, K])`, both float32. Video logits are the masked
mean of the window logits, so padding never changes a prediction, and a sequence's output never
depends on the other sequences of its batch (no BatchNorm).

- `MeanPool`: the paper's protocol: a linear classifier per window, logits averaged over time.
- `TemporalConv`: MS-TCN style stack of dilated residual 1D convolutions (dilation 1, 2, 4, ...).
- `TransformerEncoder`: pre-norm encoder with masked self-attention; positions are sinusoids of
  the time in seconds (`time_encoding`), so features extracted at another stride line up.
- `LSTMHead`: a (bidirectional) LSTM that stops at each sequence's length.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

HEADS: dict[str, Any] = {}  # name -> module class (filled below)


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean over axis 1 of `x [B, N, ...]` where `mask [B, N]`; zeros for an empty sequence."""
    m = mask.astype(x.dtype).reshape(*mask.shape, *(1,) * (x.ndim - 2))
    return (x * m).sum(1) / jnp.maximum(m.sum(1), 1.0)


def time_encoding(
    times: jax.Array, dim: int, min_period: float = 0.5, max_period: float = 1000.0
) -> jax.Array:
    """Sinusoids of the time in seconds: `[..., dim]` (sin then cos of `dim // 2` periods, from
    `min_period` to `max_period` seconds, geometric). A function of the time only, not the index."""
    half = dim // 2
    periods = min_period * (max_period / min_period) ** (jnp.arange(half) / max(half - 1, 1))
    angle = 2.0 * math.pi * times[..., None].astype(jnp.float32) / periods
    enc = jnp.concatenate([jnp.sin(angle), jnp.cos(angle)], -1)
    return jnp.pad(enc, [(0, 0)] * (enc.ndim - 1) + [(0, dim - 2 * half)])


def _finish(window_logits: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    window_logits = window_logits.astype(jnp.float32)
    return masked_mean(window_logits, mask), window_logits


class MeanPool(nn.Module):
    """The paper's video prediction: per-window logits (one Dense), averaged over the windows."""

    num_classes: int
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, features, mask, times, train: bool = False):
        del times
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(features)
        return _finish(nn.Dense(self.num_classes, name="Logits")(x), mask)


class TemporalConv(nn.Module):
    """Dilated residual temporal convolutions (MS-TCN's single stage), masked after every layer:
    padded windows are zeros, exactly what an unpadded sequence's SAME padding sees."""

    num_classes: int
    hidden: int = 64
    num_layers: int = 4
    kernel_size: int = 3
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, features, mask, times, train: bool = False):
        del times
        m = mask[..., None].astype(features.dtype)
        h = nn.Dense(self.hidden, name="Input")(features) * m
        for i in range(self.num_layers):
            d = 2**i
            y = nn.Conv(self.hidden, (self.kernel_size,), kernel_dilation=(d,), padding="SAME",
                        name=f"Dilated_{i}")(h)  # fmt: skip
            y = nn.Conv(self.hidden, (1,), name=f"Pointwise_{i}")(nn.relu(y))
            y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
            h = (h + y) * m
        return _finish(nn.Dense(self.num_classes, name="Logits")(h), mask)


class _EncoderLayer(nn.Module):
    dim: int
    num_heads: int
    mlp_dim: int
    dropout_rate: float

    @nn.compact
    def __call__(self, h, attn_mask, train: bool):
        drop = nn.Dropout(self.dropout_rate, deterministic=not train)
        y = nn.MultiHeadDotProductAttention(self.num_heads, name="Attention")(
            nn.LayerNorm(name="Norm_1")(h), mask=attn_mask
        )
        h = h + drop(y)
        y = nn.Dense(self.mlp_dim, name="Mlp_1")(nn.LayerNorm(name="Norm_2")(h))
        y = nn.Dense(self.dim, name="Mlp_2")(nn.gelu(y))
        return h + drop(y)


class TransformerEncoder(nn.Module):
    """A small pre-norm transformer; keys of padded windows are masked out of every attention."""

    num_classes: int
    hidden: int = 64  # the model width
    num_layers: int = 2
    num_heads: int = 4
    mlp_dim: int = 128
    dropout_rate: float = 0.0
    min_period: float = 0.5  # seconds (time_encoding)
    max_period: float = 1000.0

    @nn.compact
    def __call__(self, features, mask, times, train: bool = False):
        h = nn.Dense(self.hidden, name="Input")(features)
        h = h + time_encoding(times, self.hidden, self.min_period, self.max_period)
        h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
        # Every query (padded ones too, whose rows are discarded) attends to real keys only.
        b, n = mask.shape
        attn_mask = jnp.broadcast_to(mask[:, None, None, :], (b, 1, n, n))
        for i in range(self.num_layers):
            layer = _EncoderLayer(dim=self.hidden, num_heads=self.num_heads, mlp_dim=self.mlp_dim,
                                  dropout_rate=self.dropout_rate, name=f"Layer_{i}")  # fmt: skip
            h = layer(h, attn_mask, train)
        h = nn.LayerNorm(name="Norm")(h)
        return _finish(nn.Dense(self.num_classes, name="Logits")(h), mask)


class LSTMHead(nn.Module):
    """An LSTM over the windows (both directions when `bidirectional`); each sequence stops at its
    length `mask.sum(1)` (the mask must be a prefix: real windows first, padding after)."""

    num_classes: int
    hidden: int = 64
    bidirectional: bool = True
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, features, mask, times, train: bool = False):
        del times
        lengths = mask.sum(1).astype(jnp.int32)
        fwd = nn.RNN(nn.OptimizedLSTMCell(self.hidden), name="Forward")
        if self.bidirectional:
            bwd = nn.RNN(nn.OptimizedLSTMCell(self.hidden), name="Backward")
            h = nn.Bidirectional(fwd, bwd)(features, seq_lengths=lengths)
        else:
            h = fwd(features, seq_lengths=lengths)
        h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
        return _finish(nn.Dense(self.num_classes, name="Logits")(h), mask)


HEADS.update(mean=MeanPool, tcn=TemporalConv, transformer=TransformerEncoder, lstm=LSTMHead)


def build_head(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """The head `name` (a key of `HEADS`) with its own keyword arguments (unknown ones refused)."""
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; expected one of {sorted(HEADS)}")
    cls = HEADS[name]
    fields = set(cls.__dataclass_fields__) - {"parent", "name", "num_classes"}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise ValueError(f"head {name!r} has no option {unknown}; its options: {sorted(fields)}")
    return cls(num_classes=num_classes, **kwargs)
