"""benchmarks/train_from_disk.py end to end on CPU: the `micro` preset (tests/conftest.py) fed
from memory and from a real on-disk `video_folder` dataset (pipeline threads, no workers)."""

import json
import math
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import train_from_disk  # noqa: E402

ARGV = (
    "--preset micro --batch 8 --frames 9 --size 8 --short_side 16 --dtype float32 "
    "--videos 8 --video_frames 12 --steps 4 --warmup 1 --workers 0"
)


def test_train_from_disk_rows_and_dataset_reuse(tmp_path, capsys):
    argv = [*ARGV.split(), "--workdir", str(tmp_path)]
    out = train_from_disk.main(argv)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == out
    data = out["dataset"]
    # The stored frames have the asked smaller side (the source is 256x340) and take bytes.
    assert data["videos"] == 8 and data["stored_hw"] == [16, 21]
    assert data["bytes_per_frame"] > 0 and data["build_s"] is not None
    for name in ("in_memory", "from_disk"):
        row = out[name]
        assert row["clips_per_s"] > 0 and math.isfinite(row["final_loss"]), (name, row)
        assert 0 <= row["data_wait_share"] < 1 and 0 <= row["device_idle_share"] < 1, (name, row)
        assert math.isclose(
            row["ms_per_step"] * row["clips_per_s"], 1e3 * out["batch"], rel_tol=1e-3
        )
    assert len(out["in_memory"]["clips_per_s_runs"]) == 2  # before and after from_disk
    quotient = out["from_disk"]["clips_per_s"] / out["in_memory"]["clips_per_s"]
    assert math.isclose(out["ratio"], quotient, rel_tol=1e-3)
    assert out["workers"] == 0 and out["from_disk_drain_steps"] == 0

    # A second run in the same workdir reads the videos and dataset already there.
    again = train_from_disk.main(argv)
    assert again["dataset"]["write_s"] is None and again["dataset"]["build_s"] is None
    assert again["dataset"]["bytes_per_frame"] == data["bytes_per_frame"]
