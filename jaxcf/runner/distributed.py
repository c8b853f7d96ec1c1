"""Runs over many processes (one per host) on JAX's multi-controller runtime.

Every process runs the same program on its own devices; :func:`initialize` joins them into one
job, after which ``jax.devices()`` lists every process's devices and the runner's default mesh
(:func:`jaxcf.runner.data_mesh`) spans them all. Each process then reads and writes only its
own share of every chunk (see :mod:`jaxcf.runner`).

Launching (the runner's code is the same everywhere; only how the job starts differs):

* **Slurm**: one task per node (``srun --ntasks-per-node=1 ...``); ``initialize()`` with no
  arguments reads the coordinator, process count and id from Slurm's environment.
* **Cloud TPU pod slice**: the same command on every host
  (``gcloud compute tpus tpu-vm ssh ... --worker=all --command=...``); ``initialize()`` with no
  arguments finds everything from the TPU metadata.
* **One multi-GPU machine**: one process already sees every local GPU; no initialisation is
  needed. To run one process per GPU instead, pass ``coordinator_address``,
  ``num_processes``, ``process_id`` and ``local_device_ids=[i]`` to each.
* **Anywhere else** (several plain machines, or local CPU processes for testing): pass
  ``coordinator_address="host0:port"``, ``num_processes`` and ``process_id`` explicitly.

The run's ``out_dir`` must be a directory every process sees (a shared file system): each
process writes its own part of every chunk there, and process 0 merges them into the record.
The helpers below are what the runner uses to keep processes in step; in a single process they
return at once.
"""

from __future__ import annotations

import hashlib
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: list[int] | None = None,
    cpu_collectives: str = "gloo",
    timeout_seconds: int = 300,
) -> None:
    """Joins this process to a multi-process job (``jax.distributed.initialize``), checked.

    Call it first, before anything else touches JAX's devices. Arguments left ``None`` are
    detected by JAX on Slurm and Cloud TPU (see the module docstring).

    Args:
      coordinator_address: ``"host:port"`` of process 0's coordinator service.
      num_processes: processes in the job.
      process_id: this process's index, ``0 .. num_processes - 1``.
      local_device_ids: the local devices this process uses (default: all).
      cpu_collectives: collectives implementation for CPU devices (``"gloo"``, or ``"mpi"``);
        without one, processes on CPUs cannot exchange anything.
      timeout_seconds: how long to wait for every process to join before failing.

    Raises:
      ValueError: a process count or id that cannot be right, or a job whose size or ids do not
        match what this process was told (another process started with other arguments).
    """
    if num_processes is not None and (
        isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1
    ):
        raise ValueError(f"num_processes must be a positive int, got {num_processes!r}")
    if process_id is not None:
        if isinstance(process_id, bool) or not isinstance(process_id, int):
            raise ValueError(f"process_id must be an int, got {process_id!r}")
        if num_processes is not None and not 0 <= process_id < num_processes:
            raise ValueError(
                f"process_id {process_id} is outside 0 .. {num_processes - 1} for a job of "
                f"{num_processes} processes"
            )
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
        initialization_timeout=timeout_seconds,
    )
    if num_processes is not None and jax.process_count() != num_processes:
        raise ValueError(
            f"this process was started for {num_processes} processes but the job has "
            f"{jax.process_count()}"
        )
    ids = gather(np.asarray([jax.process_index()], np.int32))[:, 0]
    if sorted(ids.tolist()) != list(range(jax.process_count())):
        raise ValueError(f"process ids {ids.tolist()} are not 0 .. {jax.process_count() - 1}")


def gather(value: np.ndarray) -> np.ndarray:
    """``[P, ...]``: every process's ``value`` (same shape and dtype everywhere), by process."""
    value = np.asarray(value)
    if jax.process_count() == 1:
        return value[None]
    return np.asarray(multihost_utils.process_allgather(value, tiled=False))


def agree(text: str, what: str) -> None:
    """Raises on every process unless all processes hold the same ``text``.

    Raises:
      ValueError: naming the processes whose ``text`` differs from process 0's.
    """
    digest = np.frombuffer(hashlib.sha256(text.encode()).digest(), np.uint8)
    digests = gather(digest)
    differ = [p for p in range(len(digests)) if not np.array_equal(digests[p], digests[0])]
    if differ:
        raise ValueError(
            f"processes {differ} were started with other {what} than process 0; every process "
            "of a job must get the same arguments"
        )


def all_true(flags: Any) -> np.ndarray:
    """Element-wise AND of a bool array over all processes."""
    return np.all(gather(np.asarray(flags, bool)), axis=0)


def broadcast(value: int) -> int:
    """Process 0's ``value`` on every process."""
    if jax.process_count() == 1:
        return int(value)
    return int(multihost_utils.broadcast_one_to_all(np.asarray(value, np.int32)))


def barrier(name: str) -> None:
    """Waits until every process reaches the barrier of this ``name``."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
