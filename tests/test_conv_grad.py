"""The `cpu_convs` graph option: convolutions on Eigen compute what YNNPACK and plain convs do."""

import json
import pathlib
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from i3d_jax import graph
from i3d_jax.conv import Conv
from i3d_jax.model import same_padding

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from benchmarks import interleaved  # noqa: E402

EIGEN = graph.NAMED["t2c_taps_eigen"]

# Every (kernel, stride) of the network's convolutions, on small inputs: Conv3d_1a_7x7, the
# 1x1x1 convs (Conv3d_2b, the Inception branches, Logits with a bias) and the 3x3x3 convs.
# 24 output channels: XLA:CPU hands a convolution to YNNPACK only above 16 channels.
SHAPES = [
    ((7, 7, 7), (2, 2, 2), (1, 10, 17, 16, 3), False),
    ((1, 1, 1), (1, 1, 1), (2, 4, 6, 5, 20), True),
    ((3, 3, 3), (1, 1, 1), (1, 5, 9, 8, 20), False),
]


def conv_fn(kernel_size, strides, size, use_bias, t2c: bool):
    """`(params, x) -> sum of the output times a fixed weighting` for `Conv`, and its params."""
    pads = [same_padding(n, k, s) for n, k, s in zip(size[1:4], kernel_size, strides, strict=True)]
    conv = Conv(24, kernel_size, strides, pads, use_bias=use_bias, time_to_channels=t2c)
    conv = conv.clone(dtype=jnp.float64, param_dtype=jnp.float64)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=size), jnp.float64)
    params = conv.init(jax.random.key(0), x)["params"]
    params = jax.tree.map(lambda a: a + jnp.asarray(rng.normal(size=a.shape)), params)
    out_shape = jax.eval_shape(lambda p: conv.apply({"params": p}, x), params).shape
    weight = jnp.asarray(rng.normal(size=out_shape), jnp.float64)

    def f(p, x):
        y = conv.apply({"params": p}, x)
        return (y * weight).sum(), y

    return f, params, x, pads, weight


def ynnpack_convolutions(hlo: str) -> int:
    """How many convolutions of a compiled program run inside YNNPACK fusions."""
    called = re.findall(r'calls=%([\w.\-]+).*"kind":"__ynn_fusion"', hlo)
    bodies = re.split(r"\n(?=%|ENTRY )", hlo)
    return sum(
        body.count(" convolution(")
        for body in bodies
        for name in called
        if body.startswith(f"%{name} ")
    )


def compiled(f, params, x, options):
    """Value, output and gradients (params and input) of `f`, jitted with compiler `options`."""
    grad = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)
    return jax.jit(grad).lower(params, x).compile(compiler_options=options or None)


@pytest.mark.parametrize("kernel_size, strides, size, use_bias", SHAPES, ids=str)
def test_eigen_convs_equal_plain_convs_in_float64(kernel_size, strides, size, use_bias):
    """Values and gradients (weights, bias, input) of the time-taps 2D conv as the CPU default
    compiles it equal the plain 3D conv's. (XLA:CPU's YNNPACK takes 2D convs only, and a 1x1x1
    conv stays 3D, where it runs as a dot: the option changes nothing there.)"""
    with jax.enable_x64(True):
        f, params, x, pads, weight = conv_fn(kernel_size, strides, size, use_bias, t2c=True)
        options = EIGEN.compiler_options(train=True, backend="cpu")
        assert options == graph.EIGEN_CONVS  # this jaxlib accepts the option
        eigen, default = compiled(f, params, x, options), compiled(f, params, x, {})
        if kernel_size[0] > 1:  # forward and weight gradient at least: YNNPACK's by default
            assert ynnpack_convolutions(default.as_text()) >= 2
        assert ynnpack_convolutions(eigen.as_text()) == 0
        (value, y), (g_params, g_x) = eigen(params, x)

        def plain(p, x):  # `lax.conv_general_dilated` on the 3D input, as the release computes
            dn = ("NDHWC", "DHWIO", "NDHWC")
            y = jax.lax.conv_general_dilated(x, p["kernel"], strides, pads, dimension_numbers=dn)
            y = y + p["bias"] if use_bias else y
            return (y * weight).sum(), y

        ref = jax.jit(jax.value_and_grad(plain, argnums=(0, 1), has_aux=True))
        (ref_value, ref_y), (ref_g_params, ref_g_x) = ref(params, x)
        np.testing.assert_allclose(y, ref_y, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(value, ref_value, rtol=1e-10)
        for name in g_params:
            np.testing.assert_allclose(g_params[name], ref_g_params[name], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(g_x, ref_g_x, rtol=1e-9, atol=1e-9)
        # The same program on XLA's default libraries gives the same numbers.
        (d_value, _), (d_params, d_x) = default(params, x)
        np.testing.assert_allclose(d_value, value, rtol=1e-10)
        np.testing.assert_allclose(d_params["kernel"], g_params["kernel"], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(d_x, g_x, rtol=1e-9, atol=1e-9)


def test_compiler_options_per_graph_mode_and_backend():
    train = graph.NAMED["t2c_taps_eigen_train"]
    assert train.compiler_options(train=True, backend="cpu") == graph.EIGEN_CONVS
    assert train.compiler_options(train=False, backend="cpu") == {}
    assert EIGEN.compiler_options(train=False, backend="cpu") == graph.EIGEN_CONVS
    assert EIGEN.compiler_options(train=True, backend="gpu") == {}
    assert graph.NAMED["t2c_taps"].compiler_options(train=True, backend="cpu") == {}
    # The same network as t2c_taps: only how XLA:CPU runs it differs.
    assert EIGEN.replace(cpu_convs="ynnpack") == graph.NAMED["t2c_taps"]
    with pytest.raises(ValueError, match="unknown cpu_convs 'onednn'"):
        graph.Graph(cpu_convs="onednn")


def test_auto_on_cpu_is_the_measured_fastest():
    measured = graph.FASTEST["cpu"]
    assert graph.resolve("auto", "cpu") == graph.NAMED[measured.graph]
    assert measured.graph == "t2c_taps_eigen"
    assert measured.date == "2026-11-27" and "PyTorch" in measured.evidence
    auto = graph.resolve("auto", "cpu")
    for train in (True, False):  # measured faster in training and in inference
        assert auto.compiler_options(train=train, backend="cpu") == graph.EIGEN_CONVS


def test_interleaved_benchmark_times_each_variant_with_its_options(capsys):
    """Inference only (its compile is the cheaper one); the training path ran in BENCHMARKS.md."""
    argv = "--preset tiny --frames 9 --size 32 --batch 1 --modes inference --repeats 2 --warmup 0"
    assert interleaved.main([*argv.split(), "--variants", "t2c_taps_eigen"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (row,) = result["results"]
    assert row["impl"] == "i3d_jax t2c_taps_eigen" and row["mode"] == "inference"
    assert len(row["all_ms"]) == 2 and row["clips_per_second"] > 0
    with pytest.raises(SystemExit):
        interleaved.main([*argv.split(), "--variants", "t2c_fast"])
    assert "unknown variant 't2c_fast'" in capsys.readouterr().err


def test_training_and_the_tools_compile_with_the_graphs_options(monkeypatch):
    from i3d_jax import extract_features, model
    from i3d_jax.training import loop, steps
    from i3d_jax.weights.common import random_variables

    assert graph.jit_options(model.tiny(graph="t2c_taps_eigen"), train=True) == graph.EIGEN_CONVS
    assert graph.jit_options(model.tiny(graph="t2c_taps"), train=False) is None
    assert graph.jit_options(object(), train=True) is None  # a model without a graph: defaults
    # A tool's compiled network runs no convolution on YNNPACK with the default CPU graph.
    net = model.tiny(graph="auto")
    x = jnp.zeros((1, 16, 32, 32, 3))
    apply = extract_features.make_apply(net, "Mixed_5c", pooled=True)
    assert ynnpack_convolutions(apply.lower(random_variables(net), x).compile().as_text()) == 0
    # The loop hands the options of its model's graph to the train step it compiles.
    seen = []
    monkeypatch.setattr(
        graph, "jit_options", lambda m, train: {"model": type(m).__name__, "train": train}
    )
    monkeypatch.setattr(
        steps, "make_train_step", lambda *a, **k: seen.append(k["compiler_options"])
    )
    from multihost_worker import micro_config

    loop.setup(micro_config(**{"model.num_classes": 6}))  # the default dataset's 6 classes
    assert seen == [{"model": "Micro", "train": True}]
