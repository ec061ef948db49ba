"""Export: StableHLO reload at several batch/time sizes, safetensors into cd-fvd's PyTorch I3D."""

import importlib.util
import json
import pathlib

import jax
import numpy as np
import pytest

from i3d_jax import model
from i3d_jax.weights import common, export, orbax_dir


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    net = model.tiny()
    variables = common.random_variables(net, seed=4)
    path = orbax_dir.save(variables, net, tmp_path_factory.mktemp("ckpt") / "tiny")
    return net, variables, path


def _logits(net, variables, x):
    return np.asarray(jax.jit(lambda v, x: net.apply(v, x)[1]["Logits"])(variables, x))


def test_stablehlo_reload_two_sizes(tiny_checkpoint, tmp_path):
    net, variables, ckpt = tiny_checkpoint
    out = tmp_path / "hlo"
    argv = [str(ckpt), "--format", "stablehlo", "--out", str(out), "--size", "32"]
    assert export.main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [export.CARD, export.PROGRAM, export.WEIGHTS]
    )
    card = json.loads((out / export.CARD).read_text())
    assert card["format"] == "i3d_jax.export/stablehlo" and card["model"]["num_classes"] == 10
    assert card["input"]["shape"] == "[B, 8*k, 32, 32, 3] (k >= 2)"

    fn = export.load_stablehlo(out)
    rng = np.random.default_rng(0)
    for b, t in [(1, 16), (3, 24)]:
        x = rng.uniform(-1, 1, (b, t, 32, 32, 3)).astype(np.float32)
        got, want = np.asarray(fn(x)), _logits(net, variables, x)
        assert got.shape == want.shape == (b, 10)
        assert np.abs(want).max() > 1e-2
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="multiple of 8.*got 20 frames"):
        fn(np.zeros((1, 20, 32, 32, 3), np.float32))
    # Finding 11: an 8-frame clip failed inside shape refinement; now the rule is the message.
    with pytest.raises(ValueError, match="at least 16 frames.*got 8 frames.*e.g. to 16"):
        fn(np.zeros((1, 8, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[B, 8\*k, 32, 32, 3\].*got \(1, 16, 48, 48, 3\)"):
        fn(np.zeros((1, 16, 48, 48, 3), np.float32))
    assert export.main(argv) == 2  # refuses to overwrite a non-empty --out, before any work


def test_stablehlo_baked_weights(tiny_checkpoint, tmp_path):
    net, variables, _ = tiny_checkpoint
    out = export.export_stablehlo(net, variables, tmp_path / "baked", "Conv3d_2c_3x3", 32, True)
    assert not (out / export.WEIGHTS).exists()
    x = np.random.default_rng(1).uniform(-1, 1, (2, 16, 32, 32, 3)).astype(np.float32)
    want = np.asarray(jax.jit(net.clone(final_endpoint="Conv3d_2c_3x3").apply)(variables, x)[0])
    got = np.asarray(export.load_stablehlo(out)(x))
    assert got.shape == want.shape == (2, 8, 8, 8, want.shape[-1])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_savedmodel_without_tensorflow(tiny_checkpoint, tmp_path, capsys):
    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("TensorFlow is installed")
    _, _, ckpt = tiny_checkpoint
    rc = export.main([str(ckpt), "--format", "savedmodel", "--out", str(tmp_path / "sm")])
    assert rc == 2
    assert "needs TensorFlow" in capsys.readouterr().err
    assert not (tmp_path / "sm").exists()


def test_safetensors_into_cdfvd_pytorch_i3d(tmp_path):
    torch = pytest.importorskip("torch")
    spec = importlib.util.find_spec("cdfvd")
    if spec is None:
        pytest.skip("cd-fvd is not installed")
    path = pathlib.Path(spec.origin).parent / "third_party" / "i3d" / "pytorch_i3d.py"
    mod_spec = importlib.util.spec_from_file_location("cdfvd_pytorch_i3d_export", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)

    net = model.InceptionI3d(num_classes=7)
    variables = common.random_variables(net, seed=5)
    out = export.export_safetensors(net, variables, tmp_path / "i3d.safetensors", "random")
    card = json.loads((tmp_path / "i3d.safetensors.model_card.json").read_text())
    assert card["format"] == "i3d_jax.export/safetensors" and card["model"]["bn_epsilon"] == 1e-3

    from safetensors.torch import load_file

    torch_net = module.InceptionI3d(num_classes=7, in_channels=3)
    for m in torch_net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.eps = card["model"]["bn_epsilon"]
    torch_net.load_state_dict(load_file(out), strict=True)
    torch_net.eval()
    # 10 x 200 x 200: about the smallest clip the release's 2x7x7 logits pool takes.
    x = np.random.default_rng(2).uniform(-1, 1, (1, 10, 200, 200, 3)).astype(np.float32)
    with torch.no_grad():
        theirs = torch_net(torch.from_numpy(x).permute(0, 4, 1, 2, 3)).numpy()
    ours = _logits(net, variables, x)
    assert theirs.shape == ours.shape == (1, 7)
    assert np.abs(ours).max() > 0.1
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-4 * np.abs(ours).max())
