"""A `train.py` workdir as weights: `load_pretrained(<workdir>)` (its best checkpoint, else its
latest; `best/<step>`, `checkpoints/<step>`), and every tool that takes weights taking one:
predict (with the run's class names), extract_features, convert, export, and
`config.init.source` (fine-tuning, and the flow demo's cross-modality start from the RGB demo).

Session fixtures (tests/conftest.py): `micro_run` (12 steps of the `Micro` stand-in, checkpoints
8/10/12, best 12) and `tiny_run` (a real `tiny` I3D run of the CPU demo's config, 2 steps)."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY_RUN_CLASSES, tiny_run_data, tiny_run_mesh
from flax import traverse_util
from multihost_worker import ROOT, demo_config, micro_config
from videos import write_video

from i3d_jax import extract_features as ef
from i3d_jax import preprocess, weights
from i3d_jax.extract_features.cli import main as extract_main
from i3d_jax.inflate import cross_modality
from i3d_jax.model import InceptionI3d
from i3d_jax.predict.cli import main as predict_main
from i3d_jax.training import checkpoints, loop
from i3d_jax.training import config as config_lib
from i3d_jax.training.tasks import video_model
from i3d_jax.weights import convert, detect_format, export, load_pretrained, orbax_dir, piergiaj

KERNEL = "params/Logits/Conv3d_0c_1x1/conv_3d/kernel"


def layout():
    """`i3d_jax.weights.workdir`, imported when used (so that, on code without it, each test
    fails at its first use of a workdir rather than the module at collection)."""
    from i3d_jax.weights import workdir

    return workdir


def endpoints(model, variables, x) -> dict:
    """The endpoints of `model` on `x` (jitted: one program per model and shape, cached)."""
    return jax.device_get(jax.jit(lambda v, x: model.apply(v, x)[1])(variables, x))


def _flat(tree) -> dict:
    return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(dict(tree), sep="/").items()}


def assert_same_variables(a, b):
    fa, fb = _flat(a), _flat(b)
    assert sorted(fa) == sorted(fb)
    for k in fa:
        np.testing.assert_array_equal(fa[k], fb[k], err_msg=k)


def state_variables(state) -> dict:
    return jax.device_get(loop.variables_of(state))


def test_a_workdir_is_its_best_checkpoint_else_its_latest(micro_run, tmp_path):
    wd, res = micro_run
    assert detect_format(wd) == "workdir"
    assert layout().steps(wd / "checkpoints") == [8, 10, 12] and layout().steps(wd / "best") == [12]
    model, variables = load_pretrained(wd)
    final = state_variables(res["state"])
    assert_same_variables(variables, final)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 9, 8, 8, 3)).astype(np.float32)
    got, want = model.apply(variables, x)[0], model.apply(final, x)[0]
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert float(jnp.abs(got).max()) > 0.1  # real logits
    assert layout().describe(wd) == str(wd / "best" / "12")

    # A given step: the training code's variables-only restore of it, not the final state.
    _, step10 = load_pretrained(wd / "checkpoints" / "10")
    mngr, step, _ = checkpoints.find(wd / "checkpoints" / "10")
    init = video_model.init_variables(micro_config(), model, jax.random.key(0))
    abstract = jax.eval_shape(lambda: init)
    shardings = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(jax.devices()[0]), init)
    assert_same_variables(step10, checkpoints.restore_variables(mngr, step, abstract, shardings))
    assert not np.array_equal(step10["params"]["Logits"]["kernel"], final["params"]["Logits"]["kernel"])  # fmt: skip

    # best/ is preferred over a later checkpoint; without best/, the latest checkpoint.
    copy = tmp_path / "run"
    shutil.copytree(wd, copy)
    shutil.rmtree(copy / "checkpoints" / "12")
    assert_same_variables(load_pretrained(copy)[1], final)
    shutil.rmtree(copy / "best")
    assert_same_variables(load_pretrained(copy)[1], step10)
    assert layout().describe(copy) == str(copy / "checkpoints" / "10")


def test_workdirs_that_are_not_weights_are_named_errors(micro_run, tmp_path, capsys):
    wd, _ = micro_run
    fresh = tmp_path / "fresh"  # a run that has not saved a checkpoint yet
    fresh.mkdir()
    shutil.copy(wd / "config.json", fresh / "config.json")
    head = tmp_path / "head"  # a temporal head's run
    head.mkdir()
    (head / "config.json").write_text(json.dumps({"task": "features"}))
    other = tmp_path / "other_preset"
    shutil.copytree(wd, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["model"]["preset"] = "not_registered"
    (other / "config.json").write_text(json.dumps(cfg))
    cases = [
        (fresh, FileNotFoundError, f"{fresh}: training workdir with no checkpoint yet"),
        (head, ValueError, "a training workdir of task 'features' (a temporal head"),
        (wd / "checkpoints" / "7", FileNotFoundError, "no checkpoint step 7 in"),
        (wd / "best", ValueError, f"give the workdir {wd} (its best, else latest)"),
        (other, ValueError, "unknown model preset 'not_registered'"),
    ]
    for source, kind, message in cases:
        with pytest.raises(kind) as err:
            load_pretrained(source)
        assert message in str(err.value), (source, str(err.value))
    assert "(steps there: [8, 10, 12])" in _error(load_pretrained, wd / "checkpoints" / "7")
    assert str(other / "config.json") in _error(load_pretrained, other)
    # Through the tools: `error: ...` naming the run, exit 2, no traceback.
    clip = tmp_path / "clip.mp4"
    write_video(clip, np.zeros((9, 16, 16, 3), np.uint8))
    assert (
        predict_main([str(clip), "--weights", str(fresh), "--crop", "8", "--short_side", "8"]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith(f"error: {fresh}: training workdir with no checkpoint yet")
    assert convert.main([str(head), str(tmp_path / "out.safetensors")]) == 2
    assert "task 'features'" in capsys.readouterr().err
    # A run of a model that is not I3D (the test's `micro` stand-in) loads but does not convert.
    assert convert.main([str(wd), str(tmp_path / "out.safetensors")]) == 2
    assert "its model is a Micro, not an InceptionI3d" in capsys.readouterr().err


def _error(fn, *args) -> str:
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        fn(*args)
    return str(err.value)


def test_a_real_i3d_run_loads_with_its_training_logits_and_class_names(tiny_run):
    wd, res = tiny_run
    model, variables = load_pretrained(wd)
    assert res["steps"] == 2 and res["eval"] is None  # no evaluation: no best/
    assert layout().steps(wd / "checkpoints") == [1, 2] and layout().steps(wd / "best") == []
    assert isinstance(model, InceptionI3d)
    assert (model.num_classes, model.input_channels, model.global_pool) == (4, 3, True)
    final = state_variables(res["state"])
    assert_same_variables(variables, final)
    x = np.random.default_rng(1).uniform(-1, 1, (1, 9, 8, 8, 3)).astype(np.float32)
    got, want = endpoints(model, variables, x)["Logits"], endpoints(model, final, x)["Logits"]
    np.testing.assert_array_equal(got, want)
    assert np.abs(got).max() > 1e-3  # real logits
    labels = weights.carried_labels(wd, model.num_classes)
    assert labels.names == TINY_RUN_CLASSES and labels.name == "brightness4"
    assert labels.path == str(wd / "data.json")
    assert weights.carried_labels(wd, 6).names == (*TINY_RUN_CLASSES, "class_4", "class_5")
    with pytest.raises(ValueError, match="has 4 class names for 3 classes"):
        weights.carried_labels(wd, 3)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "bright.mp4"
    rng = np.random.default_rng(2)
    write_video(path, (rng.integers(0, 60, (12, 16, 16, 3)) + 180).astype(np.uint8))
    return path


def test_predict_from_a_workdir_prints_the_dataset_class_names(tiny_run, clip, capsys):
    wd, _ = tiny_run
    args = ["--short_side", "8", "--crop", "8", "--top", "4", "--json"]
    assert predict_main([str(clip), "--weights", str(wd), *args]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sorted(t["label"] for t in record["top"]) == sorted(TINY_RUN_CLASSES)
    assert [t["label"] for t in record["top"]] == [TINY_RUN_CLASSES[t["index"]] for t in record["top"]]  # fmt: skip
    # A step directory: step 1 is other weights; step 2 (the latest) lists the same classes.
    assert predict_main([str(clip), "--weights", str(wd / "checkpoints" / "1"), *args]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["logits_norm"] != record["logits_norm"]
    plain = [
        str(clip),
        "--weights",
        str(wd / "checkpoints" / "2"),
        "--short_side",
        "8",
        "--crop",
        "8",
    ]
    assert predict_main(plain) == 0
    out = capsys.readouterr().out
    top = record["top"][0]
    assert f"{top['prob']:.4f}  {top['logit']:8.3f}  {top['label']}" in out
    assert all(name in out for name in TINY_RUN_CLASSES)


def test_convert_a_workdir_round_trips(tiny_run, tmp_path, capsys):
    wd, res = tiny_run
    final = state_variables(res["state"])
    st = tmp_path / "run.safetensors"
    assert convert.main([str(wd), str(st)]) == 0
    # piergiaj's layout keeps tensors, not the preset's global pooling: give it back.
    model_st, from_st = load_pretrained(st, global_pool=True)
    assert_same_variables(from_st, final)
    assert model_st.num_classes == 4 and len(piergiaj.read_safetensors(st)) > 200
    dest = tmp_path / "run_orbax"
    assert convert.main([str(wd), str(dest)]) == 0
    assert f"wrote {dest} (orbax)" in capsys.readouterr().out
    card = json.loads((dest / "model_card.json").read_text())
    assert card["source"] == str(wd / "checkpoints" / "2")  # what was read
    assert card["labels"] == {
        "name": "brightness4",
        "path": str(wd / "data.json"),
        "num_labels": 4,
        "names": list(TINY_RUN_CLASSES),
    }
    model_dir, from_dir = load_pretrained(dest)
    assert model_dir == load_pretrained(wd)[0]
    assert_same_variables(from_dir, final)
    assert weights.carried_labels(dest, 4).names == TINY_RUN_CLASSES  # predict's default names
    # --labels still replaces them; a given step converts that step.
    names = tmp_path / "names.txt"
    names.write_text("w\nx\ny\nz\n")
    step1 = tmp_path / "step1"
    assert convert.main([str(wd / "checkpoints" / "1"), str(step1), "--labels", str(names)]) == 0
    card1 = json.loads((step1 / "model_card.json").read_text())
    assert card1["labels"]["names"] == ["w", "x", "y", "z"]
    assert card1["source"] == str(wd / "checkpoints" / "1")
    assert not np.array_equal(_flat(load_pretrained(step1)[1])[KERNEL], _flat(final)[KERNEL])


def test_export_a_workdir(tiny_run, tmp_path, capsys):
    wd, res = tiny_run
    out = tmp_path / "run.safetensors"
    assert export.main([str(wd), "--format", "safetensors", "--out", str(out)]) == 0
    card = json.loads((tmp_path / "run.safetensors.model_card.json").read_text())
    assert card["labels"]["names"] == list(TINY_RUN_CLASSES)
    assert card["source"] == str(wd / "checkpoints" / "2")
    assert_same_variables(load_pretrained(out, global_pool=True)[1], state_variables(res["state"]))
    hlo = tmp_path / "hlo"
    argv = [str(wd), "--format", "stablehlo", "--out", str(hlo), "--size", "8"]
    assert export.main(argv) == 0
    hlo_card = json.loads((hlo / "model_card.json").read_text())
    assert hlo_card["labels"]["names"] == list(TINY_RUN_CLASSES)
    assert hlo_card["model"]["num_classes"] == 4 and hlo_card["output"]["shape"] == "(b, 4)"
    assert export.main([str(wd), "--format", "stablehlo", "--out", str(tmp_path / "h2"),
                        "--labels", str(tmp_path / "missing.txt")]) == 2  # fmt: skip
    assert "label file not found" in capsys.readouterr().err


def test_extract_features_from_a_workdir(tiny_run, clip, tmp_path):
    wd, _ = tiny_run
    out = tmp_path / "feats"
    argv = [str(clip), "--weights", str(wd), "--out", str(out), "--window", "9", "--stride", "3",
            "--short_side", "8", "--crop_size", "8", "--no_progress"]  # fmt: skip
    assert extract_main(argv) == 0
    with np.load(out / "bright.npz") as z:
        features, settings = z["features"], json.loads(str(z["settings"]))
    assert features.shape == (2, 1, 64)  # windows at 0 and 3 of 12 frames, one crop, Mixed_5c
    assert settings["weights"] == ef.weights_identity(wd)
    assert settings["weights"].startswith(f"{wd / 'checkpoints' / '2'} (")
    model, variables = load_pretrained(wd)
    # the first window's centre crop through the loaded network: the same numbers
    frames = preprocess.load_video(clip, short_side=8)[:9]
    x = np.asarray(preprocess.to_float(preprocess.center_crop(frames, 8))[None])
    mixed_5c = endpoints(model, variables, x)["Mixed_5c"].mean(axis=(1, 2, 3))[0]
    np.testing.assert_allclose(features[0, 0], mixed_5c, rtol=1e-4, atol=1e-5)
    assert np.abs(features[0, 0] - features[1, 0]).max() > 0  # two windows, two results


def test_fine_tuning_starts_from_a_workdir(tiny_run, tmp_path):
    wd, res = tiny_run
    source = state_variables(res["state"])
    config = demo_config(**{"init.method": "pretrained", "init.source": str(wd)})
    model = video_model.build_model(config)
    start = video_model.initial_variables(config, model, jax.random.key(0, impl="rbg"))
    assert_same_variables(start, source)  # what the new run's state is built from
    tuned_wd = tmp_path / "finetuned"
    out = loop.train_and_evaluate(config, tuned_wd, data=tiny_run_data(), mesh=tiny_run_mesh())
    assert out["steps"] == 2 and np.isfinite(out["final_loss"])
    # Adam's first step moves each parameter by at most the learning rate (lr * g / |g|).
    step1 = _flat(load_pretrained(tuned_wd / "checkpoints" / "1")[1])
    moved = {k: np.abs(v - _flat(source)[k]).max() for k, v in step1.items() if k.startswith("params/")}  # fmt: skip
    assert max(moved.values()) <= config.lr.base * (1 + 1e-5) and moved[KERNEL] > 0
    assert json.loads((tuned_wd / "config.json").read_text())["init"]["source"] == str(wd)


def test_the_flow_demo_starts_from_the_rgb_demo_run_as_documented(tiny_run):
    # configs/synthetic_motion_flow.py: `--config.init.method=cross_modality
    # --config.init.source=runs/demo`, runs/demo being the RGB demo's workdir.
    wd, res = tiny_run
    base = config_lib.load_config_file(ROOT / "configs" / "synthetic_motion_flow.py")
    overrides = [
        config_lib.parse_assignment(a, base, many=False)
        for a in ("init.method=cross_modality", f"init.source={wd}")
    ]
    config = config_lib.with_overrides(base, overrides)
    config_lib.validate_config(config)
    model = video_model.build_model(config)
    got = _flat(video_model.initial_variables(config, model, jax.random.key(0, impl="rbg")))
    want = _flat(cross_modality(state_variables(res["state"]), 2))
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    first = "params/Conv3d_1a_7x7/conv_3d/kernel"
    assert got[first].shape[-2] == 2 and np.array_equal(
        got[first][..., 0, :], got[first][..., 1, :]
    )


def test_an_orbax_card_and_a_workdir_source_are_told_apart(tiny_run, tmp_path):
    wd, _ = tiny_run
    model, variables = load_pretrained(wd)
    d = orbax_dir.save(variables, model, tmp_path / "converted")
    assert detect_format(d) == "orbax" and detect_format(wd / "checkpoints" / "1") == "workdir"
    assert weights.carried_labels(d, 4) is None  # saved without names
