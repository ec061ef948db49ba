"""Pooling schedules and the receptive-field calculator, checked against a hand computation."""

import json

import pytest

from i3d_jax import schedules

# Paper schedule, 64x224x224 input, worked by hand: r_out = r_in + (k - 1) * jump_in,
# jump_out = jump_in * stride, out = ceil(in / stride) (SAME) or in - k + 1 (the VALID logits pool).
# (endpoint, RF T, RF H, stride T, stride H, out T, out H)
PAPER_64 = [
    ("Conv3d_1a_7x7", 7, 7, 2, 2, 32, 112),
    ("MaxPool3d_2a_3x3", 7, 11, 2, 4, 32, 56),
    ("Conv3d_2b_1x1", 7, 11, 2, 4, 32, 56),
    ("Conv3d_2c_3x3", 11, 19, 2, 4, 32, 56),
    ("MaxPool3d_3a_3x3", 11, 27, 2, 8, 32, 28),
    ("Mixed_3b", 15, 43, 2, 8, 32, 28),
    ("Mixed_3c", 19, 59, 2, 8, 32, 28),
    ("MaxPool3d_4a_3x3", 23, 75, 4, 16, 16, 14),
    ("Mixed_4b", 31, 107, 4, 16, 16, 14),
    ("Mixed_4c", 39, 139, 4, 16, 16, 14),
    ("Mixed_4d", 47, 171, 4, 16, 16, 14),
    ("Mixed_4e", 55, 203, 4, 16, 16, 14),
    ("Mixed_4f", 63, 235, 4, 16, 16, 14),
    ("MaxPool3d_5a_2x2", 67, 251, 8, 32, 8, 7),
    ("Mixed_5b", 83, 315, 8, 32, 8, 7),
    ("Mixed_5c", 99, 379, 8, 32, 8, 7),
    ("Logits", 107, 571, 8, 32, 7, 1),
]


def test_paper_receptive_fields_match_hand_computation():
    rows = schedules.receptive_fields("paper", (64, 224, 224))
    got = [
        (
            r.endpoint,
            r.receptive_field[0],
            r.receptive_field[1],
            r.stride[0],
            r.stride[1],
            r.output_size[0],
            r.output_size[1],
        )
        for r in rows
    ]
    assert got == PAPER_64
    assert all(r.receptive_field[1] == r.receptive_field[2] for r in rows)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("paper", 9),
        ("temporal_early", 33),
        ("temporal_late", 5),
        ("conv1_t1", 5),
        ("no_temporal_pool", 2),
    ],
)
def test_min_frames(name, expected):
    assert schedules.min_frames(name) == expected
    # One frame fewer leaves fewer time steps than the logits pool needs.
    short = schedules.receptive_fields(name, (expected - 1, 224, 224))[-1].output_size[0]
    ok = schedules.receptive_fields(name, (expected, 224, 224))[-1].output_size[0]
    assert short < 1 <= ok


def test_min_spatial():
    assert schedules.min_spatial("paper") == 193
    assert schedules.min_spatial("paper", global_pool=True) == 1


def test_unknown_schedule_names_choices():
    with pytest.raises(ValueError, match="expected one of"):
        schedules.get_schedule("nope")


def test_cli_table_and_json(capsys):
    assert schedules.main(["--schedule", "paper", "--frames", "64"]) == 0
    table = capsys.readouterr().out
    assert "Mixed_5c" in table and "571" in table
    assert schedules.main(["--schedule", "conv1_t1", "--frames", "16", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["min_frames"] == 5
    assert doc["endpoints"][0]["stride"] == [1, 2, 2]
    assert schedules.main(["--schedule", "paper", "--frames", "8"]) == 2
    assert "need at least 9" in capsys.readouterr().err


def test_module_cli_runs_without_the_sys_modules_warning():
    # Finding 11: the package imported schedules eagerly, so `python -m` warned before running it.
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-m", "i3d_jax.schedules", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0 and "sys.modules" not in proc.stderr, proc.stderr
    assert json.loads(proc.stdout)["min_frames"] == 9
