"""Chunked, sharded, resumable batch execution of any iterative counterfactual search.

:func:`run` explains ``N`` queries (each with its own target) in fixed-size chunks:

* every chunk has the same shape (the last one is padded with inert queries), so the whole run
  compiles one program;
* each chunk is split over a 1-D device mesh (axis ``"data"``) with ``shard_map``: every device
  runs the search on its own queries with no communication, so a query's counterfactual does not
  depend on the chunk size, its position, or the number of devices;
* inside a device the search runs either as one batched while-loop (``slots=None``) or through
  refillable slots (:func:`jaxcf.methods.solve_pool`), which stops spending compute on queries
  that have finished while their batch-mates have not;
* a progress bar advances between chunks (never inside the compiled loop);
* each finished chunk is written atomically to ``out_dir/chunks/``; a run killed at any point
  and restarted with the same arguments skips the chunks already on disk. The final
  ``results.npz`` is written atomically once all chunks are there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from jaxcf.methods.search import CFResult, IterativeSearch, solve, solve_pool
from jaxcf.report import write_atomic, write_json_atomic

RESULT_FILE = "results.npz"
MANIFEST_FILE = "manifest.json"


@dataclasses.dataclass(frozen=True)
class RunnerConfig:
    """Attributes:
    chunk_size: queries per chunk (rounded up to a multiple of the device count).
    slots: refillable slots per device; ``None`` runs each device's share of a chunk as one
      batch until its slowest query finishes.
    segment: iterations between slot refills.
    taper: smaller batch sizes the slots shrink to as a chunk drains (see
      :func:`jaxcf.methods.solve_pool`); ``None`` for the default halvings, ``()`` for none.
    """

    chunk_size: int = 1024
    slots: int | None = 128
    segment: int = 4
    taper: tuple[int, ...] | None = None


def data_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all), axis name ``"data"``."""
    return Mesh(np.array(devices if devices is not None else jax.devices()), ("data",))


def _padded_chunk(n_devices: int, chunk_size: int) -> int:
    return -(-chunk_size // n_devices) * n_devices


def make_chunk_fn(search: IterativeSearch, mesh: Mesh, config: RunnerConfig, chunk: int):
    """The jitted, sharded function ``(search, x, target, valid) -> CFResult`` for one chunk."""
    per_device = chunk // mesh.size
    slots = None if config.slots is None else min(config.slots, per_device)

    def local(search, x, target, valid):
        if slots is None or slots >= per_device:
            return solve(search, x, target, valid=valid)
        return solve_pool(
            search,
            x,
            target,
            valid=valid,
            slots=slots,
            segment=config.segment,
            taper=config.taper,
        )

    sharded = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(P(), P("data"), P("data"), P("data")),
        out_specs=P("data"),
        check_vma=False,
    )
    return jax.jit(sharded)


def fingerprint(search: IterativeSearch, x: np.ndarray, target: np.ndarray, extra: Any) -> str:
    """Hash of everything that determines a run's results (search params and config, inputs)."""
    h = hashlib.sha256()
    leaves, treedef = jax.tree.flatten(search)
    # Static parts may hold functions, whose repr carries a per-process address.
    h.update(re.sub(r" at 0x[0-9a-fA-F]+", "", str(treedef)).encode())
    for leaf in leaves:
        h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    h.update(np.ascontiguousarray(x).tobytes())
    h.update(np.ascontiguousarray(target).tobytes())
    h.update(json.dumps(extra, sort_keys=True).encode())
    return h.hexdigest()


def _flatten_result(r: CFResult, rows: slice) -> dict[str, np.ndarray]:
    out = {
        "counterfactuals": np.asarray(r.x_cf)[rows],
        "success": np.asarray(r.success)[rows],
        "iterations": np.asarray(r.n_iter)[rows],
        "target_prob": np.asarray(r.target_prob)[rows],
    }
    for k, v in r.extras.items():
        out[f"extra_{k}"] = np.asarray(v)[rows]
    return out


def run(
    search: IterativeSearch,
    x: np.ndarray,
    target: np.ndarray,
    out_dir: str | Path,
    *,
    config: RunnerConfig = RunnerConfig(),
    mesh: Mesh | None = None,
    desc: str = "explaining",
    progress: bool = True,
    on_chunk: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, np.ndarray]:
    """Explains every query of ``x [N, ...]`` towards ``target [N]``; resumable.

    Args:
      search: the method's search (inputs are assumed checked, e.g. by ``search.check``).
      x: ``[N, ...]`` queries (host array).
      target: ``[N]`` int targets.
      out_dir: where chunks, the manifest and ``results.npz`` go. A directory holding a run
        with other arguments is an error rather than silently mixed.
      config: chunking and slot settings.
      mesh: 1-D device mesh with axis ``"data"``; default all devices.
      desc: progress-bar label.
      progress: show the progress bar.
      on_chunk: called as ``on_chunk(index, info)`` after each chunk is safely on disk (for
        logging; ``info`` holds the chunk's wall time and query count).

    Returns:
      The contents of ``results.npz``: ``queries``, ``targets``, ``counterfactuals``,
      ``success``, ``iterations``, ``target_prob``, ``extra_*``; plus in the manifest the
      per-chunk wall times.
    """
    x = np.asarray(x, np.float32)
    target = np.asarray(target, np.int32)
    if len(x) != len(target):
        raise ValueError(f"x has {len(x)} queries but target has {len(target)}")
    if len(x) == 0:
        raise ValueError("empty batch: nothing to explain")
    mesh = mesh if mesh is not None else data_mesh()
    chunk = _padded_chunk(mesh.size, config.chunk_size)
    n = len(x)
    n_chunks = -(-n // chunk)

    out_dir = Path(out_dir)
    chunk_dir = out_dir / "chunks"
    chunk_dir.mkdir(parents=True, exist_ok=True)
    fp = fingerprint(search, x, target, {"chunk": chunk})
    manifest_path = out_dir / MANIFEST_FILE
    manifest = {"fingerprint": fp, "n": n, "chunk_size": chunk, "chunks": {}}
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if old.get("fingerprint") != fp:
            raise ValueError(
                f"{out_dir} holds a run with different arguments (search, inputs or chunk "
                "size); use a fresh out_dir or delete it"
            )
        manifest = old
    write_json_atomic(manifest_path, manifest)

    fn = make_chunk_fn(search, mesh, config, chunk)
    data = NamedSharding(mesh, P("data"))
    search = jax.device_put(search, NamedSharding(mesh, P()))  # parameters replicated
    todo = [c for c in range(n_chunks) if not (chunk_dir / f"chunk_{c:05d}.npz").exists()]
    # Resumed chunks count as done from the start (``initial``) so the rate shows new work only.
    done = min(n, (n_chunks - len(todo)) * chunk)
    bar = tqdm(total=n, initial=done, desc=desc, unit="query", disable=not progress)
    if done:
        bar.set_postfix_str(f"resumed {n_chunks - len(todo)}/{n_chunks} chunks")
    for c in todo:
        lo, hi = c * chunk, min((c + 1) * chunk, n)
        pad = chunk - (hi - lo)
        xc = np.concatenate([x[lo:hi], np.repeat(x[hi - 1 : hi], pad, axis=0)])
        tc = np.concatenate([target[lo:hi], np.repeat(target[hi - 1 : hi], pad)])
        valid = np.arange(chunk) < hi - lo
        t0 = time.perf_counter()
        result = fn(
            search,
            jax.device_put(xc, data),
            jax.device_put(tc, data),
            jax.device_put(valid, data),
        )
        result = jax.block_until_ready(result)
        seconds = time.perf_counter() - t0
        arrays = _flatten_result(result, slice(0, hi - lo))
        write_atomic(chunk_dir / f"chunk_{c:05d}.npz", lambda f, a=arrays: np.savez(f, **a))
        manifest["chunks"][str(c)] = {"seconds": seconds, "queries": hi - lo}
        write_json_atomic(manifest_path, manifest)
        bar.update(hi - lo)
        bar.set_postfix(success=f"{float(np.mean(np.asarray(result.success)[: hi - lo])):.3f}")
        if on_chunk is not None:
            on_chunk(c, manifest["chunks"][str(c)])
    bar.close()

    parts = [dict(np.load(chunk_dir / f"chunk_{c:05d}.npz")) for c in range(n_chunks)]
    results = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    results = {"queries": x, "targets": target, **results}
    write_atomic(out_dir / RESULT_FILE, lambda f: np.savez(f, **results))
    return results


def load_results(out_dir: str | Path) -> dict[str, np.ndarray]:
    """Reads ``results.npz`` written by :func:`run`."""
    with np.load(Path(out_dir) / RESULT_FILE) as f:
        return dict(f)
