"""Chunked, sharded, resumable batch execution of any explainer.

:func:`run` explains ``N`` queries (each with its own target), ``num_cfs`` counterfactuals each,
in fixed-size chunks of rows:

* every chunk has the same shape (the last one is padded with copies of its last row, whose
  results are dropped), so the whole run compiles one program;
* each chunk is split over a 1-D device mesh (axis ``"data"``) with ``shard_map``: every device
  explains its own rows with no communication;
* row ``k`` of query ``q`` gets the key ``fold_in(fold_in(key, q), k)``, so with per-query
  explainers (the protocol of :mod:`jaxcf.explainer`) a counterfactual depends neither on the
  chunk size, its position, the padding nor the number of devices;
* iterative searches (:class:`~jaxcf.methods.SearchExplainer`) run through refillable slots
  (:mod:`jaxcf.methods.search`), which stop spending compute on finished queries. The slot pool
  advances in host-visible steps of a few seconds (its state stays on the device, donated from
  call to call), so the progress bar moves *within* a chunk and shows queries finished and the
  success rate so far; one-pass explainers advance the bar per chunk;
* each finished chunk is written atomically to ``out_dir/chunks/``; a run killed at any point
  and restarted with the same arguments skips the chunks already on disk. The final
  ``results.npz`` (a :class:`~jaxcf.results.Results`) is written atomically once all chunks are
  there.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from jaxcf import validation
from jaxcf.explainer import CFResult, check_explainer
from jaxcf.io import write_atomic, write_json_atomic
from jaxcf.methods.search import (
    SearchExplainer,
    pool_advance,
    pool_compact,
    pool_running,
    pool_start,
    solve,
    stage_sizes,
)
from jaxcf.pure import _plain
from jaxcf.results import RESULT_FILE, Results

MANIFEST_FILE = "manifest.json"
_CHUNK_FIELDS = ("x_cf", "success", "n_iter", "score")
_SECONDS = "chunk_seconds"


@dataclasses.dataclass(frozen=True)
class RunnerConfig:
    """Attributes:
    chunk_size: rows (query x counterfactual) per chunk, rounded up to a multiple of the device
      count.
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
    """A 1-D mesh over ``devices`` (default: all), axis name ``"data"``."""
    return Mesh(np.array(devices if devices is not None else jax.devices()), ("data",))


def _padded_chunk(n_devices: int, chunk_size: int) -> int:
    return -(-chunk_size // n_devices) * n_devices


def fingerprint(explainer: Any, arrays: Mapping[str, Any], extra: Any) -> str:
    """Hash of everything that determines a run's results: the explainer's structure, static
    configuration and arrays (PRNG keys by their bits), the inputs and the run's settings."""
    h = hashlib.sha256()
    leaves, treedef = jax.tree.flatten(explainer)
    # Static parts may hold functions, whose repr carries a per-process address.
    h.update(re.sub(r" at 0x[0-9a-fA-F]+", "", str(treedef)).encode())
    for leaf in leaves:
        h.update(np.ascontiguousarray(np.asarray(_plain(leaf))).tobytes())
    for name in sorted(arrays):
        a = np.ascontiguousarray(np.asarray(arrays[name]))
        h.update(f"{name}:{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    h.update(json.dumps(extra, sort_keys=True).encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------- programs
# Built once per mesh and schedule and cached, so a second run with the same shapes compiles
# nothing. Pool programs give every leaf of the pool a leading device axis (one pool per
# device), sharded over "data".


def _lead(tree):
    return jax.tree.map(lambda a: a[None], tree)


def _unlead(tree):
    return jax.tree.map(lambda a: a[0], tree)


_PROGRAMS: dict[tuple, Any] = {}


def _cached(fn):
    """Memoises a program builder on its (hashable) arguments, in :data:`_PROGRAMS`."""

    @functools.wraps(fn)
    def wrapper(*args):
        key = (fn.__name__, *args)
        if key not in _PROGRAMS:
            _PROGRAMS[key] = fn(*args)
        return _PROGRAMS[key]

    return wrapper


@_cached
def _one_pass_program(mesh: Mesh):
    def local(explainer, x, target, key):
        return explainer(x, target, key)

    spec = P("data")
    return jax.jit(
        jax.shard_map(
            local, mesh=mesh, in_specs=(P(), spec, spec, spec), out_specs=spec, check_vma=False
        )
    )


@_cached
def _solve_program(mesh: Mesh):
    def local(search, x, target, key, valid):
        return solve(search, x, target, key, valid=valid)

    spec = P("data")
    return jax.jit(
        jax.shard_map(
            local,
            mesh=mesh,
            in_specs=(P(), spec, spec, spec, spec),
            out_specs=spec,
            check_vma=False,
        )
    )


@_cached
def _pool_programs(mesh: Mesh, sizes: tuple[int, ...], segment: int):
    """``start``, and per stage ``advance`` / ``compact`` jitted over the mesh."""
    spec = P("data")

    def sharded(fn, in_specs, donate=()):
        return jax.jit(
            jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=spec, check_vma=False),
            donate_argnums=donate,
        )

    def start(search, x, target, key, valid):
        return _lead(pool_start(search, x, target, key, slots=sizes[0], valid=valid))

    def status(pool, nxt):
        return pool.done[None], pool.solved[None], pool_running(pool, nxt)[None]

    advances, compacts = [], []
    for k in range(len(sizes)):
        nxt = sizes[k + 1] if k + 1 < len(sizes) else 0

        def advance(search, pool, max_segments, nxt=nxt):
            pool = pool_advance(
                search, _unlead(pool), segment=segment, next_size=nxt, max_segments=max_segments
            )
            return _lead(pool), status(pool, nxt)

        def compact(pool, size=sizes[k], nxt=nxt):
            pool = pool_compact(_unlead(pool), size)
            return _lead(pool), status(pool, nxt)

        advances.append(_quiet(sharded(advance, (P(), spec, P()), donate=(1,))))
        compacts.append(_quiet(sharded(compact, (spec,), donate=(0,))))
    return (sharded(start, (P(), spec, spec, spec, spec)), *advances, *compacts)


def _quiet(fn):
    """``fn`` without XLA's note that some donated slot buffers could not be reused: the large
    per-query arrays (prepared states, results) are; the slots' are small."""

    @functools.wraps(fn)
    def wrapper(*args):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
            return fn(*args)

    wrapper._cache_size = fn._cache_size
    return wrapper


def program_cache_size() -> int:
    """Number of compiled runner programs (for tests: a second run must compile none)."""
    total = 0
    for value in _PROGRAMS.values():
        for fn in value if isinstance(value, tuple) else (value,):
            total += fn._cache_size()
    return total


# ----------------------------------------------------------------------------- chunks


class _Progress:
    """The progress bar: rows finished and the success rate so far."""

    def __init__(self, total: int, initial: int, desc: str, enabled: bool):
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="cf", disable=not enabled)
        self.bar.set_postfix_str("compiling" if initial < total else "")  # until a step shows
        self.base, self.solved_base, self.seen = initial, 0, 0

    def show(self, done: int, solved: int) -> None:
        """``done``/``solved`` rows of the current chunk so far."""
        self.bar.update(self.base + done - self.bar.n)
        finished = self.seen + done
        if finished:
            self.bar.set_postfix(success=f"{(self.solved_base + solved) / finished:.3f}")

    def chunk_done(self, rows: int, solved: int) -> None:
        self.show(rows, solved)
        self.base += rows
        self.seen += rows
        self.solved_base += solved

    def close(self) -> None:
        self.bar.close()


def _run_pool(
    search, mesh, config, x, target, key, valid, n_valid: int, progress: _Progress
) -> CFResult:
    """One chunk through per-device slot pools, advanced a few seconds at a time."""
    per_device = x.shape[0] // mesh.size
    sizes = stage_sizes(config.slots, per_device, config.taper)
    programs = _pool_programs(mesh, sizes, config.segment)
    start, advances, compacts = (
        programs[0],
        programs[1 : 1 + len(sizes)],
        programs[1 + len(sizes) :],
    )
    pool = start(search, x, target, key, valid)
    segments = 1  # grows to about progress_seconds worth once a call has been timed
    for k in range(len(sizes)):
        if k:
            pool, status = compacts[k](pool)
            if not np.any(jax.device_get(status[2])):
                continue
        while True:
            t0 = time.perf_counter()
            pool, (done, solved, running) = advances[k](
                search, pool, jnp.asarray(segments, jnp.int32)
            )
            done, solved, running = jax.device_get((done, solved, running))
            per_segment = (time.perf_counter() - t0) / segments
            segments = int(np.clip(config.progress_seconds / max(per_segment, 1e-6), 1, 1 << 20))
            progress.show(min(int(done.sum()), n_valid), int(solved.sum()))
            if not running.any():
                break
    return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), pool.out)


def _row_keys(key: jax.Array, query: np.ndarray, cf: np.ndarray) -> jax.Array:
    return _fold2(key, jnp.asarray(query, jnp.uint32), jnp.asarray(cf, jnp.uint32))


@jax.jit
def _fold2(key, query, cf):
    fold = jax.vmap(jax.random.fold_in)
    return fold(fold(jnp.broadcast_to(key, query.shape), query), cf)


def run(
    explainer: Any,
    x: Any,
    target: Any,
    out_dir: str | Path,
    *,
    config: RunnerConfig = RunnerConfig(),
    num_cfs: int = 1,
    seed: int = 0,
    group: Any = None,
    mesh: Mesh | None = None,
    desc: str = "explaining",
    progress: bool = True,
    meta: Mapping[str, Any] | None = None,
    on_chunk: Callable[[int, dict[str, Any]], None] | None = None,
) -> Results:
    """Explains every query of ``x [N, ...]`` towards its target, ``num_cfs`` times; resumable.

    Args:
      explainer: any explainer (:mod:`jaxcf.explainer`); its ``check`` validates the inputs
        before anything is computed or written.
      x: ``[N, ...]`` queries (host array).
      target: ``[N]`` int classes, ``[N, C]`` class distributions or ``[N]`` float regression
        values, passed through untouched.
      out_dir: where chunks, the manifest and ``results.npz`` go. A directory holding a run
        with other arguments is an error rather than silently mixed.
      config: chunking and slot settings.
      num_cfs: counterfactuals per query, each with its own key; rows ``q * num_cfs + k``.
      seed: the run's PRNG seed (row keys are folded from it).
      group: optional ``[N]`` int group id per query (a protocol's sets), copied to the rows.
      mesh: 1-D device mesh with axis ``"data"``; default all devices.
      desc: progress-bar label.
      progress: show the progress bar.
      meta: JSON-ready metadata stored in the record (method name, config, ...).
      on_chunk: called as ``on_chunk(index, info)`` after each chunk is safely on disk (for
        logging; ``info`` holds the chunk's wall time and row count).

    Returns:
      The :class:`~jaxcf.results.Results` also written to ``out_dir/results.npz``.

    Raises:
      TypeError: ``explainer`` is no explainer, or bad input types (from its ``check``).
      ValueError: bad inputs, ``num_cfs < 1``, a ``group`` of the wrong length, or an
        ``out_dir`` holding another run.
    """
    check_explainer(explainer)
    if isinstance(num_cfs, bool) or not isinstance(num_cfs, int) or num_cfs < 1:
        raise ValueError(f"num_cfs must be a positive int, got {num_cfs!r}")
    xs, ts = explainer.check(x, target)
    x, target = np.asarray(xs), np.asarray(ts)
    n = len(x)
    group = np.zeros(n, np.int32) if group is None else np.asarray(group)
    if group.shape != (n,) or not np.issubdtype(group.dtype, np.integer):
        raise ValueError(f"group must be [N] = [{n}] integers, got {group.dtype} {group.shape}")
    mesh = mesh if mesh is not None else data_mesh()
    chunk = _padded_chunk(mesh.size, config.chunk_size)
    rows = n * num_cfs
    n_chunks = -(-rows // chunk)
    query = np.repeat(np.arange(n), num_cfs)
    cf = np.tile(np.arange(num_cfs, dtype=np.int32), n)

    out_dir = Path(out_dir)
    chunk_dir = out_dir / "chunks"
    chunk_dir.mkdir(parents=True, exist_ok=True)
    settings = {"chunk": chunk, "num_cfs": num_cfs, "seed": seed}
    fp = fingerprint(explainer, {"x": x, "target": target, "group": group}, settings)
    manifest_path = out_dir / MANIFEST_FILE
    manifest = {"fingerprint": fp, "rows": rows, "chunk_size": chunk, "chunks": {}}
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if old.get("fingerprint") != fp:
            raise ValueError(
                f"{out_dir} holds a run with different arguments (explainer, inputs, seed, "
                "num_cfs or chunk size); use a fresh out_dir or delete it"
            )
        manifest = old
    write_json_atomic(manifest_path, manifest)

    search = explainer.search if isinstance(explainer, SearchExplainer) else None
    replicated = NamedSharding(mesh, P())
    data = NamedSharding(mesh, P("data"))
    runnable = jax.device_put(search if search is not None else explainer, replicated)
    run_key = jax.random.key(seed)
    todo = [c for c in range(n_chunks) if not _chunk_path(chunk_dir, c).exists()]
    bar = _Progress(rows, min(rows, (n_chunks - len(todo)) * chunk), desc, progress)
    if len(todo) < n_chunks:
        bar.bar.set_postfix_str(f"resumed {n_chunks - len(todo)}/{n_chunks} chunks")
    for c in todo:
        lo, hi = c * chunk, min((c + 1) * chunk, rows)
        idx = np.minimum(np.arange(lo, lo + chunk), hi - 1)  # pad with the last row
        xc, tc = x[query[idx]], target[query[idx]]
        keys = _row_keys(run_key, query[idx], cf[idx])
        valid = np.arange(chunk) < hi - lo
        put = lambda a: jax.device_put(a, data)  # noqa: E731
        t0 = time.perf_counter()
        if search is None:
            result = _one_pass_program(mesh)(runnable, put(xc), put(tc), put(keys))
        elif config.slots is None:
            result = _solve_program(mesh)(runnable, put(xc), put(tc), put(keys), put(valid))
        else:
            result = _run_pool(
                runnable, mesh, config, put(xc), put(tc), put(keys), put(valid), hi - lo, bar
            )
        result = jax.block_until_ready(result)
        seconds = time.perf_counter() - t0
        arrays = {f: np.asarray(getattr(result, f))[: hi - lo] for f in _CHUNK_FIELDS}
        arrays.update({f"extra_{k}": np.asarray(v)[: hi - lo] for k, v in result.extras.items()})
        arrays[_SECONDS] = np.asarray(seconds)  # lands with the data: a kill cannot split them
        write_atomic(_chunk_path(chunk_dir, c), lambda f, a=arrays: np.savez(f, **a))
        manifest["chunks"][str(c)] = {"seconds": seconds, "rows": hi - lo}
        write_json_atomic(manifest_path, manifest)
        bar.chunk_done(hi - lo, int(np.sum(arrays["success"])))
        if on_chunk is not None:
            on_chunk(c, manifest["chunks"][str(c)])
    bar.close()

    parts = []
    for c in range(n_chunks):
        with np.load(_chunk_path(chunk_dir, c), allow_pickle=False) as f:
            parts.append(dict(f))
    chunk_seconds = [float(p.pop(_SECONDS)) for p in parts]
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    results = Results(
        x=x[query],
        target=target[query],
        **{f: cat[f] for f in _CHUNK_FIELDS},
        query=query,
        cf=cf,
        group=group[query],
        extras={k[6:]: v for k, v in cat.items() if k.startswith("extra_")},
        timings={
            "seconds": float(sum(chunk_seconds)),
            "chunk_seconds": chunk_seconds,
            "devices": mesh.size,
        },
        meta={**(meta or {}), **settings, "explainer": type(explainer).__name__},
    )
    results.save(out_dir / RESULT_FILE)
    return results


def _chunk_path(chunk_dir: Path, c: int) -> Path:
    return chunk_dir / f"chunk_{c:05d}.npz"


def load_results(out_dir: str | Path) -> Results:
    """Reads ``results.npz`` written by :func:`run` (same as :meth:`Results.load`)."""
    return Results.load(out_dir)
