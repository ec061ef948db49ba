"""The GPU benchmark scripts run end to end on CPU (tiny preset): what a GPU session will run."""

import json
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import numerics, profile_step, throughput  # noqa: E402


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_throughput_variants_report_rows_with_plain_flops(capsys):
    # Inference only (compiles are what cost here); the training step is still built and lowered
    # for the plain graph's FLOPs, and numerics below compiles and runs training steps.
    argv = "--preset tiny --batch 2 --frames 16 --size 32 --dtype float32 --steps 1 --warmup 1"
    argv += " --modes inference"
    assert throughput.main([*argv.split(), "--variants", "plain,t2c1_s2d+fold"]) == 0
    out = last_json(capsys)
    rows = {(r["impl"], r["mode"]): r for r in out["results"]}
    assert set(rows) == {
        ("i3d_jax (plain, float32)", "inference"),
        ("i3d_jax (t2c1_s2d+fold, float32)", "inference"),
    }
    for (_, mode), r in rows.items():
        assert r["clips_per_second"] > 0
        # Every variant is charged the plain graph's FLOPs (the useful work), not its own.
        assert r["gflop_per_clip"] == rows[("i3d_jax (plain, float32)", mode)]["gflop_per_clip"]
    assert out["preset"] == "tiny" and out["shape"] == [16, 32, 32, 3]


def test_throughput_rejects_unknown_variant():
    with pytest.raises(SystemExit, match="unknown variant 'quick'"):
        throughput.main("--preset tiny --frames 16 --size 32 --variants quick".split())


def test_numerics_of_rewrites_against_plain_float32(capsys):
    argv = "--preset tiny --batch 2 --frames 16 --size 32 --steps 3 --variants t2c1_s2d"
    assert numerics.main(argv.split()) == 0
    out = last_json(capsys)
    for name in ("t2c1_s2d",):
        assert out[f"{name}+fold_float32_max_abs_logit_diff"] < 1e-4 * out["logit_scale"] + 1e-5
        assert out[f"{name}+fold_bfloat16_max_abs_logit_diff"] < 0.05 * out["logit_scale"]
        assert len(out[f"loss_{name}_bfloat16"]) == 3
        assert out[f"{name}_bfloat16_max_abs_loss_diff"] < 0.1


def test_memory_benchmark_quick_fvd_rows(capsys):
    from benchmarks import memory

    assert memory.main(["--quick", "--tools", "fvd"]) == 0
    out = last_json(capsys)
    rows = {(r["size"], r["seconds"]): r for r in out["rows"]}
    assert set(rows) == {("64x48", 1.0), ("64x48", 2.0), ("160x96", 1.0)}
    for r in rows.values():
        assert r["rc"] == 0 and not r["timed_out"] and 100 < r["peak_rss_mib"] < 3000, r
        assert r["protocol"] == "fvdall_10f" and r["fvd"] > 0
    # Clips are the first 10 frames: a longer loop of the same content gives the same number
    # (peak RSS at these tiny sizes is run-to-run noise of about 100 MiB; the real rows are in
    # BENCHMARKS.md).
    short, long = rows[("64x48", 1.0)], rows[("64x48", 2.0)]
    assert long["fvd"] == short["fvd"] and long["frames"] == 2 * short["frames"]
    assert rows[("160x96", 1.0)]["fvd"] != short["fvd"]


def test_profile_step_attributes_the_training_step_to_layers_and_kinds(capsys):
    argv = "--preset tiny --batch 2 --frames 16 --size 32 --dtype float32 --steps 1 --warmup 1"
    assert profile_step.main([*argv.split(), "--graph", "t2c1_s2d_taps_train"]) == 0
    out = last_json(capsys)
    assert out["graph"] == "t2c1_s2d_taps_train" and out["shape"] == [16, 32, 32, 3]
    cats = out["by_category_ms"]
    # Every kind of work of a training step shows up, and the parts add up to the total.
    for kind in ("conv forward", "conv weight-grad", "pool grad", "batchnorm forward", "optimizer"):
        assert cats.get(kind, 0) > 0, (kind, cats)
    assert abs(sum(cats.values()) - out["device_ms_summed"]) < 0.01 * out["device_ms_summed"] + 0.01
    assert {"Conv3d_1a_7x7", "Mixed_3b", "Mixed_5c"} <= set(out["by_layer_ms"])
    assert out["top_ops"][0]["ms"] >= out["top_ops"][-1]["ms"]


def test_every_benchmark_script_runs_from_a_clone_as_documented():
    """`python benchmarks/X.py --help` from the repository root, no PYTHONPATH: what a user types."""
    import os
    import subprocess

    root = pathlib.Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    scripts = sorted(p for p in (root / "benchmarks").glob("*.py") if not p.name.startswith("_"))
    assert len(scripts) >= 10
    procs = {
        s.name: subprocess.Popen([sys.executable, str(s.relative_to(root)), "--help"], cwd=root,
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for s in scripts
    }  # fmt: skip
    for name, p in procs.items():
        out = p.communicate(timeout=120)[0].decode()
        assert p.returncode == 0 and "usage:" in out, (name, out[-500:])


def test_input_pipeline_measures_every_storage_format(capsys, tmp_path):
    from benchmarks import input_pipeline

    out = input_pipeline.main(["--videos", "2", "--frames", "20", "--clips", "2",
                               "--clip_length", "8", "--crop", "32", "--gops", "16",
                               "--workdir", str(tmp_path)])  # fmt: skip
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == out
    methods = out["methods"]
    assert {"jpeg_pil", "jpeg_simplejpeg", "h264_g16_crf17"} <= set(methods)
    for row in methods.values():
        assert row["frames_per_second_per_core"] > 0
        for videos in ("texture", "sample_clip"):
            assert 30.0 < row[videos]["psnr_db"] < 60.0
    for videos in ("texture", "sample_clip"):  # segments: fewer bytes than JPEG on both
        jpeg, h264 = methods["jpeg_pil"][videos], methods["h264_g16_crf17"][videos]
        assert h264["bytes_per_frame"] < jpeg["bytes_per_frame"] / 2
    assert out["default_format"] == "h264_g16_crf17" and set(out["grain"]) == {
        "h264_g16_crf17", "jpeg"}  # fmt: skip
    assert out["bytes_per_frame"] == methods["h264_g16_crf17"]["texture"]["bytes_per_frame"]
    assert out["frames_per_second_per_core"] == out["grain"]["h264_g16_crf17"][
        "frames_per_second_per_core"]  # fmt: skip
