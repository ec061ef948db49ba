"""Mesh and sharding helpers, and multi-host input.

The mesh has two axes: `data` (pure data parallel) and `fsdp` (data parallel whose parameters and
optimizer state are also sharded, ZeRO-3 style). The batch is split over both axes together; a
parameter is split over `fsdp` along its largest dimension divisible by the axis size (small ones
stay replicated). Axis types are Auto, so XLA propagates shardings inside `jit`.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA, FSDP = "data", "fsdp"
BATCH_AXES = (DATA, FSDP)


def make_mesh(data: int = -1, fsdp: int = 1, devices: list | None = None) -> Mesh:
    """A `(data, fsdp)` mesh over all devices (`data=-1`: whatever `fsdp` leaves)."""
    n = len(devices) if devices is not None else jax.device_count()
    if fsdp < 1 or n % fsdp:
        raise ValueError(f"mesh: fsdp={fsdp} must divide the {n} devices")
    if data == -1:
        data = n // fsdp
    if data * fsdp != n:
        raise ValueError(f"mesh: data={data} x fsdp={fsdp} != {n} devices")
    kw = {} if devices is None else {"devices": devices}
    return jax.make_mesh((data, fsdp), (DATA, FSDP), axis_types=(AxisType.Auto,) * 2, **kw)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over `data` and `fsdp`."""
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def param_spec(shape: tuple[int, ...], fsdp_size: int, min_size: int = 2**14) -> P:
    """FSDP spec of one array: its largest dim divisible by `fsdp_size` goes on `fsdp`."""
    if fsdp_size <= 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return P()
    for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
        if shape[dim] % fsdp_size == 0:
            spec = [None] * len(shape)
            spec[dim] = FSDP
            return P(*spec)
    return P()


def state_shardings(abstract_state: Any, mesh: Mesh, min_size: int = 2**14) -> Any:
    """NamedShardings for a pytree of arrays/ShapeDtypeStructs (params, opt state, ...)."""
    fsdp = mesh.shape[FSDP]
    return jax.tree.map(
        lambda x: NamedSharding(mesh, param_spec(tuple(getattr(x, "shape", ())), fsdp, min_size)),
        abstract_state,
    )


def global_batch(host_batch: dict, mesh: Mesh) -> dict:
    """Host-local numpy batch -> global `jax.Array`s split over the mesh's batch axes.

    Every process passes its own `[B_host, ...]` arrays; the global batch is `[B_host * P, ...]`
    with process `i`'s rows on its own devices. Non-numeric entries (e.g. `video_id` strings) are
    host-only and dropped. Raises ValueError if the global batch does not divide over the devices.
    """
    sharding = batch_sharding(mesh)
    n_dev = mesh.devices.size
    out = {}
    for key, value in host_batch.items():
        value = np.asarray(value)
        if value.dtype.kind not in "biuf":
            continue
        global_size = value.shape[0] * jax.process_count()
        if global_size % n_dev:
            raise ValueError(
                f"global batch {global_size} ({value.shape[0]} per host x {jax.process_count()} "
                f"processes) is not divisible by the {n_dev} devices of the mesh"
            )
        out[key] = jax.make_array_from_process_local_data(
            sharding, value, (global_size, *value.shape[1:])
        )
    return out


def maybe_initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    **initialize_kwargs,
) -> bool:
    """Calls `jax.distributed.initialize` when this is a multi-process run.

    Explicit arguments (or env `I3D_COORDINATOR`, `I3D_NUM_PROCESSES`, `I3D_PROCESS_ID`) are used
    as given; otherwise it initializes only where JAX can detect a cluster itself (TPU pod, SLURM
    with `SLURM_NTASKS > 1`, Open MPI) and returns False on a single host. `initialize_kwargs`
    (e.g. `shutdown_timeout_seconds`) go to `jax.distributed.initialize`.
    """
    coordinator_address = coordinator_address or os.environ.get("I3D_COORDINATOR")
    if num_processes is None and "I3D_NUM_PROCESSES" in os.environ:
        num_processes = int(os.environ["I3D_NUM_PROCESSES"])
    if process_id is None and "I3D_PROCESS_ID" in os.environ:
        process_id = int(os.environ["I3D_PROCESS_ID"])
    if coordinator_address:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
            **initialize_kwargs,
        )
        return True
    auto = (
        int(os.environ.get("SLURM_NTASKS", "1")) > 1
        or "TPU_WORKER_HOSTNAMES" in os.environ
        or int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
    )
    if auto:
        jax.distributed.initialize(**initialize_kwargs)
        return True
    return False
