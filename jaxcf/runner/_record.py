"""A run's files and its record: the manifest (``manifest.json``: what an ``out_dir`` holds a run
of; a directory holding a run with other arguments, or started with another number of processes,
is an error rather than silently mixed), the chunk files in ``out_dir/chunks/`` (with several
processes, each writes its rows as its part of the chunk, ``chunk_00007_p1.npz``), and the
record: process 0 merges all parts into the final ``results.npz`` (a
:class:`~jaxcf.core.Results`), a chunk at a time, which :func:`load_results` reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from jaxcf.core import Results, write_record

MANIFEST_FILE = "manifest.json"
SECONDS_FIELD = "chunk_seconds"


def manifest_problem(path: Path, manifest: dict[str, Any]) -> str | None:
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


def merge(chunk_dir, path, n_chunks, chunk, rows, num_cfs, nproc, meta, devices) -> None:
    """Writes the record from every process's part of every chunk, a chunk at a time."""

    def parts(c):
        out = []
        for p in range(nproc):
            part = part_path(chunk_dir, c, p, nproc)
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
        chunk_seconds.append(max(float(f[SECONDS_FIELD]) for f in files))
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
            names = [k for k in first.files if k not in ("row_start", SECONDS_FIELD)]
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


def part_path(chunk_dir: Path, c: int, process: int, processes: int) -> Path:
    """Chunk ``c``'s file, or with several processes, one process's part of it."""
    if processes == 1:
        return chunk_dir / f"chunk_{c:05d}.npz"
    return chunk_dir / f"chunk_{c:05d}_p{process}.npz"


def load_results(out_dir: str | Path, *, mmap: bool = False) -> Results:
    """Reads ``results.npz`` written by :func:`run` (same as :meth:`Results.load`)."""
    return Results.load(out_dir, mmap=mmap)
