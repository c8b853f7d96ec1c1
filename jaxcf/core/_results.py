"""The one results record: what the runner writes and what metrics, reports and experiments read.

A :class:`Results` holds one row per counterfactual (``R = N * num_cfs`` rows for ``N`` queries):
the :class:`~jaxcf.core.CFResult` fields, plus the row's query and target, the index of the
query it explains, which of the query's counterfactuals it is, a group id (a protocol's set, a
data split, ...) and, for the whole record, timings and free-form metadata. Field names are the
same everywhere: in memory, in ``results.npz`` and in the metrics' inputs.

``results.npz`` holds one array per field (``extras`` as ``extra_<name>``, timings and
metadata as JSON text in ``meta_json``) and loads without pickle. Its members are stored
uncompressed, so :meth:`Results.load` with ``mmap=True`` maps the arrays from the file instead of
reading them, and :func:`write_record` writes a record a block of rows at a time: records larger
than memory are written and read with bounded memory.

The last member, ``sha256``, is the SHA-256 of all the others (see
:func:`~jaxcf.core.write_npz`): :meth:`Results.load` checks it first, a block at a time, and
raises :class:`~jaxcf.core.DamagedFileError` naming the file rather than returning a truncated
or garbled record. Records written before checksums existed have none and still load (checked
against zip's CRC-32 of each member).
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxcf.core._files import (
    CHECKSUM_MEMBER,
    NpzWriter,
    check_npz,
    member_offset,
    read_npy_header,
    to_jsonable,
    write_atomic,
    write_npz,
)

RESULT_FILE = "results.npz"
ARRAY_FIELDS = ("x", "target", "x_cf", "success", "n_iter", "score", "query", "cf", "group")
_EXTRA = "extra_"
_META = "meta_json"


@dataclasses.dataclass(frozen=True)
class Results:
    """Counterfactuals of a run, one row each (all arrays have ``R`` rows).

    Attributes:
      x: ``[R, ...]`` the query each row explains.
      target: ``[R]`` int class, ``[R, C]`` distribution or ``[R]`` float regression value.
      x_cf: ``[R, ...]`` counterfactuals.
      success: ``[R]`` bool.
      n_iter: ``[R]`` int, steps used.
      score: ``[R]`` float, the method's score for the target (see :mod:`jaxcf.core.targets`).
      query: ``[R]`` int, index of the query among the run's inputs.
      cf: ``[R]`` int, which of the query's counterfactuals (0 .. num_cfs - 1).
      group: ``[R]`` int, a group id per row (0 when there are none).
      extras: method-specific ``[R, ...]`` arrays.
      timings: JSON-ready timings (the runner's: ``seconds`` of compute, per-chunk seconds).
      meta: JSON-ready metadata (method, config, seed, num_cfs, ...).
    """

    x: np.ndarray
    target: np.ndarray
    x_cf: np.ndarray
    success: np.ndarray
    n_iter: np.ndarray
    score: np.ndarray
    query: np.ndarray
    cf: np.ndarray
    group: np.ndarray
    extras: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    timings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        r = len(self.x_cf)
        for name in (*ARRAY_FIELDS, *(f"extras[{k!r}]" for k in self.extras)):
            value = self.extras[name[8:-2]] if name.startswith("extras[") else getattr(self, name)
            if np.ndim(value) < 1 or len(value) != r:
                raise ValueError(f"Results.{name} has {np.shape(value)} rows, expected {r}")
        if self.x.shape != self.x_cf.shape:
            raise ValueError(f"x {self.x.shape} and x_cf {self.x_cf.shape} differ in shape")

    def __len__(self) -> int:
        return len(self.x_cf)

    @property
    def num_queries(self) -> int:
        """Number of distinct queries (rows share one when ``num_cfs > 1``)."""
        return len(np.unique(self.query))

    @classmethod
    def from_batch(
        cls,
        result: Any,
        x: Any,
        target: Any,
        *,
        query: Any = None,
        cf: Any = None,
        group: Any = None,
        **kwargs: Any,
    ) -> Results:
        """A record from one batch's :class:`~jaxcf.core.CFResult` (one row per query
        unless ``query``/``cf`` say otherwise)."""
        n = len(np.asarray(result.success))
        arange = np.arange(n)
        return cls(
            x=np.asarray(x),
            target=np.asarray(target),
            x_cf=np.asarray(result.x_cf),
            success=np.asarray(result.success, bool),
            n_iter=np.asarray(result.n_iter),
            score=np.asarray(result.score),
            query=arange if query is None else np.asarray(query),
            cf=np.zeros(n, np.int32) if cf is None else np.asarray(cf),
            group=np.zeros(n, np.int32) if group is None else np.asarray(group),
            extras={k: np.asarray(v) for k, v in result.extras.items()},
            **kwargs,
        )

    def rows(self, index: Any) -> Results:
        """The record restricted to some rows (a boolean mask or integer indices)."""
        return dataclasses.replace(
            self,
            **{f: getattr(self, f)[index] for f in ARRAY_FIELDS},
            extras={k: v[index] for k, v in self.extras.items()},
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays as stored in ``results.npz``."""
        out = {f: np.asarray(getattr(self, f)) for f in ARRAY_FIELDS}
        out.update({_EXTRA + k: np.asarray(v) for k, v in self.extras.items()})
        meta = {"timings": self.timings, "meta": self.meta}
        out[_META] = np.asarray(json.dumps(to_jsonable(meta), allow_nan=False))
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Results:
        missing = [f for f in ARRAY_FIELDS if f not in arrays]
        if missing:
            raise ValueError(f"not a jaxcf results record: fields {missing} are missing")
        meta = json.loads(str(arrays[_META])) if _META in arrays else {}
        return cls(
            **{f: np.asarray(arrays[f]) for f in ARRAY_FIELDS},
            extras={k[len(_EXTRA) :]: np.asarray(v) for k, v in arrays.items() if k[:6] == _EXTRA},
            timings=meta.get("timings", {}),
            meta=meta.get("meta", {}),
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the record atomically to ``path`` (a directory gets ``results.npz`` in it)."""
        path = _file(path, must_exist=False)
        arrays = self.to_arrays()
        return write_atomic(path, lambda f: write_npz(f, arrays))

    @classmethod
    def load(cls, path: str | os.PathLike, *, mmap: bool = False, verify: bool = True) -> Results:
        """Reads a record written by :meth:`save` (or by the runner into a directory).

        With ``mmap=True`` the arrays are read-only memory maps of the file: nothing is kept
        in memory until used, so a record larger than memory can be opened and sliced.

        With ``verify=True`` the file is first checked against the checksum stored in it: one
        sequential read of the whole file, 1 MiB at a time (about a second per GB on one
        core). ``verify=False`` skips that read for a file known to be whole.

        Raises:
          FileNotFoundError: no record at ``path``.
          DamagedFileError: the file is truncated or fails its checksum (the message names the
            file and what is wrong).
          ValueError: the file holds no results record.
        """
        path = _file(path, must_exist=True)
        if verify:
            check_npz(path)
        if mmap:
            return cls.from_arrays(_mapped_members(path))
        with np.load(path, allow_pickle=False) as f:
            return cls.from_arrays(dict(f))

    @staticmethod
    def concatenate(parts: list[Results]) -> Results:
        """Rows of several records, in order (timings and metadata of the first)."""
        if not parts:
            raise ValueError("nothing to concatenate")
        first = parts[0]
        arrays = {f: np.concatenate([getattr(p, f) for p in parts]) for f in ARRAY_FIELDS}
        extras = {k: np.concatenate([p.extras[k] for p in parts]) for k in first.extras}
        return dataclasses.replace(first, **arrays, extras=extras)


def write_record(
    path: str | os.PathLike,
    rows: int,
    fields: Mapping[str, tuple[tuple[int, ...], Any]],
    blocks: Callable[[str], Iterable[np.ndarray]],
    *,
    timings: Mapping[str, Any],
    meta: Mapping[str, Any],
) -> Path:
    """Writes a record of ``rows`` rows a block at a time, atomically; memory stays at a block.

    The checksum the file ends with is computed as the blocks go by (nothing is read back).

    Args:
      path: the ``results.npz`` file (a directory gets one in it).
      rows: rows of the record.
      fields: ``{name: (per-row shape, dtype)}`` for every field of :data:`ARRAY_FIELDS` and
        ``extra_<name>`` for extras.
      blocks: ``blocks(name)`` yields the field's rows in order, as ``[n_i, ...]`` blocks whose
        lengths add up to ``rows``.
      timings, meta: as in :class:`Results`.

    Raises:
      ValueError: a field is missing, or its blocks have the wrong shape or number of rows.
    """
    missing = [f for f in ARRAY_FIELDS if f not in fields]
    if missing:
        raise ValueError(f"fields {missing} are missing")
    path = _file(path, must_exist=False)
    meta_text = json.dumps(to_jsonable({"timings": timings, "meta": meta}), allow_nan=False)

    def write(f):
        with NpzWriter(f) as npz:
            for name, (shape, dtype) in fields.items():
                dtype = np.dtype(dtype)
                with npz.member(name) as member:
                    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False}
                    np.lib.format.write_array_header_2_0(
                        member, {**header, "shape": (rows, *shape)}
                    )
                    done = 0
                    for block in blocks(name):
                        block = np.asarray(block)
                        if block.shape[1:] != tuple(shape):
                            raise ValueError(f"{name}: block {block.shape}, rows of {shape}")
                        done += len(block)
                        member.write(np.ascontiguousarray(block, dtype).tobytes())
                    if done != rows:
                        raise ValueError(f"{name}: {done} rows written, {rows} expected")
            npz.array(_META, np.asarray(meta_text))

    return write_atomic(path, write)


def _mapped_members(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an uncompressed ``.npz`` as read-only memory maps (small 0-d members, the
    metadata, are read)."""
    out = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as raw:
        for info in zf.infolist():
            name = info.filename.removesuffix(".npy")
            if name == CHECKSUM_MEMBER:
                continue  # checked by check_npz; no field of the record
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"{path}: member {name} is compressed; load without mmap")
            raw.seek(member_offset(raw, info))
            shape, fortran, dtype = read_npy_header(raw)
            if not shape or fortran or dtype.hasobject:
                with zf.open(info) as member:
                    out[name] = np.lib.format.read_array(member, allow_pickle=False)
                continue
            out[name] = np.memmap(path, dtype, "r", offset=raw.tell(), shape=tuple(shape))
    return out


def _file(path: str | os.PathLike, *, must_exist: bool) -> Path:
    path = Path(path)
    if path.is_dir() or (not path.suffix and not path.exists()):
        path = path / RESULT_FILE
    if must_exist and not path.is_file():
        raise FileNotFoundError(f"no results record at {path}")
    return path
