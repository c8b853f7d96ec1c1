"""Atomic file writers and JSON conversion shared by the runner, results, metrics and reports.

Every file is written to a temporary sibling, fsynced and moved into place with ``os.replace``,
so a reader (or a run resumed after a kill) never sees a half-written file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

PathLike = str | os.PathLike


def write_atomic(path: PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Calls ``write(f)`` on a temporary file beside ``path``, fsyncs it, then renames it into
    place, so readers never see a partial file; creates missing parent directories."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; keep an existing file's mode, else make it world-readable.
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_text_atomic(path: PathLike, text: str) -> Path:
    """Writes ``text`` (UTF-8) to ``path`` atomically; creates missing parent directories."""
    data = text.encode("utf-8")
    return write_atomic(path, lambda f: f.write(data))


def write_json_atomic(path: PathLike, obj: Any, *, indent: int = 2) -> Path:
    """Writes ``obj`` as strict JSON (numpy values converted, NaN/inf as null) atomically."""
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False) + "\n"
    return write_text_atomic(path, text)


def to_jsonable(obj: Any) -> Any:
    """Converts numpy/jax scalars and arrays, tuples and non-finite floats (to None) into plain
    JSON-serialisable Python objects, recursively."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "__array__") and not isinstance(obj, np.generic):
        return to_jsonable(np.asarray(obj).tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def read_npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` of the ``.npy`` data starting at ``f``'s position;
    leaves ``f`` at the first byte of the array."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise ValueError(f"unsupported .npy format version {version}")
