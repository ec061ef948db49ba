"""Test setup: 8 virtual CPU devices (before the backend starts), float32 matmuls, shared paths,
the `micro` stand-in model preset, and session fixtures that train it once for many tests."""

import atexit
import os
import pathlib
import shutil
import tempfile

# XLA:CPU at backend optimisation level 0: compiles take about half the time (the suite is mostly
# compiles of tiny networks) and the full-size network runs about 1.5x slower, which its few tests
# can afford. Test subprocesses inherit it (tests/test_train.py keeps it for its workers).
os.environ.setdefault(
    "XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
)
# One XLA compilation cache per test session, empty at the start (nothing carries over between
# runs): a program compiled again, by another test, a test's subprocess or another pytest-xdist
# worker (they all inherit this process's environment), is loaded instead of recompiled. The tiny
# networks' steps recur across tests. The process that made it (pytest, or xdist's controller)
# removes it at exit; workers find `I3D_TEST_XLA_CACHE` set and share it.
if "I3D_TEST_XLA_CACHE" not in os.environ:
    os.environ["I3D_TEST_XLA_CACHE"] = tempfile.mkdtemp(prefix="i3d_jax_xla_cache_")
    atexit.register(shutil.rmtree, os.environ["I3D_TEST_XLA_CACHE"], ignore_errors=True)
os.environ["JAX_COMPILATION_CACHE_DIR"] = os.environ["I3D_TEST_XLA_CACHE"]
os.environ["I3D_TEST_CACHE_ALL"] = "1"  # tests/multihost_worker.py: cache every compile too

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_default_matmul_precision", "highest")
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)

import pytest  # noqa: E402
from multihost_worker import (  # noqa: E402
    demo_config,
    fixed_batches,
    install_micro,
    micro_config,
    micro_data,
    micro_source,
    restart_config,
    run_steps,
)

from i3d_jax import sharding  # noqa: E402
from i3d_jax.data.pipeline import SourceInfo  # noqa: E402
from i3d_jax.training import loop  # noqa: E402

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"

install_micro()  # config.model.preset = "micro" (tests/multihost_worker.py)


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The read-only reference data beside the repository (`../shared/data`)."""
    if not SHARED_DATA.is_dir():
        raise FileNotFoundError(f"reference data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def micro_reference():
    """(losses, params) of 4 `micro` steps on one device, global batch 8: what the 8-device,
    FSDP and 2-process runs must reproduce."""
    mesh1 = sharding.make_mesh(devices=jax.devices()[:1])
    return run_steps(micro_config(), fixed_batches(4, 8), mesh1)


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory):
    """An uninterrupted 12-step `micro` run with its final evaluation (`restart_config`):
    `(workdir, result of train_and_evaluate)`. Tests read it; none may write into it."""
    workdir = tmp_path_factory.mktemp("micro_run")
    return workdir, loop.train_and_evaluate(restart_config(), workdir, data=micro_data())


TINY_RUN_CLASSES = ("dim", "grey", "bright", "glaring")  # micro_source's brightness classes


def tiny_run_data():
    """`video.Data` of `micro_source` under the names `TINY_RUN_CLASSES` (no evaluation split)."""
    from i3d_jax.training.tasks import video

    src, _ = micro_source()
    return video.Data(src, None, SourceInfo(TINY_RUN_CLASSES, name="brightness4"))


def tiny_run_mesh():
    """One device: `tiny_run`'s step compiles in about half the time of an 8-device one (a run
    with its config on this mesh reuses the compiled step)."""
    return sharding.make_mesh(devices=jax.devices()[:1])


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A real `tiny` I3D run (`demo_config`: the CPU demo shrunk to 2 steps, checkpoints 1 and
    2, no evaluation, no best): `(workdir, result of train_and_evaluate)`. Tests read it; none
    may write into it."""
    workdir = tmp_path_factory.mktemp("tiny_run")
    out = loop.train_and_evaluate(
        demo_config(), workdir, data=tiny_run_data(), mesh=tiny_run_mesh()
    )
    return workdir, out
