"""Query sources: where the runner reads the queries it explains, a chunk of rows at a time.

A source holds ``N`` queries with their targets and group ids, as three columns:

* ``x``: ``[N, ...]`` queries;
* ``target``: ``[N]`` int classes, ``[N, C]`` class distributions or ``[N]`` float values;
* ``group``: ``[N]`` int group ids.

The runner only ever asks for a contiguous block of rows (:meth:`QuerySource.read`), so a source
need not fit in memory. Two are provided:

* :class:`ArraySource`: arrays already in memory (what :func:`jaxcf.runner.run` wraps its
  arguments in);
* :class:`NpySource`: a directory of ``.npy`` files (``x.npy``, ``target.npy`` and optionally
  ``group.npy``), read block by block with positioned reads — no memory map whose pages would
  stay resident, nothing read but the requested rows. :class:`QueryWriter` writes such a
  directory a block at a time, so a data set larger than memory can be prepared too.

A source's :meth:`~QuerySource.identity` is what a run's fingerprint records about its data. It
must be cheap: for files it covers the columns' shapes and dtypes and a hash of a bounded sample
of rows (the first and last :data:`SAMPLE_ROWS`), so starting or resuming a run never reads the
whole data set. A file whose length, shape or dtype changed between start and resume is refused;
a change confined to rows outside the sample is not detected (the rows of chunks already
explained are not read again).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from jaxcf.core import read_npy_header

COLUMNS = ("x", "target", "group")
SAMPLE_ROWS = 16


@runtime_checkable
class QuerySource(Protocol):
    """What the runner needs of its queries."""

    def __len__(self) -> int: ...

    @property
    def columns(self) -> Mapping[str, tuple[tuple[int, ...], np.dtype]]:
        """``{name: (per-row shape, dtype)}`` for ``x``, ``target`` and ``group``."""
        ...

    def read(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Rows ``start .. stop - 1`` of every column (``0 <= start < stop <= N``)."""
        ...

    def identity(self) -> dict[str, Any]:
        """JSON-ready description of the data for the run's fingerprint; cheap to compute."""
        ...


def _check_range(n: int, start: int, stop: int) -> None:
    if not 0 <= start < stop <= n:
        raise IndexError(f"rows [{start}, {stop}) outside a source of {n} rows")


def _column_specs(arrays: Mapping[str, Any]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    return {k: (tuple(a.shape[1:]), np.dtype(a.dtype)) for k, a in arrays.items()}


def _check_lengths(n_by_column: Mapping[str, int]) -> int:
    lengths = set(n_by_column.values())
    if len(lengths) != 1:
        raise ValueError(f"the columns of a source differ in length: {dict(n_by_column)}")
    (n,) = lengths
    if n == 0:
        raise ValueError("empty source: there are no queries")
    return n


def _hash_rows(columns: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(columns):
        a = np.ascontiguousarray(columns[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class ArraySource:
    """Queries already in memory. Its identity hashes every row (they are in memory anyway)."""

    def __init__(self, x: Any, target: Any, group: Any = None):
        x, target = np.asarray(x), np.asarray(target)
        group = np.zeros(len(x), np.int32) if group is None else np.asarray(group)
        if group.ndim != 1 or not np.issubdtype(group.dtype, np.integer):
            raise ValueError(f"group must be [N] integers, got {group.dtype} {group.shape}")
        self._arrays = {"x": x, "target": target, "group": group}
        self._n = _check_lengths({k: len(a) if a.ndim else 0 for k, a in self._arrays.items()})

    def __len__(self) -> int:
        return self._n

    @property
    def columns(self):
        return _column_specs(self._arrays)

    def read(self, start: int, stop: int) -> dict[str, np.ndarray]:
        _check_range(self._n, start, stop)
        return {k: a[start:stop] for k, a in self._arrays.items()}

    def identity(self) -> dict[str, Any]:
        return {"kind": "arrays", "rows": self._n, "sha256": _hash_rows(self._arrays)}


class _NpyColumn:
    """One ``.npy`` file: header parsed once, rows fetched with ``os.pread``."""

    def __init__(self, path: Path):
        self.path = path
        with open(path, "rb") as f:
            shape, fortran, dtype = read_npy_header(f)
            self.offset = f.tell()
        if fortran or dtype.hasobject or not shape:
            raise ValueError(f"{path}: need a C-ordered numeric array with a row axis")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * self.dtype.itemsize
        size = os.path.getsize(path)
        if size != self.offset + self.shape[0] * self.row_bytes:
            raise ValueError(f"{path}: file size {size} does not match its header {self.shape}")

    def read(self, start: int, stop: int) -> np.ndarray:
        count = (stop - start) * (self.row_bytes // self.dtype.itemsize)
        with open(self.path, "rb") as f:
            f.seek(self.offset + start * self.row_bytes)
            rows = np.fromfile(f, self.dtype, count)  # a plain read, no memory map
        if rows.size != count:
            raise OSError(f"{self.path} ended early (was it truncated during the run?)")
        return rows.reshape(stop - start, *self.shape[1:])


class NpySource:
    """Queries in a directory of ``.npy`` files, read a block of rows at a time.

    ``directory`` holds ``x.npy`` and ``target.npy`` (and ``group.npy``, else every group id is
    0), as :func:`save_queries` or :class:`QueryWriter` write them.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        if (
            not (self.directory / "x.npy").is_file()
            or not (self.directory / "target.npy").is_file()
        ):
            raise FileNotFoundError(f"{self.directory} holds no x.npy and target.npy")
        self._columns = {
            name: _NpyColumn(self.directory / f"{name}.npy")
            for name in COLUMNS
            if (self.directory / f"{name}.npy").is_file()
        }
        self._n = _check_lengths({k: c.shape[0] for k, c in self._columns.items()})
        if "group" in self._columns:
            g = self._columns["group"]
            if len(g.shape) != 1 or not np.issubdtype(g.dtype, np.integer):
                raise ValueError(f"group.npy must hold [N] integers, got {g.dtype} {g.shape}")

    def __len__(self) -> int:
        return self._n

    @property
    def columns(self):
        out = {k: (c.shape[1:], c.dtype) for k, c in self._columns.items()}
        out.setdefault("group", ((), np.dtype(np.int32)))
        return out

    def read(self, start: int, stop: int) -> dict[str, np.ndarray]:
        _check_range(self._n, start, stop)
        out = {k: c.read(start, stop) for k, c in self._columns.items()}
        out.setdefault("group", np.zeros(stop - start, np.int32))
        return out

    def identity(self) -> dict[str, Any]:
        k = min(SAMPLE_ROWS, self._n)
        head, tail = self.read(0, k), self.read(self._n - k, self._n)
        return {
            "kind": "npy",
            "rows": self._n,
            "columns": {n: [list(s), d.str] for n, (s, d) in self.columns.items()},
            "sample_sha256": _hash_rows({**head, **{f"tail_{n}": a for n, a in tail.items()}}),
        }


def open_source(x: Any, target: Any = None, group: Any = None) -> QuerySource:
    """``x`` itself if it is a source, a :class:`NpySource` for a directory path, else an
    :class:`ArraySource` of the arrays."""
    if isinstance(x, QuerySource):
        if target is not None or group is not None:
            raise ValueError("a query source holds its own targets and groups; pass neither")
        return x
    if isinstance(x, str | os.PathLike):
        if target is not None or group is not None:
            raise ValueError("a query directory holds its own targets and groups; pass neither")
        return NpySource(x)
    if target is None:
        raise ValueError("target is missing: pass [N] targets with the [N, ...] queries")
    return ArraySource(x, target, group)


class QueryWriter:
    """Writes a query directory for :class:`NpySource` a block of rows at a time.

    Args:
      directory: created if missing; ``x.npy``, ``target.npy`` and ``group.npy`` go in it.
      n: total rows.
      x_shape, target_shape: per-row shapes (``()`` for class or regression targets).
      x_dtype, target_dtype: their dtypes.

    Use as a context manager; :meth:`append` blocks in order. Closing checks that exactly ``n``
    rows were written. Files are written with plain writes, so memory stays at one block.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        n: int,
        *,
        x_shape: tuple[int, ...],
        target_shape: tuple[int, ...] = (),
        x_dtype: Any = np.float32,
        target_dtype: Any = np.int32,
    ):
        if n < 1:
            raise ValueError(f"n must be positive, got {n}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.n, self.written = n, 0
        specs = {
            "x": (tuple(x_shape), np.dtype(x_dtype)),
            "target": (tuple(target_shape), np.dtype(target_dtype)),
            "group": ((), np.dtype(np.int32)),
        }
        self._specs, self._files = specs, {}
        for name, (shape, dtype) in specs.items():
            f = open(self.directory / f"{name}.npy", "wb")  # noqa: SIM115 - closed in close()
            header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False}
            np.lib.format.write_array_header_2_0(f, {**header, "shape": (n, *shape)})
            self._files[name] = f

    def append(self, x: Any, target: Any, group: Any = None) -> None:
        x = np.asarray(x)
        rows = {"x": x, "target": np.asarray(target)}
        rows["group"] = np.zeros(len(x), np.int32) if group is None else np.asarray(group)
        for name, a in rows.items():
            shape, dtype = self._specs[name]
            if a.shape[1:] != shape or len(a) != len(x):
                raise ValueError(f"{name} rows of shape {a.shape} do not fit [{len(x)}, {shape}]")
            if self.written + len(a) > self.n:
                raise ValueError(f"more than the {self.n} rows announced")
            self._files[name].write(np.ascontiguousarray(a, dtype).tobytes())
        self.written += len(x)

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        if self.written != self.n:
            raise ValueError(f"{self.written} rows written, {self.n} announced")

    def __enter__(self) -> QueryWriter:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            for f in self._files.values():
                f.close()


def save_queries(directory: str | os.PathLike, x: Any, target: Any, group: Any = None) -> Path:
    """Writes in-memory queries as a directory :class:`NpySource` reads."""
    x, target = np.asarray(x), np.asarray(target)
    with QueryWriter(
        directory,
        len(x),
        x_shape=x.shape[1:],
        target_shape=target.shape[1:],
        x_dtype=x.dtype,
        target_dtype=target.dtype,
    ) as w:
        w.append(x, target, group)
    return Path(directory)


def describe(source: QuerySource) -> str:
    """One line naming a source's size and columns (for logs and errors)."""
    cols = {k: [list(s), str(d)] for k, (s, d) in source.columns.items()}
    return f"{len(source)} rows, columns {json.dumps(cols)}"
