"""Helpers shared by the benchmarks: which device a result was measured on."""

from __future__ import annotations

import os
import platform

import jax


def device_name() -> str:
    """``"cpu"``, or the platform and device kind (e.g. ``"gpu NVIDIA H200"``)."""
    device = jax.devices()[0]
    kind = str(getattr(device, "device_kind", device.platform))
    return device.platform if kind == device.platform else f"{device.platform} {kind}"


def cpus() -> int:
    """Host CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def environment() -> dict:
    """What every benchmark record names: device, device count, host CPU and JAX version."""
    return {
        "device": device_name(),
        "device_count": jax.device_count(),
        "host": {"processor": platform.processor() or platform.machine(), "cpus": cpus()},
        "jax": jax.__version__,
    }
