"""`python -m i3d_jax.convert`: safetensors (piergiaj layout) and Orbax + model card, round trips."""

import json
import subprocess
import sys

import numpy as np
import pytest
from flax import traverse_util

import i3d_jax
from i3d_jax.weights import common, convert, load_pretrained, orbax_dir, piergiaj


def assert_same_tree(a, b):
    fa, fb = (traverse_util.flatten_dict(dict(t), sep="/") for t in (a, b))
    assert sorted(fa) == sorted(fb)
    for k in fa:
        assert np.asarray(fb[k]).dtype == np.asarray(fa[k]).dtype, k
        np.testing.assert_array_equal(np.asarray(fb[k]), np.asarray(fa[k]), err_msg=k)


@pytest.fixture()
def source(tmp_path):
    """A tiny flow model (2 channels, no BN scale, 10 classes) as a piergiaj .safetensors file."""
    model = i3d_jax.tiny(input_channels=2)
    variables = common.random_variables(model, seed=7)
    path = tmp_path / "src.safetensors"
    piergiaj.save_safetensors(variables, path)
    return model, variables, path


def test_convert_to_safetensors_round_trip(source, tmp_path):
    model, variables, src = source
    dest = tmp_path / "out.safetensors"
    assert convert.main([str(src), str(dest), "--bn_epsilon", "1e-5"]) == 0
    a, b = piergiaj.read_safetensors(src), piergiaj.read_safetensors(dest)
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
    assert np.all(b["Mixed_5c.b2b.bn.weight"] == 1.0)  # bn_scale=False is written as ones
    assert b["Mixed_5c.b2b.bn.num_batches_tracked"] == 0
    from safetensors import safe_open

    with safe_open(dest, "np") as f:
        meta = f.metadata()
    assert meta["num_classes"] == "10" and meta["input_channels"] == "2"
    assert float(meta["bn_epsilon"]) == 1e-5
    model2, got = load_pretrained(dest)
    assert (model2.num_classes, model2.input_channels, model2.bn_scale) == (10, 2, False)
    assert_same_tree(variables, got)


def test_convert_to_orbax_dir_round_trip(source, tmp_path):
    model, variables, src = source
    labels = tmp_path / "ten_labels.txt"
    labels.write_text("\n".join(f"class {i}" for i in range(10)) + "\n")
    dest = tmp_path / "export"
    assert convert.main([str(src), str(dest), "--labels", str(labels), "--bn_epsilon", "1e-5"]) == 0
    card = json.loads((dest / "model_card.json").read_text())
    assert card["format"] == orbax_dir.FORMAT and card["source"] == str(src)
    m = card["model"]
    assert (m["num_classes"], m["input_channels"], m["bn_scale"]) == (10, 2, False)
    assert m["bn_epsilon"] == 1e-5 and m["schedule"] == "paper"
    assert m["channels"]["Mixed_4b"] == list(dict(model.channels)["Mixed_4b"])
    assert card["preprocessing"]["fps"] == 25
    assert card["preprocessing"]["resize_smaller_side"] == 256
    assert card["preprocessing"]["center_crop"] == 224
    assert card["preprocessing"]["rgb_range"] == [-1.0, 1.0]
    assert card["labels"] == {
        "name": "ten_labels",
        "path": str(labels),
        "num_labels": 10,
        "names": [f"class {i}" for i in range(10)],
    }
    model2, got = load_pretrained(dest)
    assert model2 == model.clone(global_pool=False, bn_epsilon=1e-5)
    assert_same_tree(variables, got)
    # Overrides apply on top of the card; a second export of the directory is identical.
    model3, got3 = load_pretrained(dest, global_pool=True)
    assert model3 == model.clone(bn_epsilon=1e-5)
    again = tmp_path / "again"
    convert.convert(str(dest), str(again))
    assert_same_tree(got, load_pretrained(again)[1])


def test_convert_refuses_non_empty_dest_and_bad_labels(source, tmp_path, capsys):
    _, _, src = source
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    assert convert.main([str(src), str(dest)]) == 2  # bad input, found before work
    assert "exists and is not an empty directory" in capsys.readouterr().err
    assert sorted(p.name for p in dest.iterdir()) == ["keep.txt"]
    labels = tmp_path / "three.txt"
    labels.write_text("a\nb\nc\n")
    assert convert.main([str(src), str(tmp_path / "new"), "--labels", str(labels)]) == 2
    assert "has 3 names, but the model has 10 classes" in capsys.readouterr().err
    assert convert.main([str(src), str(tmp_path / "new"), "--labels", "kinetics400"]) == 2
    assert "kinetics400 has 400 names" in capsys.readouterr().err  # a shipped list, by name
    assert not (tmp_path / "new").exists()


def test_orbax_dir_card_mismatch_is_reported(source, tmp_path):
    model, variables, _ = source
    dest = orbax_dir.save(variables, model, tmp_path / "d")
    card = json.loads((dest / "model_card.json").read_text())
    card["model"]["num_classes"] = 11
    (dest / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(
        ValueError,
        match=r"variables \(model from .*model_card.json\): the weights do not match the model\n",
    ) as err:
        load_pretrained(dest)
    assert "params/Logits/Conv3d_0c_1x1/conv_3d/bias: got (10,), expected (11,)" in str(err.value)
    card["format"] = "x"
    (dest / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(
        ValueError, match="model_card.json: format is 'x', expected 'i3d_jax.weights/orbax'"
    ):
        load_pretrained(dest)


def test_convert_cli_module(source, tmp_path):
    _, variables, src = source
    dest = tmp_path / "cli.safetensors"
    proc = subprocess.run(
        [sys.executable, "-m", "i3d_jax.convert", str(src), str(dest)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {dest} (safetensors)" in proc.stdout
    assert_same_tree(variables, load_pretrained(dest)[1])
    proc = subprocess.run(
        [sys.executable, "-m", "i3d_jax.convert", str(tmp_path / "missing.pt"), str(dest)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "missing.pt" in proc.stderr
