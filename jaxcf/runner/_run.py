"""Chunked, sharded, resumable batch execution of any explainer: :func:`run` and :func:`run_source`.

:func:`run` explains ``N`` queries (each with its own target), ``num_cfs`` counterfactuals each,
in fixed-size chunks of rows. Every chunk has the same shape (the last one is padded with copies
of its last row, whose results are dropped), so the whole run compiles one program
(``_programs``); each chunk is split over a 1-D device mesh (axis ``"data"``) with ``shard_map``,
every row with its own key (``_keys``), and iterative searches run through refillable slots
(``_chunks``). Each finished chunk is written atomically to ``out_dir/chunks/``; a run killed at
any point and restarted with the same arguments skips the chunks already on disk, and the final
``results.npz`` (a :class:`~jaxcf.core.Results`) is written atomically once all chunks are there
(``_record``). Every file ends with a checksum of its content: a resumed run counts a chunk file
that is truncated or fails its checksum as not done (with a warning naming it) and computes it
again, and rebuilds a damaged ``results.npz`` from the chunks. Queries come from a
:mod:`query source <jaxcf.runner>` read one chunk at a time
(:func:`run_source`; :func:`run` wraps in-memory arrays in one), and the record is written a
block at a time and returned memory-mapped, so host memory stays at about a chunk whatever the
number of queries. After :func:`jaxcf.runner.distributed.initialize`, the default mesh spans
every process's devices: each process reads only the rows its own devices explain
(``_share``), and the processes check that they were given the same arguments and agree on which
chunks are done (a chunk is done when every process's part is on disk, so a job restarted after
any process was killed resumes). Rows get the same keys and, on the same number of devices, the
same results as in one process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from jaxcf.core import (
    RESULT_FILE,
    Results,
    check_explainer,
    write_atomic,
    write_json_atomic,
    write_npz,
)
from jaxcf.runner import distributed
from jaxcf.runner._chunks import ChunkRun, searches_of
from jaxcf.runner._config import RunnerConfig, data_mesh
from jaxcf.runner._keys import fingerprint
from jaxcf.runner._programs import one_pass_program
from jaxcf.runner._progress import Progress
from jaxcf.runner._record import (
    MANIFEST_FILE,
    SECONDS_FIELD,
    chunk_on_disk,
    manifest_problem,
    merge,
    part_path,
)
from jaxcf.runner._share import Share, replicate
from jaxcf.runner._sources import ArraySource, QuerySource, describe, open_source

_CHUNK_FIELDS = ("x_cf", "success", "n_iter", "score")


def _padded_chunk(n_devices: int, chunk_size: int) -> int:
    return -(-chunk_size // n_devices) * n_devices


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
    config: RunnerConfig = RunnerConfig(),  # noqa: B008 - frozen, so safe to share
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

    Resuming reads each chunk file already on disk once, a block at a time, to check its
    checksum: one that is truncated or garbled is reported (a warning naming the file) and
    computed again. A damaged ``results.npz`` is reported likewise and rebuilt from the chunks.

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
      DamagedFileError: (a ``ValueError``) a chunk file damaged after this run checked it,
        found while merging the record; running again computes that chunk anew.
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
    share = Share(mesh, chunk)

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
    problem = manifest_problem(manifest_path, manifest)
    bad = distributed.gather(np.asarray(problem is not None))
    if bad.any():
        raise ValueError(problem or f"{out_dir}: another process found its manifest unusable")
    pending = {0: local_inputs(0)}  # bad input raises before anything is written
    chunk_dir.mkdir(parents=True, exist_ok=True)
    if pid == 0:
        write_json_atomic(manifest_path, manifest)
    distributed.barrier("jaxcf-runner-start")

    runnable = replicate(explainer, mesh)
    searches = searches_of(runnable)  # attempts share the replicated arrays
    run_key = replicate(jax.random.key(seed), mesh)
    parts = [part_path(chunk_dir, c, pid, nproc) for c in range(n_chunks)]
    # Each process checks its own parts; a chunk is done only where every part is whole, so all
    # processes agree on what to compute (one with a damaged part makes them all redo it).
    done = distributed.all_true([chunk_on_disk(p) for p in parts])
    todo = [c for c in range(n_chunks) if not done[c]]
    if 0 not in todo:
        pending.clear()  # checked only; chunk 0 is on disk already
    bar = Progress(rows, min(rows, (n_chunks - len(todo)) * chunk), desc, progress and pid == 0)
    if len(todo) < n_chunks:
        bar.bar.set_postfix_str(f"resumed {n_chunks - len(todo)}/{n_chunks} chunks")
    for c in todo:
        lo, hi = c * chunk, min((c + 1) * chunk, rows)
        local = pending.pop(c) if c in pending else local_inputs(c)
        inputs = (run_key, *(share.put(local[k]) for k in ("x", "target", "query", "cf", "valid")))
        t0 = time.perf_counter()
        if searches is None:
            result = one_pass_program(mesh)(runnable, *inputs)
            result = share.fetch(jax.block_until_ready(result), False)
        else:
            chunk_run = ChunkRun(mesh, config, share, inputs, local["valid"], hi - lo)
            result = chunk_run.search(searches, explainer, bar)
        seconds = time.perf_counter() - t0
        keep = local["valid"]  # this process's rows of the chunk that are not padding
        arrays = {k: local[k][keep] for k in ("x", "target", "group")}
        arrays.update({f: np.asarray(getattr(result, f))[keep] for f in _CHUNK_FIELDS})
        arrays.update({f"extra_{k}": np.asarray(v)[keep] for k, v in result.extras.items()})
        arrays["row_start"] = np.asarray(lo + min(share.a, hi - lo))
        arrays[SECONDS_FIELD] = np.asarray(seconds)  # lands with the data: a kill cannot split them
        write_atomic(parts[c], lambda f, a=arrays: write_npz(f, a))
        solved = int(distributed.gather(np.asarray(arrays["success"].sum())).sum())
        bar.chunk_done(hi - lo, solved)
        if on_chunk is not None:
            on_chunk(c, {"seconds": seconds, "rows": hi - lo})
    bar.close()

    distributed.barrier("jaxcf-runner-chunks-done")
    if pid == 0:
        merge(
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
    # Process 0 has just written (and fsynced) the record: checking it would read it all again.
    # Other processes read it over the shared file system, so they check it.
    return Results.load(out_dir, mmap=True, verify=pid != 0)
