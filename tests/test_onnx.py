"""ONNX export: ONNX Runtime (CPU) against the JAX model. Tiny networks for every option (schedules,
global pool or the 7x7 logits pool, flow, folded BatchNorm, float16, dynamic batch and time,
endpoints); refusals before any work; one deliberate full-size check of the Kinetics-400 weights
on the release's sample clip, a clip no other test reads and a random clip.

Skipped where the optional `onnx` / `onnxruntime` packages are absent (requirements-onnx.txt),
except the check that the exporter says so.
"""

import importlib.util
import json

import jax
import numpy as np
import pytest

from i3d_jax import model
from i3d_jax.weights import common, export, onnx_graph, orbax_dir

HAVE_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason="onnx/onnxruntime are not installed")


def endpoints(net, variables, x) -> dict[str, np.ndarray]:
    fn = jax.jit(lambda v, x: net.apply(v, x)[1])
    return {k: np.asarray(v) for k, v in fn(variables, x).items()}


def run(proto, x) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {onnx_graph.INPUT: x})[0]


def clip(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    net = model.tiny()
    variables = common.random_variables(net, seed=4)
    return net, variables, orbax_dir.save(variables, net, tmp_path_factory.mktemp("ckpt") / "t")


@needs_onnx
def test_cli_export_with_dynamic_batch_and_time(tiny_checkpoint, tmp_path):
    net, variables, ckpt = tiny_checkpoint
    out = tmp_path / "tiny.onnx"
    argv = [str(ckpt), "--format", "onnx", "--out", str(out), "--frames", "16", "--size", "32",
            "--dynamic_batch", "--dynamic_time"]  # fmt: skip
    assert export.main(argv) == 0
    card = json.loads((tmp_path / "tiny.onnx.model_card.json").read_text())
    assert card["format"] == "i3d_jax.export/onnx" and card["opset"] == 17
    assert card["input"]["shape"] == "[batch, frames, 32, 32, 3]"
    assert card["input"]["frames"] == {"multiple_of": 8, "at_least": 16}
    assert card["output"] == {"name": "Logits", "dtype": "float32", "shape": "[batch, 10]"}
    assert card["batchnorm"] == "BatchNormalization nodes" and card["compute_dtype"] == "float32"
    fn = export.load_onnx(out)
    for b, t in [(1, 16), (3, 24)]:
        x = clip((b, t, 32, 32, 3), seed=t)
        want = endpoints(net, variables, x)["Logits"]
        got = fn(x)
        scale = np.abs(want).max()
        assert got.shape == want.shape == (b, 10) and scale > 0.1
        assert np.abs(got - want).max() <= 1e-5 * scale
    with pytest.raises(ValueError, match="multiple of 8 frames, at least 16; got 20.*e.g. to 24"):
        fn(np.zeros((1, 20, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[batch, frames, 32, 32, 3\]; got \(1, 16, 48, 48, 3\)"):
        fn(np.zeros((1, 16, 48, 48, 3), np.float32))
    # The card travels inside the file too (ONNX Runtime's custom metadata).
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["model_card"])["input"] == card["input"]
    assert export.main(argv) == 2  # never overwrites


# (model options, clip T, size): the paper schedule with global pooling (the tiny preset),
# the release's 7x7 logits pool at 224 and an odd clip length, another schedule, flow with
# BatchNorm scales and replicate padding.
CASES = {
    "paper_global": ({}, 17, 32),
    "paper_7x7_pool": ({"global_pool": False}, 11, 224),
    "temporal_early": ({"schedule": "temporal_early"}, 40, 32),
    "flow_replicate": ({"input_channels": 2, "temporal_padding": "replicate", "bn_scale": True},
                       16, 40),
}  # fmt: skip


@needs_onnx
@pytest.mark.parametrize("case", sorted(CASES))
def test_options_match_the_jax_model(case):
    options, t, size = CASES[case]
    net = model.tiny(**options)
    variables = common.random_variables(net, seed=1)
    x = clip((2, t, size, size, net.input_channels), seed=2)
    want = endpoints(net, variables, x)
    want["Predictions"] = np.asarray(jax.nn.softmax(want["Logits"]))  # past final_endpoint
    scale = np.abs(want["Logits"]).max()
    assert scale > 0.1

    def onnx_out(endpoint="Logits", **kw):
        proto = onnx_graph.build(net, variables, t, size, endpoint, dynamic_batch=True, **kw)
        return run(proto, x)

    for kw in ({}, {"fold_bn": True}):
        got = onnx_out(**kw)
        assert got.shape == want["Logits"].shape
        assert np.abs(got - want["Logits"]).max() <= 1e-5 * max(scale, 1.0), kw
    fp16 = onnx_out(fp16=True)
    assert fp16.dtype == np.float32
    assert 0 < np.abs(fp16 - want["Logits"]).max() <= 1e-2 * max(scale, 1.0)
    if case == "paper_global":  # every kind of output, once
        for endpoint in ("Mixed_5c", "MaxPool3d_4a_3x3", "Logits_per_time", "Predictions"):
            got = onnx_out(endpoint)
            assert got.shape == want[endpoint].shape, endpoint
            np.testing.assert_allclose(got, want[endpoint], rtol=1e-4, atol=1e-5, err_msg=endpoint)
        assert want["Logits_per_time"].shape == (2, 2, 10)  # T' = 2: the mean over time is real


def test_refusals_come_before_any_work(tiny_checkpoint, tmp_path, capsys):
    _, _, ckpt = tiny_checkpoint
    out = tmp_path / "m.onnx"
    base = [str(ckpt), "--format", "onnx", "--out", str(out), "--size", "32"]
    cases = {
        ("--frames", "8"): "--frames 8 is too short for pooling schedule 'paper': Logits needs "
        "clips of at least 9 frames",
        ("--frames", "20", "--dynamic_time"): "--dynamic_time needs --frames a multiple of 8",
        ("--endpoint", "Mixed_6a"): "unknown --endpoint 'Mixed_6a'",
    }
    if HAVE_ONNX:
        for extra, message in cases.items():
            assert export.main([*base, *extra]) == 2, extra
            assert message in capsys.readouterr().err, extra
    hlo = [str(ckpt), "--format", "stablehlo", "--out", str(tmp_path / "h"), "--fp16"]
    assert export.main(hlo) == 2
    assert "--fp16: options of --format onnx only" in capsys.readouterr().err
    assert export.main([*base[:4], str(tmp_path / "m.pb")]) == 2
    assert "should end in .onnx" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # The 7x7 logits pool after five stride-2 layers needs (7 - 1) * 32 + 1 = 193 pixels.
    net = model.tiny(global_pool=False)
    with pytest.raises(ValueError, match="--size 160 is too small.*at least 193"):
        onnx_graph.check_options(net, 16, 160)


def test_without_the_onnx_package(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    _, _, ckpt = tiny_checkpoint
    real = importlib.util.find_spec
    monkeypatch.setattr(
        export.importlib.util, "find_spec", lambda n, *a: None if n == "onnx" else real(n, *a)
    )
    out = tmp_path / "m.onnx"
    assert export.main([str(ckpt), "--format", "onnx", "--out", str(out)]) == 2
    assert "needs the onnx package" in capsys.readouterr().err and not out.exists()


def decode_gif(path) -> np.ndarray:
    from PIL import Image, ImageSequence

    with Image.open(path) as im:
        return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])


@needs_onnx
def test_kinetics400_in_onnx_runtime(shared_data, tmp_path):
    """Full size, deliberately: the Kinetics-400 weights on the release's sample clip, the
    release's flow visualisation of it (a 79-frame GIF no other test reads, decoded as RGB) and a
    random clip, one batch of three through one export, float32 and float16."""
    from i3d_jax.samples import CRICKET
    from i3d_jax.weights import KINETICS400

    frames = [decode_gif(CRICKET), decode_gif(shared_data / "v_CricketShot_g04_c01_flow.gif")]
    assert [f.shape for f in frames] == [(79, 224, 224, 3)] * 2
    x = np.concatenate(
        [np.stack(frames).astype(np.float32) / 127.5 - 1, clip((1, 79, 224, 224, 3))]
    )
    net, variables, labels, source = export.load(KINETICS400, "kinetics400")
    want = endpoints(net, variables, x)["Logits"]
    assert labels.names[int(np.argmax(want[0]))] == "playing cricket"
    assert abs(want[0].max() - 17.64) < 0.05
    top5 = np.argsort(-want, axis=1)[:, :5]
    # float32: within 1e-4 (measured 8.6e-6) and the same top-5 in order on all three clips;
    # float16: within 0.05 (measured 0.019; logits up to 17.6), the same top-5 on the sample
    # clip (the flow clip's top two are 0.012 apart: their order may swap in float16). ONNX
    # Runtime's CPU provider computes a float16 graph in float32: this is the weights' rounding.
    for fp16, tol in ((False, 1e-4), (True, 0.05)):
        out = tmp_path / f"k400_{'fp16' if fp16 else 'fp32'}.onnx"
        export.write("onnx", net, variables, out, frames=79, dynamic_batch=True, fp16=fp16,
                     source=source, labels=labels)  # fmt: skip
        card = json.loads(out.with_name(out.name + ".model_card.json").read_text())
        assert card["batchnorm"] == (
            "folded into conv biases" if fp16 else "BatchNormalization nodes"
        )
        assert card["labels"]["names"][227] == "playing cricket" and card["source"] == KINETICS400
        got = export.load_onnx(out)(x)
        assert got.shape == (3, 400)
        assert np.abs(got - want).max() <= tol, (fp16, np.abs(got - want).max(axis=1))
        got5 = np.argsort(-got, axis=1)[:, :5]
        if fp16:
            assert np.array_equal(got5[0], top5[0])
            assert 13e6 < out.stat().st_size < 28e6
        else:
            assert np.array_equal(got5, top5)
            assert 45e6 < out.stat().st_size < 56e6  # 12.7M float32 parameters in one file
