"""Test setup: 8 virtual CPU devices (before the backend starts), float32 matmuls, shared paths."""

import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_default_matmul_precision", "highest")

import pytest  # noqa: E402

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The read-only reference data beside the repository (`../shared/data`)."""
    if not SHARED_DATA.is_dir():
        raise FileNotFoundError(f"reference data not found at {SHARED_DATA}")
    return SHARED_DATA
