"""Chunked, sharded, resumable batch execution of any explainer.

:func:`run` explains ``N`` queries (each with its own target), ``num_cfs`` counterfactuals each,
in fixed-size chunks of rows:

* every chunk has the same shape (the last one is padded with copies of its last row, whose
  results are dropped), so the whole run compiles one program;
* each chunk is split over a 1-D device mesh (axis ``"data"``) with ``shard_map``: every device
  explains its own rows with no communication;
* row ``k`` of query ``q`` gets the key ``fold_in(fold_in(key, q), k)``, so with per-query
  explainers (the protocol of :mod:`jaxcf.core`) a counterfactual depends neither on the
  chunk size, its position, the padding nor the number of devices;
* iterative searches (:class:`~jaxcf.methods.SearchExplainer`) run through refillable slots
  (:mod:`jaxcf.methods`), which stop spending compute on finished queries. The slot pool
  advances in host-visible steps of a few seconds (its state stays on the device, donated from
  call to call), so the progress bar moves *within* a chunk and shows queries finished and the
  success rate so far; one-pass explainers advance the bar per chunk. A
  :class:`~jaxcf.core.Retry` around a search runs each attempt through the slots too, on
  the rows still unsolved, with the keys and results ``Retry`` itself would give;
* each finished chunk is written atomically to ``out_dir/chunks/``; a run killed at any point
  and restarted with the same arguments skips the chunks already on disk. The final
  ``results.npz`` (a :class:`~jaxcf.core.Results`) is written atomically once all chunks are
  there.

Queries come from a :mod:`query source <jaxcf.runner>` read one chunk at a time
(:func:`run_source`; :func:`run` wraps in-memory arrays in one), and the record is written a
block at a time and returned memory-mapped, so host memory stays at about a chunk whatever the
number of queries.

**Many processes.** After :func:`jaxcf.runner.distributed.initialize`, the default mesh spans every
process's devices. Each process reads only the rows its own devices explain, writes them as its
part of the chunk (``chunk_00007_p1.npz``), and process 0 merges all parts into the record. The
processes check that they were given the same arguments, agree on which chunks are done (a chunk
is done when every process's part is on disk, so a job restarted after any process was killed
resumes), and keep the slot pools' host steps in step. Rows get the same keys and, on the same
number of devices, the same results as in one process.
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

from jaxcf.core import (
    RESULT_FILE,
    CFResult,
    Results,
    Retry,
    check_explainer,
    plain_leaf,
    tree_where,
    validation,
    write_atomic,
    write_json_atomic,
    write_record,
)
from jaxcf.methods import (
    SearchExplainer,
    pool_advance,
    pool_compact,
    pool_running,
    pool_start,
    solve,
    stage_sizes,
)
from jaxcf.runner import distributed
from jaxcf.runner._sources import ArraySource, QuerySource, describe, open_source

MANIFEST_FILE = "manifest.json"
_CHUNK_FIELDS = ("x_cf", "success", "n_iter", "score")
_SECONDS = "chunk_seconds"


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
        h.update(np.ascontiguousarray(np.asarray(plain_leaf(leaf))).tobytes())
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


def query_keys(seed: int, n: int, cf: int = 0) -> jax.Array:
    """``[n]`` the keys a run with ``seed`` gives counterfactual ``cf`` of queries ``0 .. n-1``
    (to reproduce a row outside the runner, e.g. a baseline from the same noise)."""
    query = jnp.arange(n, dtype=jnp.uint32)
    return _row_keys(jax.random.key(seed), query, jnp.full(n, cf, jnp.uint32))


def _row_keys(
    run_key: jax.Array, query: jax.Array, cf: jax.Array, attempt: int | None = None
) -> jax.Array:
    """Row key ``fold_in(fold_in(run_key, query), cf)``, per row; folded once more with
    ``attempt`` for an attempt of a :class:`~jaxcf.core.Retry` (as ``Retry`` folds)."""
    fold = jax.vmap(jax.random.fold_in)
    keys = fold(fold(jnp.broadcast_to(run_key, query.shape), query), cf)
    if attempt is None:
        return keys
    return jax.vmap(jax.random.fold_in, (0, None))(keys, attempt)


# Inputs of every program: (explainer or search, run key) replicated, then the chunk's rows
# (x, target, query, cf, valid) split over "data".
_IN_SPECS = (P(), P(), P("data"), P("data"), P("data"), P("data"), P("data"))


@_cached
def _one_pass_program(mesh: Mesh):
    def local(explainer, run_key, x, target, query, cf, valid):
        return explainer(x, target, _row_keys(run_key, query, cf))

    return jax.jit(
        jax.shard_map(local, mesh=mesh, in_specs=_IN_SPECS, out_specs=P("data"), check_vma=False)
    )


@_cached
def _solve_program(mesh: Mesh, attempt: int | None):
    def local(search, run_key, x, target, query, cf, valid):
        return solve(search, x, target, _row_keys(run_key, query, cf, attempt), valid=valid)

    return jax.jit(
        jax.shard_map(local, mesh=mesh, in_specs=_IN_SPECS, out_specs=P("data"), check_vma=False)
    )


@_cached
def _pool_programs(mesh: Mesh, sizes: tuple[int, ...], segment: int, attempt: int | None):
    """``start``, and per stage ``advance`` / ``compact`` jitted over the mesh (``attempt``: the
    :class:`~jaxcf.core.Retry` attempt the keys are folded with, or None). ``advance`` and
    ``compact`` also return the pools' status summed over all devices (replicated, so that every
    process reads the same numbers and takes the same next step)."""
    spec = P("data")

    def sharded(fn, in_specs, out_specs=spec, donate=()):
        return jax.jit(
            jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False),
            donate_argnums=donate,
        )

    def start(search, run_key, x, target, query, cf, valid):
        keys = _row_keys(run_key, query, cf, attempt)
        return _lead(pool_start(search, x, target, keys, slots=sizes[0], valid=valid))

    def status(pool, nxt):
        counts = jnp.stack(
            [pool.done, pool.solved, pool_running(pool, nxt).astype(jnp.int32)]
        ).astype(jnp.int32)
        return jax.lax.psum(counts, "data")

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

        out = (spec, P())
        advances.append(_quiet(sharded(advance, (P(), spec, P()), out, donate=(1,))))
        compacts.append(_quiet(sharded(compact, (spec,), out, donate=(0,))))
    return (sharded(start, _IN_SPECS), *advances, *compacts)


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

    def note(self, text: str) -> None:
        """Shows ``text`` beside the bar until the next :meth:`show`."""
        self.bar.set_postfix_str(text)

    def chunk_done(self, rows: int, solved: int) -> None:
        self.show(rows, solved)
        self.base += rows
        self.seen += rows
        self.solved_base += solved

    def close(self) -> None:
        self.bar.close()


def _run_pool(search, mesh, config, inputs, n_valid: int, progress, attempt: int | None):
    """One chunk through per-device slot pools, advanced a few seconds at a time. Returns the
    pools' results, ``[devices, rows per device, ...]`` per leaf."""
    per_device = inputs[1].shape[0] // mesh.size
    sizes = stage_sizes(config.slots, per_device, config.taper)
    programs = _pool_programs(mesh, sizes, config.segment, attempt)
    start, advances, compacts = (
        programs[0],
        programs[1 : 1 + len(sizes)],
        programs[1 + len(sizes) :],
    )
    pool = start(search, *inputs)
    segments = 1  # grows to about progress_seconds worth once a call has been timed
    for k in range(len(sizes)):
        if k:
            pool, status = compacts[k](pool)
            if not _replicated_value(status)[2]:
                continue
        while True:
            t0 = time.perf_counter()
            pool, status = advances[k](search, pool, jnp.asarray(segments, jnp.int32))
            done, solved, running = _replicated_value(status)
            per_segment = (time.perf_counter() - t0) / segments
            # Every process must pass the same count: process 0's timing decides.
            segments = distributed.broadcast(
                int(np.clip(config.progress_seconds / max(per_segment, 1e-6), 1, 1 << 20))
            )
            progress.show(min(int(done), n_valid), int(solved))
            if not running:
                break
    return pool.out


def _searches(explainer: Any) -> list[Any] | None:
    """The searches the runner drives through its own loops, one per attempt: the search of a
    :class:`~jaxcf.methods.SearchExplainer`, or of each attempt of a
    :class:`~jaxcf.core.Retry` around one; None for any other explainer (run as a whole)."""
    if isinstance(explainer, SearchExplainer):
        return [explainer.search]
    if isinstance(explainer, Retry) and isinstance(explainer.explainer, SearchExplainer):
        return [explainer.attempt(i).search for i in range(len(explainer.schedule))]
    return None


class _Silent:
    """Progress for a retry's pass: the bar already counted its rows."""

    def show(self, done: int, solved: int) -> None:
        pass


@dataclasses.dataclass
class _ChunkRun:
    """One chunk through a search (:func:`_searches`), results on the host (this process's
    rows, padding included)."""

    mesh: Mesh
    config: RunnerConfig
    share: _Share
    inputs: tuple  # (run key, x, target, query, cf, valid): global arrays
    valid: np.ndarray  # [rows of this process] bool: not padding
    n_valid: int  # rows of the chunk that are not padding (all processes)

    def search(self, searches: list[Any], explainer: Any, bar: _Progress) -> CFResult:
        """A search's rows; for a :class:`~jaxcf.core.Retry`, each further attempt runs
        through the same loops on the rows every earlier attempt failed (the slots stay full of
        live queries) and the results merge as ``Retry.__call__`` merges them: same keys, same
        counterfactuals, same ``extras``."""
        if len(searches) == 1 and not isinstance(explainer, Retry):
            return self.run_attempt(searches[0], self.inputs, None, bar, self.n_valid)
        result = self.run_attempt(searches[0], self.inputs, 0, bar, self.n_valid)
        attempt = np.zeros(len(self.valid), np.int32)
        for i in range(1, len(searches)):
            todo = self.valid & ~result.success
            if not distributed.gather(np.asarray(todo.any())).any():
                break  # as Retry skips an attempt no row needs
            value = explainer.schedule[i]
            bar.note(f"retrying {explainer.field}={value:g}")
            inputs = (*self.inputs[:-1], self.share.put(todo))
            new = self.run_attempt(searches[i], inputs, i, _Silent(), int(todo.sum()))
            result = tree_where(todo, new, result, xp=np)
            attempt[todo] = i
        values = np.asarray(explainer.schedule, np.float32)[attempt]
        extras = {**result.extras, "attempt": attempt, explainer.field: values}
        return result._replace(extras=extras)

    def run_attempt(self, search, inputs, attempt: int | None, progress, n_valid: int) -> CFResult:
        """One pass of ``search`` over the rows ``inputs`` marks valid (``attempt``: the key fold,
        None outside a Retry)."""
        if self.config.slots is None:
            result = _solve_program(self.mesh, attempt)(search, *inputs)
            return self.share.fetch(jax.block_until_ready(result), False)
        result = _run_pool(search, self.mesh, self.config, inputs, n_valid, progress, attempt)
        return self.share.fetch(jax.block_until_ready(result), True)


def _replicated_value(array: jax.Array) -> np.ndarray:
    """A replicated array's value, read from this process's own copy."""
    return np.asarray(array.addressable_shards[0].data)


def _replicate(tree: Any, mesh: Mesh) -> Any:
    """Copies a pytree of host or single-device values to every device of ``mesh`` (in every
    process: each process supplies its own, identical, copy)."""
    sharding = NamedSharding(mesh, P())

    def put(leaf):
        if not isinstance(leaf, jax.Array | np.ndarray | np.generic):
            return leaf
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = put(jax.random.key_data(leaf))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        value = np.asarray(leaf)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    return jax.tree.map(put, tree)


class _Share:
    """The positions ``[a, b)`` of a chunk that this process's devices hold, and how to build
    the chunk's global arrays from this process's rows alone."""

    def __init__(self, mesh: Mesh, chunk: int):
        self.sharding = NamedSharding(mesh, P("data"))
        index = self.sharding.addressable_devices_indices_map((chunk,))
        spans = sorted((i[0].start or 0, i[0].stop or chunk) for i in index.values())
        if any(x[1] != y[0] for x, y in zip(spans, spans[1:], strict=False)):
            raise ValueError(
                "each process's devices must be neighbours in the mesh (data_mesh() orders them "
                "so); this mesh interleaves processes"
            )
        self.a, self.b, self.chunk = spans[0][0], spans[-1][1], chunk

    def put(self, local: np.ndarray) -> jax.Array:
        """The global ``[chunk, ...]`` array whose positions ``[a, b)`` are ``local``."""
        shape = (self.chunk, *local.shape[1:])

        def block(index):
            rows = index[0]
            return local[(rows.start or 0) - self.a : (rows.stop or self.chunk) - self.a]

        return jax.make_array_from_callback(shape, self.sharding, block)

    def fetch(self, tree: Any, lead: bool) -> Any:
        """This process's rows ``[a, b)`` of a chunk's results (``lead``: leaves shaped
        ``[devices, rows per device, ...]``, as pools give them)."""

        def leaf(array):
            parts = []
            for shard in array.addressable_shards:
                data = np.asarray(shard.data)
                start = shard.index[0].start or 0
                if lead:
                    start, data = start * data.shape[1], data.reshape(-1, *data.shape[2:])
                parts.append((start, data))
            parts.sort(key=lambda p: p[0])
            return np.concatenate([d for _, d in parts])

        return jax.tree.map(leaf, tree)


def run(
    explainer: Any,
    x: Any,
    target: Any,
    out_dir: str | Path,
    *,
    group: Any = None,
    **kwargs: Any,
) -> Results:
    """Explains every query of ``x [N, ...]`` towards its target, ``num_cfs`` times; resumable.

    In-memory queries: the whole batch is checked by the explainer's ``check`` first, then run
    as :func:`run_source` runs a :class:`~jaxcf.runner.ArraySource` of it (see there for the
    keyword arguments).

    Args:
      explainer: any explainer (:mod:`jaxcf.core`).
      x: ``[N, ...]`` queries (host array).
      target: ``[N]`` int classes, ``[N, C]`` class distributions or ``[N]`` float regression
        values, passed through untouched.
      out_dir: where chunks, the manifest and ``results.npz`` go.
      group: optional ``[N]`` int group id per query (a protocol's sets), copied to the rows.
      **kwargs: ``config``, ``num_cfs``, ``seed``, ``mesh``, ``desc``, ``progress``, ``meta``,
        ``on_chunk`` of :func:`run_source`.

    Raises:
      TypeError: ``explainer`` is no explainer, or bad input types (from its ``check``).
      ValueError: bad inputs, a ``group`` of the wrong length, or as :func:`run_source`.
    """
    check_explainer(explainer)
    xs, ts = explainer.check(x, target)
    xs, ts = np.asarray(xs), np.asarray(ts)
    n = len(xs)
    group = np.zeros(n, np.int32) if group is None else np.asarray(group)
    if group.shape != (n,) or not np.issubdtype(group.dtype, np.integer):
        raise ValueError(f"group must be [N] = [{n}] integers, got {group.dtype} {group.shape}")
    return run_source(explainer, ArraySource(xs, ts, group), out_dir, **kwargs)


def run_source(
    explainer: Any,
    source: QuerySource | str | Path,
    out_dir: str | Path,
    *,
    config: RunnerConfig = RunnerConfig(),
    num_cfs: int = 1,
    seed: int = 0,
    mesh: Mesh | None = None,
    desc: str = "explaining",
    progress: bool = True,
    meta: Mapping[str, Any] | None = None,
    on_chunk: Callable[[int, dict[str, Any]], None] | None = None,
) -> Results:
    """Explains every query of a source, a chunk at a time, ``num_cfs`` times each; resumable.

    Host memory stays at about one chunk whatever the number of queries: each chunk's rows are
    read from ``source`` when it runs (each process reads only its own devices' rows), checked
    by the explainer's ``check``, and written to ``out_dir/chunks``; the record is then written
    a block at a time and returned memory-mapped.

    Args:
      explainer: any explainer (:mod:`jaxcf.core`).
      source: a :class:`~jaxcf.runner.QuerySource`, or a directory of ``.npy`` files
        (:class:`~jaxcf.runner.NpySource`).
      out_dir: where chunks, the manifest and ``results.npz`` go. A directory holding a run
        with other arguments is an error rather than silently mixed. With several processes it
        must be on a file system they all see.
      config: chunking and slot settings.
      num_cfs: counterfactuals per query, each with its own key; rows ``q * num_cfs + k``.
      seed: the run's PRNG seed (row keys are folded from it).
      mesh: 1-D device mesh with axis ``"data"``; default :func:`data_mesh` (every device of
        every process).
      desc: progress-bar label.
      progress: show the progress bar (process 0 only).
      meta: JSON-ready metadata stored in the record (method name, config, ...).
      on_chunk: called as ``on_chunk(index, info)`` after each chunk is safely on disk (for
        logging; ``info`` holds the chunk's wall time and row count).

    Returns:
      The :class:`~jaxcf.core.Results` written to ``out_dir/results.npz``, memory-mapped.

    Raises:
      TypeError: ``explainer`` is no explainer, or bad input types (from its ``check``).
      ValueError: bad inputs, ``num_cfs < 1``, an ``out_dir`` holding another run (other
        explainer, data, seed, ``num_cfs``, chunk size or process count), processes started
        with different arguments, or a source whose rows do not match what the run started
        with.
    """
    check_explainer(explainer)
    if isinstance(num_cfs, bool) or not isinstance(num_cfs, int) or num_cfs < 1:
        raise ValueError(f"num_cfs must be a positive int, got {num_cfs!r}")
    source = open_source(source)
    n = len(source)
    mesh = mesh if mesh is not None else data_mesh()
    nproc, pid = jax.process_count(), jax.process_index()
    rows = n * num_cfs
    # A run smaller than a chunk gets a chunk of its own size: padding rows would hold slots.
    chunk = _padded_chunk(mesh.size, min(config.chunk_size, rows))
    n_chunks = -(-rows // chunk)
    share = _Share(mesh, chunk)

    def local_inputs(c: int) -> dict[str, np.ndarray]:
        """This process's rows of chunk ``c``, checked (padding repeats the last row)."""
        lo, hi = c * chunk, min((c + 1) * chunk, rows)
        row = np.minimum(np.arange(lo + share.a, lo + share.b), hi - 1)
        query = row // num_cfs
        block = source.read(int(query[0]), int(query[-1]) + 1)
        picked = {k: v[query - query[0]] for k, v in block.items()}
        xs, ts = explainer.check(picked["x"], picked["target"])
        return {
            "x": np.asarray(xs),
            "target": np.asarray(ts),
            "group": picked["group"],
            "query": query.astype(np.uint32),
            "cf": (row % num_cfs).astype(np.uint32),
            "valid": np.arange(lo + share.a, lo + share.b) < hi,
        }

    out_dir = Path(out_dir)
    chunk_dir = out_dir / "chunks"
    settings = {"chunk": chunk, "num_cfs": num_cfs, "seed": seed}
    identity = source.identity()
    fp = fingerprint(explainer, {}, {**settings, "source": identity})
    distributed.agree(fp, "arguments (explainer, data, seed, num_cfs or chunk size)")
    manifest_path = out_dir / MANIFEST_FILE
    manifest = {
        "fingerprint": fp,
        "rows": rows,
        "chunk_size": chunk,
        "processes": nproc,
        "source": describe(source),
        "source_identity": identity,
    }
    problem = _manifest_problem(manifest_path, manifest)
    bad = distributed.gather(np.asarray(problem is not None))
    if bad.any():
        raise ValueError(problem or f"{out_dir}: another process found its manifest unusable")
    pending = {0: local_inputs(0)}  # bad input raises before anything is written
    chunk_dir.mkdir(parents=True, exist_ok=True)
    if pid == 0:
        write_json_atomic(manifest_path, manifest)
    distributed.barrier("jaxcf-runner-start")

    runnable = _replicate(explainer, mesh)
    searches = _searches(runnable)  # attempts share the replicated arrays
    run_key = _replicate(jax.random.key(seed), mesh)
    parts = [_part_path(chunk_dir, c, pid, nproc) for c in range(n_chunks)]
    done = distributed.all_true([p.exists() for p in parts])
    todo = [c for c in range(n_chunks) if not done[c]]
    if 0 not in todo:
        pending.clear()  # checked only; chunk 0 is on disk already
    bar = _Progress(rows, min(rows, (n_chunks - len(todo)) * chunk), desc, progress and pid == 0)
    if len(todo) < n_chunks:
        bar.bar.set_postfix_str(f"resumed {n_chunks - len(todo)}/{n_chunks} chunks")
    for c in todo:
        lo, hi = c * chunk, min((c + 1) * chunk, rows)
        local = pending.pop(c) if c in pending else local_inputs(c)
        inputs = (run_key, *(share.put(local[k]) for k in ("x", "target", "query", "cf", "valid")))
        t0 = time.perf_counter()
        if searches is None:
            result = _one_pass_program(mesh)(runnable, *inputs)
            result = share.fetch(jax.block_until_ready(result), False)
        else:
            chunk_run = _ChunkRun(mesh, config, share, inputs, local["valid"], hi - lo)
            result = chunk_run.search(searches, explainer, bar)
        seconds = time.perf_counter() - t0
        keep = local["valid"]  # this process's rows of the chunk that are not padding
        arrays = {k: local[k][keep] for k in ("x", "target", "group")}
        arrays.update({f: np.asarray(getattr(result, f))[keep] for f in _CHUNK_FIELDS})
        arrays.update({f"extra_{k}": np.asarray(v)[keep] for k, v in result.extras.items()})
        arrays["row_start"] = np.asarray(lo + min(share.a, hi - lo))
        arrays[_SECONDS] = np.asarray(seconds)  # lands with the data: a kill cannot split them
        write_atomic(parts[c], lambda f, a=arrays: np.savez(f, **a))
        solved = int(distributed.gather(np.asarray(arrays["success"].sum())).sum())
        bar.chunk_done(hi - lo, solved)
        if on_chunk is not None:
            on_chunk(c, {"seconds": seconds, "rows": hi - lo})
    bar.close()

    distributed.barrier("jaxcf-runner-chunks-done")
    if pid == 0:
        _merge(
            chunk_dir,
            out_dir / RESULT_FILE,
            n_chunks,
            chunk,
            rows,
            num_cfs,
            nproc,
            {
                **(meta or {}),
                **settings,
                "explainer": type(explainer).__name__,
            },
            mesh.size,
        )
    distributed.barrier("jaxcf-runner-merged")
    return Results.load(out_dir, mmap=True)


def _manifest_problem(path: Path, manifest: dict[str, Any]) -> str | None:
    """Why an existing manifest forbids this run, or ``None``."""
    if not path.exists():
        return None
    old = json.loads(path.read_text())
    if old.get("source_identity", manifest["source_identity"]) != manifest["source_identity"]:
        return (
            f"{path.parent} holds a run with different arguments: its queries changed since "
            f"it started (then: {old.get('source')}; now: {manifest['source']}); restore them "
            "or use a fresh out_dir"
        )
    if old.get("fingerprint") != manifest["fingerprint"]:
        return (
            f"{path.parent} holds a run with different arguments (explainer, inputs, seed, "
            "num_cfs or chunk size); use a fresh out_dir or delete it"
        )
    if old.get("processes", 1) != manifest["processes"]:
        return (
            f"{path.parent} holds a run started with {old.get('processes', 1)} processes; "
            f"resume it with that many (this job has {manifest['processes']})"
        )
    return None


def _merge(chunk_dir, path, n_chunks, chunk, rows, num_cfs, nproc, meta, devices) -> None:
    """Writes the record from every process's part of every chunk, a chunk at a time."""

    def parts(c):
        out = []
        for p in range(nproc):
            part = _part_path(chunk_dir, c, p, nproc)
            if not part.exists():
                raise FileNotFoundError(
                    f"{part} is missing: with several processes, out_dir must be on a file "
                    "system every process sees"
                )
            out.append(np.load(part, allow_pickle=False))
        return out

    chunk_seconds, fields = [], {}
    for c in range(n_chunks):
        files = parts(c)
        chunk_seconds.append(max(float(f[_SECONDS]) for f in files))
        covered = sorted((int(f["row_start"]), len(f["success"])) for f in files)
        position = c * chunk
        for start, count in covered:
            if start != position:
                raise ValueError(f"chunk {c}: its parts do not cover rows {position} onwards")
            position += count
        if position != min((c + 1) * chunk, rows):
            raise ValueError(f"chunk {c}: its parts end at row {position}")
        if c == 0:
            first = files[0]
            names = [k for k in first.files if k not in ("row_start", _SECONDS)]
            fields = {k: (first[k].shape[1:], first[k].dtype) for k in names}
        for f in files:
            f.close()
    fields["query"] = ((), np.dtype(np.int64))
    fields["cf"] = ((), np.dtype(np.int32))

    def blocks(name):
        for c in range(n_chunks):
            if name in ("query", "cf"):
                row = np.arange(c * chunk, min((c + 1) * chunk, rows))
                yield row // num_cfs if name == "query" else (row % num_cfs).astype(np.int32)
                continue
            files = sorted(parts(c), key=lambda f: int(f["row_start"]))
            for f in files:
                yield f[name]
                f.close()

    write_record(
        path,
        rows,
        fields,
        blocks,
        timings={
            "seconds": float(sum(chunk_seconds)),
            "chunk_seconds": chunk_seconds,
            "devices": devices,
            "processes": nproc,
        },
        meta=meta,
    )


def _part_path(chunk_dir: Path, c: int, process: int, processes: int) -> Path:
    """Chunk ``c``'s file, or with several processes, one process's part of it."""
    if processes == 1:
        return chunk_dir / f"chunk_{c:05d}.npz"
    return chunk_dir / f"chunk_{c:05d}_p{process}.npz"


def load_results(out_dir: str | Path, *, mmap: bool = False) -> Results:
    """Reads ``results.npz`` written by :func:`run` (same as :meth:`Results.load`)."""
    return Results.load(out_dir, mmap=mmap)
