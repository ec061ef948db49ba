"""InceptionI3d: the release's size and names, shapes per endpoint, options, input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from i3d_jax import model, schedules


def run(net, variables, x, **kwargs):
    """`net.apply` compiled once (op-by-op, the tiny network costs a compile per operation)."""
    return jax.jit(lambda v, x: net.apply(v, x, **kwargs))(variables, x)


@pytest.fixture(scope="module")
def tiny_and_vars():
    net = model.tiny()
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 20, 40, 48, 3)), jnp.float32)
    variables = jax.jit(net.init)(jax.random.key(0), x)
    return net, variables, x


def test_release_parameter_count_and_names():
    net = model.InceptionI3d()
    shapes = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, 16, 224, 224, 3)))
    params = traverse_util.flatten_dict(shapes["params"], sep="/")
    assert sum(int(np.prod(v.shape)) for v in params.values()) == 12_689_984
    assert params["Conv3d_1a_7x7/conv_3d/kernel"].shape == (7, 7, 7, 3, 64)
    assert params["Mixed_5c/Branch_1/Conv3d_0b_3x3/conv_3d/kernel"].shape == (3, 3, 3, 192, 384)
    assert params["Logits/Conv3d_0c_1x1/conv_3d/kernel"].shape == (1, 1, 1, 1024, 400)
    assert "Conv3d_1a_7x7/batch_norm/scale" not in params  # the release has no BN scale
    stats = traverse_util.flatten_dict(shapes["batch_stats"], sep="/")
    assert stats["Mixed_3b/Branch_3/Conv3d_0b_1x1/batch_norm/var"].shape == (32,)


def test_endpoint_shapes_follow_the_schedule(tiny_and_vars):
    net, variables, x = tiny_and_vars
    out, ends = run(net, variables, x)
    expected = schedules.receptive_fields("paper", x.shape[1:4], global_pool=True)
    for row in expected[:-1]:
        assert ends[row.endpoint].shape[1:4] == row.output_size, row.endpoint
    assert out.shape == (2, 10)
    assert ends["Logits_per_time"].shape == (2, 2, 10)
    np.testing.assert_allclose(ends["Logits"], ends["Logits_per_time"].mean(1), rtol=1e-6)
    probs, ends = run(net.clone(final_endpoint="Predictions"), variables, x)
    np.testing.assert_allclose(probs, jax.nn.softmax(ends["Logits"]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(probs).sum(-1), np.ones(2), rtol=1e-6)


def test_final_endpoint_stops_early(tiny_and_vars):
    net, variables, x = tiny_and_vars
    early = net.clone(final_endpoint="Mixed_4b")
    out, ends = run(early, variables, x)
    assert list(ends)[-1] == "Mixed_4b" and out.shape == ends["Mixed_4b"].shape
    _, full = run(net, variables, x)
    np.testing.assert_array_equal(out, full["Mixed_4b"])


def test_dropout_is_a_rate_and_only_in_training(tiny_and_vars):
    net, variables, x = tiny_and_vars
    dropped = net.clone(dropout_rate=0.5)
    eval_out = run(dropped, variables, x)[1]["Logits"]
    np.testing.assert_allclose(eval_out, run(net, variables, x)[1]["Logits"], rtol=1e-6)
    (_, ends), _ = run(
        dropped,
        variables,
        x,
        train=True,
        rngs={"dropout": jax.random.key(1)},
        mutable=["batch_stats"],
    )
    (_, ends_nodrop), _ = run(net, variables, x, train=True, mutable=["batch_stats"])
    assert not np.allclose(ends["Logits"], ends_nodrop["Logits"])


def test_train_mode_updates_batch_stats_with_release_momentum(tiny_and_vars):
    net, variables, x = tiny_and_vars
    _, new = run(net, variables, x, train=True, mutable=["batch_stats"])
    old_mean = variables["batch_stats"]["Conv3d_1a_7x7"]["batch_norm"]["mean"]
    new_mean = new["batch_stats"]["Conv3d_1a_7x7"]["batch_norm"]["mean"]
    conv1 = net.clone(final_endpoint="Conv3d_1a_7x7")
    # Batch mean of the conv output before BN: recover it from the update rule.
    batch_mean = (new_mean - 0.999 * old_mean) / 0.001
    pre_bn = jax.lax.conv_general_dilated(
        x,
        variables["params"]["Conv3d_1a_7x7"]["conv_3d"]["kernel"],
        (2, 2, 2),
        [model.same_padding(n, 7, 2) for n in x.shape[1:4]],
        dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
    )
    np.testing.assert_allclose(batch_mean, pre_bn.mean((0, 1, 2, 3)), rtol=1e-3, atol=1e-5)
    assert conv1 is not None


def test_bf16_compute_keeps_float32_params_and_logits(tiny_and_vars):
    net, variables, x = tiny_and_vars
    half = net.clone(dtype=jnp.bfloat16)
    out, ends = run(half, variables, x)
    assert ends["Mixed_5c"].dtype == jnp.bfloat16
    assert ends["Logits"].dtype == jnp.float32
    full = run(net, variables, x)[1]["Logits"]
    np.testing.assert_allclose(ends["Logits"], full, atol=0.1)


def test_any_spatial_size_with_global_pool():
    net = model.tiny(num_classes=3)
    x = jnp.zeros((1, 9, 33, 70, 3))
    variables = jax.jit(net.init)(jax.random.key(0), x)
    assert run(net, variables, x)[0].shape == (1, 3)


def test_release_head_is_fully_convolutional_in_space():
    net = model.InceptionI3d(channels=model.tiny().channels, num_classes=3)
    x = jnp.zeros((1, 9, 256, 224, 3))
    variables = jax.eval_shape(net.init, jax.random.key(0), x)
    assert variables["params"]["Logits"]["Conv3d_0c_1x1"]["conv_3d"]["kernel"].shape[-1] == 3
    out = jax.eval_shape(net.apply, variables, x)[0]
    assert out.shape == (1, 3)


@pytest.mark.parametrize(
    "shape, message",
    [
        (
            (1, 8, 224, 224, 3),
            "8 frames is too short for pooling schedule 'paper': need at least 9",
        ),
        ((1, 16, 224, 224, 2), r"expected 3 input channels \[B, T, H, W, C\], got shape"),
        ((16, 224, 224, 3), r"expected input of rank 5 \[B, T, H, W, C\]"),
        ((1, 16, 160, 224, 3), "too small for the 7x7 logits pool: need at least 193"),
    ],
)
def test_bad_inputs_raise_with_the_expected_shape(shape, message):
    net = model.InceptionI3d(channels=model.tiny().channels)
    with pytest.raises(ValueError, match=message):
        jax.eval_shape(net.init, jax.random.key(0), jnp.zeros(shape))


def test_schedule_changes_temporal_size():
    x = jnp.zeros((1, 40, 32, 32, 3))
    for name in schedules.SCHEDULES:
        net = model.tiny(schedule=name)
        variables = jax.eval_shape(net.init, jax.random.key(0), x)
        ends = jax.eval_shape(net.apply, variables, x)[1]
        rows = schedules.receptive_fields(name, (40, 32, 32), global_pool=True)
        assert ends["Mixed_5c"].shape[1] == rows[-2].output_size[0], name
