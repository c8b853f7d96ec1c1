"""A run's files and its record: the manifest (``manifest.json``: what an ``out_dir`` holds a run
of; a directory holding a run with other arguments, or started with another number of processes,
is an error rather than silently mixed), the chunk files in ``out_dir/chunks/`` (with several
processes, each writes its rows as its part of the chunk, ``chunk_00007_p1.npz``), and the
record: process 0 merges all parts into the final ``results.npz`` (a
:class:`~jaxcf.core.Results`), a chunk at a time, which :func:`load_results` reads.

Chunk files and the record end with a SHA-256 of their content (:func:`jaxcf.core.write_npz`).
A file damaged after it was written (a partial copy, a full disk, a shared file system's
hiccup) is found by :func:`chunk_on_disk` when a run resumes, reported by name and computed
again; a damaged record is reported by :func:`merge` and rebuilt from the chunks.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from jaxcf.core import CHECKSUM_MEMBER, DamagedFileError, Results, npz_problem, write_record

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


def chunk_on_disk(path: Path) -> bool:
    """Whether a chunk file (or this process's part of one) is on disk and whole.

    Reads the whole file once, a block at a time, to check its checksum. A damaged file is
    reported (a warning naming it and what is wrong) and counts as not done: its chunk is
    computed again and the file replaced.
    """
    if not path.exists():
        return False
    problem = npz_problem(path)
    if problem is None:
        return True
    warnings.warn(f"{path} is damaged: {problem}; computing its chunk again", stacklevel=2)
    return False


class _Part:
    """One chunk file open for reading, whose read errors name the file (a file damaged after
    the run checked it: zip's own errors say neither which file nor what to do)."""

    def __init__(self, path: Path):
        self.path = path
        self._npz = self._read(lambda: np.load(path, allow_pickle=False))
        self.files = [k for k in self._npz.files if k != CHECKSUM_MEMBER]

    def __getitem__(self, name: str) -> np.ndarray:
        return self._read(lambda: self._npz[name])

    def close(self) -> None:
        self._npz.close()

    def _read(self, read: Callable[[], Any]) -> Any:
        try:
            return read()
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
            problem = f"{e}; run again to compute its chunk anew"
            raise DamagedFileError(self.path, problem) from e


def merge(chunk_dir, path, n_chunks, chunk, rows, num_cfs, nproc, meta, devices) -> None:
    """Writes the record from every process's part of every chunk, a chunk at a time.

    The record at ``path`` is replaced; if it was damaged, a warning names it first.
    """
    if path.exists():
        problem = npz_problem(path)
        if problem is not None:
            warnings.warn(
                f"{path} is damaged: {problem}; rebuilding it from the chunks", stacklevel=2
            )

    def parts(c):
        out = []
        for p in range(nproc):
            part = part_path(chunk_dir, c, p, nproc)
            if not part.exists():
                raise FileNotFoundError(
                    f"{part} is missing: with several processes, out_dir must be on a file "
                    "system every process sees"
                )
            out.append(_Part(part))
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


def load_results(out_dir: str | Path, *, mmap: bool = False, verify: bool = True) -> Results:
    """Reads ``results.npz`` written by :func:`run` (same as :meth:`Results.load`)."""
    return Results.load(out_dir, mmap=mmap, verify=verify)
