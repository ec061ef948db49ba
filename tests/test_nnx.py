"""The NNX module (`i3d_jax.nnx`): the linen model's logits and endpoints from every kind of
source, and an `nnx.Optimizer` fine-tuning step that lowers the loss and updates BatchNorm."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from i3d_jax import model
from i3d_jax import nnx as i3d_nnx
from i3d_jax.weights import KINETICS400, common, load_pretrained, orbax_dir, piergiaj


def linen_endpoints(net, variables, x):
    return jax.jit(lambda v, x: net.apply(v, x)[1])(variables, x)


def nnx_endpoints(module, x):
    return nnx.jit(lambda m, x: m(x)[1])(module, x)


def assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(want[k]), err_msg=k)


def clip(shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


@pytest.fixture(scope="module")
def tiny():
    net = model.tiny()
    return net, common.random_variables(net, seed=3)


def test_from_linen_and_back(tiny):
    net, variables = tiny
    module = i3d_nnx.from_linen(net, variables)
    assert isinstance(module, nnx.Module) and module.model is net
    x = clip((2, 16, 32, 32, 3))
    want = linen_endpoints(net, variables, x)
    assert np.abs(np.asarray(want["Logits"])).max() > 0.1
    assert "Mixed_5c" in want and want["Logits"].shape == (2, 10)
    assert_same(nnx_endpoints(module, x), want)
    # Parameters are nnx.Param, statistics nnx.BatchStat; to_linen gives the same tree back.
    n_params = sum(a.size for a in jax.tree.leaves(variables["params"]))
    assert sum(a.size for a in jax.tree.leaves(nnx.state(module, nnx.Param))) == n_params
    _, back = i3d_nnx.to_linen(module)
    assert jax.tree.structure(back) == jax.tree.structure(dict(variables))
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(dict(variables)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_load_pretrained_from_a_converted_directory_and_a_state_dict(tiny, tmp_path):
    net, variables = tiny
    x = clip((1, 16, 32, 32, 3), seed=1)
    ckpt = orbax_dir.save(variables, net, tmp_path / "tiny")
    st = tmp_path / "tiny.safetensors"
    piergiaj.save_safetensors(variables, st)
    for source, overrides in ((ckpt, {}), (st, {"global_pool": True})):
        linen_net, linen_vars = load_pretrained(source, **overrides)
        module = i3d_nnx.load_pretrained(source, **overrides)
        assert module.model == linen_net
        assert_same(nnx_endpoints(module, x), linen_endpoints(linen_net, linen_vars, x))


def test_load_pretrained_kinetics400():
    """The released weights (full width), on a small clip: global pooling set as an override."""
    linen_net, linen_vars = load_pretrained(KINETICS400, global_pool=True)
    module = i3d_nnx.load_pretrained(KINETICS400, global_pool=True)
    assert module.model.num_classes == 400
    x = clip((1, 16, 64, 64, 3), seed=2)
    got, want = nnx_endpoints(module, x), linen_endpoints(linen_net, linen_vars, x)
    assert np.abs(np.asarray(want["Logits"])).max() > 1.0
    assert_same(got, want)


def test_an_nnx_optimizer_step_fine_tunes(tiny):
    net, variables = tiny
    x = jnp.asarray(clip((4, 16, 32, 32, 3), seed=5))
    y = jnp.array([0, 1, 2, 3])
    module = i3d_nnx.from_linen(net, variables)
    optimizer = nnx.Optimizer(module, optax.sgd(0.05, momentum=0.9), wrt=nnx.Param)

    def loss_fn(m):
        logits, _ = m(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @nnx.jit
    def step(m, opt):
        loss, grads = nnx.value_and_grad(loss_fn)(m)
        opt.update(m, grads)
        return loss

    # The linen model's first training-mode loss and BatchNorm statistics, for comparison.
    @jax.jit
    def linen_step(v):
        (logits, _), stats = net.apply(v, x, train=True, mutable=["batch_stats"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), stats

    linen_loss, linen_stats = linen_step(variables)
    module.train()
    losses = [float(step(module, optimizer))]
    _, one_step = i3d_nnx.to_linen(module)
    losses += [float(step(module, optimizer)) for _ in range(3)]
    module.eval()
    assert abs(losses[0] - float(linen_loss)) < 1e-5
    assert losses[-1] < losses[0] - 0.1, losses
    # One step updated every BatchNorm's statistics as linen's training mode does.
    for a, b in zip(jax.tree.leaves(one_step["batch_stats"]),
                    jax.tree.leaves(linen_stats["batch_stats"]), strict=True):  # fmt: skip
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    moved = np.asarray(one_step["batch_stats"]["Conv3d_1a_7x7"]["batch_norm"]["mean"])
    before = np.asarray(variables["batch_stats"]["Conv3d_1a_7x7"]["batch_norm"]["mean"])
    assert np.abs(moved - before).max() > 1e-5
    # The tuned module in inference mode is the linen model with the tuned variables.
    _, tuned = i3d_nnx.to_linen(module)
    got, want = nnx_endpoints(module, x), linen_endpoints(net, tuned, x)
    np.testing.assert_allclose(got["Logits"], want["Logits"], rtol=1e-5, atol=1e-5)
