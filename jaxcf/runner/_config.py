"""The runner's settings: :class:`RunnerConfig` (chunk size, refillable slots, segment, taper,
progress interval) and :func:`data_mesh`, the 1-D device mesh (axis ``"data"``) each chunk is
split over, ordered by process so that each process's devices hold one contiguous block of every
chunk's rows.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jax.sharding import Mesh

from jaxcf.core import validation


@dataclasses.dataclass(frozen=True)
class RunnerConfig:
    """Attributes:
    chunk_size: rows (query x counterfactual) per chunk, rounded up to a multiple of the device
      count; a run with fewer rows makes one chunk of its own size.
    slots: refillable slots per device for iterative searches; ``None`` runs each device's share
      of a chunk as one batch until its slowest query finishes (no progress within a chunk).
    segment: search iterations between slot refills.
    taper: smaller batch sizes the slots shrink to as a chunk drains (see
      :func:`jaxcf.methods.solve_pool`); ``None`` for the default halvings, ``()`` for none.
    progress_seconds: aimed-at time between progress updates within a chunk (searches only).
    """

    chunk_size: int = 1024
    slots: int | None = 128
    segment: int = 4
    taper: tuple[int, ...] | None = None
    progress_seconds: float = 2.0

    def __post_init__(self):
        validation.at_least(self, 1, "chunk_size", "segment")
        if self.slots is not None:
            validation.at_least(self, 1, "slots")
        validation.positive(self, "progress_seconds")
        if self.taper is not None and any(
            isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in self.taper
        ):
            raise ValueError(f"RunnerConfig.taper must hold positive ints, got {self.taper}")


def data_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all, of every process), axis name ``"data"``.

    Devices are ordered by process, so that each process's devices hold one contiguous block of
    every chunk's rows.
    """
    devices = list(devices if devices is not None else jax.devices())
    devices.sort(key=lambda d: d.process_index)  # stable: keeps the order within a process
    return Mesh(np.array(devices), ("data",))
