"""The optimised paths compute the same function as the plain model (random weights, inputs)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from i3d_jax import deploy, graph, model
from i3d_jax.model import space_to_depth
from i3d_jax.weights.common import random_variables


@pytest.mark.parametrize("size, stride", [((9, 20, 17), (2, 2, 2)), ((8, 15, 22), (1, 2, 2))])
def test_space_to_depth_conv_equals_strided_conv(size, stride):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, *size, 3)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(7, 7, 7, 3, 5)), jnp.float32)
    pads = [model.same_padding(n, 7, s) for n, s in zip(size, stride, strict=True)]
    dn = ("NDHWC", "DHWIO", "NDHWC")
    ref = jax.lax.conv_general_dilated(x, k, stride, pads, dimension_numbers=dn)
    xs, ks = space_to_depth(x, k, stride, pads)
    assert xs.shape[-1] == 3 * int(np.prod(stride))
    got = jax.lax.conv_general_dilated(xs, ks, (1, 1, 1), "VALID", dimension_numbers=dn)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)


def train_loss(params, net, variables, x):
    """Sum of squared logits with BatchNorm in training mode (batch statistics)."""
    out, _ = net.apply(
        {"params": params, "batch_stats": variables["batch_stats"]},
        x,
        train=True,
        mutable=["batch_stats"],
    )[0]
    return (out**2).sum()


def grads(net, variables, x):
    """Gradients of `train_loss` w.r.t. the params, compiled once (op-by-op is far slower)."""
    return jax.jit(lambda v, x: jax.grad(train_loss)(v["params"], net, v, x))(variables, x)


@pytest.fixture(scope="module")
def plain():
    net = model.tiny(bn_scale=True, graph="plain")
    x = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (2, 16, 40, 36, 3)), jnp.float32)
    variables = random_variables(net)
    return net, variables, x


def first_conv_input_shape(net, variables, x) -> tuple:
    """The shape the model's first convolution actually reads (proves an option took effect)."""
    jaxpr = jax.make_jaxpr(lambda x: net.apply(variables, x))(x)
    convs = [e for e in jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
    return tuple(convs[0].invars[0].aval.shape)


def pool_primitives(net, variables, x) -> set:
    """XLA's pooling primitives in the training gradient (proves the pool option took effect)."""
    text = str(jax.make_jaxpr(lambda v: grads(net, v, x))(variables))  # nested jaxprs included
    return {p for p in ("reduce_window_max", "select_and_scatter_add") if p in text}


# (graph, the first conv's input shape for x of [2, 16, 40, 36, 3])
FAST_GRAPHS = [
    ("s2d", (2, 11, 23, 21, 24)),
    ("t2c", (2 * 8, 40, 36, 21)),
    ("t2c1_s2d", (2 * 8, 23, 21, 84)),  # the GPU default
    ("t2c_taps", (2 * 8, 40, 36, 21)),  # the CPU default
]


@pytest.mark.parametrize("name, conv1_input", FAST_GRAPHS, ids=lambda v: str(v))
def test_fast_graphs_same_logits_and_grads(plain, plain_float64_grads, name, conv1_input):
    net, variables, x = plain
    fast = net.clone(graph=name)
    assert fast.graph == graph.NAMED[name]
    assert first_conv_input_shape(net, variables, x) == x.shape
    assert first_conv_input_shape(fast, variables, x) == conv1_input
    np.testing.assert_allclose(
        fast.apply(variables, x)[0], net.apply(variables, x)[0], rtol=1e-5, atol=1e-5
    )
    if name == "s2d":
        return  # space-to-depth alone: its gradients are checked in the combined case
    # Gradients in float64: batch-statistics BatchNorm on a narrow net amplifies fp32 rounding.
    with jax.enable_x64(True):
        g_fast = float64_grads(fast, variables, x)
        g_plain = plain_float64_grads

        def close(a, b):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * float(jnp.abs(b).max()))

        jax.tree.map(close, g_fast, g_plain)


def float64_grads(net, variables, x):
    """Training-mode gradients of `train_loss` in float64 (call inside `jax.enable_x64`)."""
    net = net.clone(dtype=jnp.float64, param_dtype=jnp.float64)
    variables = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
    return grads(net, variables, jnp.asarray(x, jnp.float64))


@pytest.fixture(scope="module")
def plain_float64_grads(plain):
    with jax.enable_x64(True):
        return float64_grads(*plain)


@pytest.mark.parametrize("size, stride", [((9, 20, 17, 4), 2), ((8, 7, 6, 5), 1)])
def test_time_to_channels_conv_equals_3d_conv(size, stride):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, *size)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(3, 3, 3, size[-1], 6)), jnp.float32)
    pads = [model.same_padding(n, 3, s) for n, s in zip(size[:3], (stride, 1, 1), strict=True)]
    dn = ("NDHWC", "DHWIO", "NDHWC")
    ref = jax.lax.conv_general_dilated(x, k, (stride, 1, 1), pads, dimension_numbers=dn)
    x2, k2 = model.time_to_channels(x, k, stride, pads[0])
    assert x2.shape == (2 * ref.shape[1], *size[1:3], 3 * size[-1])
    got = jax.lax.conv_general_dilated(
        x2, k2, (1, 1), pads[1:], dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    np.testing.assert_allclose(got.reshape(ref.shape), ref, rtol=1e-5, atol=1e-4)


def test_unknown_graph_options_are_rejected(plain):
    net, _, _ = plain
    with pytest.raises(ValueError, match="unknown graph 'some'"):
        net.clone(graph="some")
    with pytest.raises(ValueError, match="time_to_channels 'some'"):
        graph.Graph(time_to_channels="some")
    with pytest.raises(ValueError, match="pool 'some'"):
        graph.Graph(pool="some")


def test_taps_pool_option_replaces_xla_pool_gradient(plain):
    net, variables, x = plain
    assert pool_primitives(net, variables, x) == {"reduce_window_max", "select_and_scatter_add"}
    assert pool_primitives(net.clone(graph="t2c_taps"), variables, x) == set()


def test_remat_same_gradients(plain):
    net, variables, x = plain

    g1 = grads(net, variables, x)
    g2 = grads(net.clone(graph=net.graph.replace(remat=True)), variables, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g1, g2)


@pytest.mark.parametrize("fuse", [False, True])
def test_folded_and_fused_inference_same_logits(plain, fuse):
    net, variables, x = plain
    fast, fast_vars = deploy.to_inference(net, variables, fuse=fuse)
    assert "batch_stats" not in fast_vars
    if fuse:
        fused = fast_vars["params"]["Mixed_4b"]["Fused_1x1"]["conv_3d"]["kernel"]
        c = dict(net.channels)["Mixed_4b"]
        assert fused.shape[-1] == c[0] + c[1] + c[3]
    _, ref = net.apply(variables, x)
    _, got = fast.apply(fast_vars, x)
    for name in ("Mixed_3b", "Mixed_5c", "Logits"):
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-4, atol=1e-4, err_msg=name)


def test_auto_resolves_per_backend_from_the_measurement_table(plain):
    assert (
        graph.resolve("auto", "cpu")
        == graph.NAMED["t2c_taps_eigen"]
        == graph.NAMED[graph.FASTEST["cpu"].graph]
    )
    assert (
        graph.resolve("auto", "gpu")
        == graph.NAMED["t2c1_s2d_taps_train"]
        == graph.NAMED[graph.FASTEST["gpu"].graph]
    )
    assert graph.resolve("auto", "tpu") == graph.PORTABLE  # not measured there
    for measured in graph.FASTEST.values():
        assert measured.date and measured.device and measured.evidence
    # Resolved when the module is built (never while tracing), to this backend's choice.
    net, variables, x = plain
    auto = net.clone(graph="auto")
    assert jax.default_backend() == "cpu"
    assert auto.graph == model.InceptionI3d().graph == graph.NAMED["t2c_taps_eigen"]
    assert first_conv_input_shape(auto, variables, x) == (2 * 8, 40, 36, 21)


def test_model_cards_leave_the_graph_to_the_machine_that_loads_them():
    from i3d_jax.weights import common

    options = common.model_options(model.tiny(graph="plain"))
    assert "graph" not in options
    # A card written before `graph` existed still loads; the loader picks this backend's graph.
    legacy = {**options, "time_to_channels": "none", "remat": False, "fold_bn": False}
    rebuilt = common.model_from_options(legacy)
    assert rebuilt.graph == graph.resolve("auto") and rebuilt.num_classes == 10
