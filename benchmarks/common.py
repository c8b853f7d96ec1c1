"""Helpers shared by the benchmarks: which device a result was measured on, and timing with
compilation apart."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import jax

from jaxcf.core import to_jsonable, write_json_atomic, write_text_atomic


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


def compile_timed(fn, *args) -> tuple[object, float]:
    """``jax.jit(fn)`` lowered and compiled for ``args``, and the seconds that took."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - start


def timed(fn, *args) -> tuple[object, float]:
    """``fn(*args)`` and its wall seconds, ended by ``jax.block_until_ready``."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def one_query_per_call(fn, explainer, x, target, keys) -> tuple[float, float]:
    """``(first call seconds, steady seconds)`` of calling the jitted ``fn(explainer, x, t, k)``
    on one query at a time in a Python loop, as per-instance code runs (the first call, which
    compiles, is timed apart and not repeated)."""
    _, first = timed(fn, explainer, x[:1], target[:1], keys[:1])
    start = time.perf_counter()
    for i in range(len(x)):
        jax.block_until_ready(fn(explainer, x[i : i + 1], target[i : i + 1], keys[i : i + 1]))
    return first, time.perf_counter() - start


def write_results(out: Path, name: str, results: dict, markdown: str) -> Path:
    """Writes ``<out>/<name>_<device>.json`` (``results``) and ``.md`` (``markdown``), the
    device as :func:`device_name` names it; returns the path without its suffix."""
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{name}_{device_name().replace(' ', '_')}"
    write_json_atomic(stem.with_suffix(".json"), to_jsonable(results))
    write_text_atomic(stem.with_suffix(".md"), markdown)
    return stem
