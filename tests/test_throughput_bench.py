"""benchmarks/throughput.py's bookkeeping: TFLOP/s and MFU per row, the compile budget, and the
JSON line a time limit (SIGTERM) still prints. No model is compiled here."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import throughput  # noqa: E402


def test_row_reports_achieved_tflops_and_mfu(capsys):
    # 2 clips in 0.5 s at 4 TFLOP per batch: 8 TFLOP/s, 0.8 of a 10 TFLOP/s peak.
    r = throughput.row("x", "train", 0.5, 2, 4e12, 10.0, compile_seconds=3.0)
    assert r["clips_per_second"] == 4.0 and r["gflop_per_clip"] == 2000.0
    assert r["tflops"] == 8.0 and r["mfu"] == 0.8 and r["compile_seconds"] == 3.0
    assert json.loads(capsys.readouterr().err) == r  # echoed to stderr as it finishes
    no_peak = throughput.row("x", "train", 0.5, 2, 4e12, None)
    assert no_peak["tflops"] == 8.0 and no_peak["mfu"] is None
    no_flops = throughput.row("x", "inference", 0.5, 2, None, 10.0)
    assert no_flops["tflops"] is None and no_flops["mfu"] is None


def test_compile_budget_interrupts_a_long_call():
    start = time.monotonic()
    with pytest.raises(throughput.CompileBudgetSpent):
        with throughput.alarm_after(0.2):
            while time.monotonic() - start < 5:
                pass
    assert time.monotonic() - start < 2
    with throughput.alarm_after(None):  # no budget: no alarm
        time.sleep(0.01)
    with pytest.raises(throughput.CompileBudgetSpent):  # nothing left: stop at once
        with throughput.alarm_after(0):
            pass
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.SIG_IGN, None)


def test_peers_get_a_global_pool_only_below_the_release_minimum():
    assert throughput.peer_global_pool(32) and throughput.peer_global_pool(192)
    assert not throughput.peer_global_pool(193) and not throughput.peer_global_pool(224)


def test_sigterm_prints_the_rows_that_finished():
    code = (
        "import os, signal\n"
        "from benchmarks import throughput as t\n"
        "result = {'results': [{'impl': 'a', 'mode': 'inference'}], 'notes': []}\n"
        "t.NOW['what'] = 'compiling b'\n"
        "with t.printed_on_sigterm(result, t.NOW):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    signal.pause()\n"
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 124, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["results"] == [{"impl": "a", "mode": "inference"}]
    assert "during: compiling b" in out["notes"][0]
