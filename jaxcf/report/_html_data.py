"""The HTML report's data files: self-registering script files, compact columns, rows read a
block at a time from (possibly memory-mapped) records.

A page opened from ``file://`` cannot ``fetch()`` JSON in Chromium, so every data file is a
script that registers its payload: ``JAXCF_DATA.push({...});``. The payload is JSON with ``<``,
``>`` and ``&`` escaped (``\\u003c`` ...), so no string of the data can close a ``<script>``
element or open an HTML comment; keys are never data (names travel as values, in lists), so no
name can reach an object's prototype (``__proto__``).
"""

from __future__ import annotations

import base64
import csv
import json
import mmap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxcf.core import to_jsonable

# Per-row metrics in the order the report shows them: (key, label, histogram over successful
# rows only). Distances and realism mean something only where a counterfactual was found, as in
# the summaries of jaxcf.evaluation.metrics.
KNOWN_METRICS = (
    ("success", "success", False),
    ("valid", "valid", False),
    ("l0", "L0", True),
    ("l1", "L1", True),
    ("l2", "L2", True),
    ("nll", "realism NLL", True),
    ("changed", "features changed", True),
    ("score", "score", False),
    ("n_iter", "iterations", False),
)
_FLAGS = ("success", "valid")  # shown as yes / no


def _json(value: Any) -> str:
    """``value`` as JSON that is safe inside a script, whatever its strings hold
    (``</script>``, ``<!--``, quotes, U+2028)."""
    text = json.dumps(to_jsonable(value), ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)  # only strings of JSON can hold these characters
    return text


def js_data(payload: Mapping[str, Any]) -> bytes:
    """``JAXCF_DATA.push(<payload as JSON>);`` as ASCII bytes, safe to load as a script."""
    return f"JAXCF_DATA.push({_json(payload)});\n".encode("ascii")


def write_columns_js(
    path: Path, head: Mapping[str, Any], columns: Sequence[tuple[str, np.ndarray]]
) -> None:
    """Writes ``JAXCF_DATA.push({**head, "columns": [column(...), ...]});`` a column at a time
    (so memory holds one encoded column, not the file)."""
    with open(path, "w", encoding="ascii") as f:
        f.write("JAXCF_DATA.push(" + _json(dict(head))[:-1] + ',"columns":[')
        for i, (name, a) in enumerate(columns):
            f.write(("," if i else "") + _json(column(name, a)))
        f.write("]});\n")


def column(name: str, a: Any) -> dict[str, Any]:
    """One column for the page: ``{"name", "t", "b"}``, the values as little-endian bytes in
    base64 (``t``: ``u1`` for flags, ``i4`` for integers, ``f4`` for the rest; NaN marks a
    missing value)."""
    a = np.asarray(a)
    if a.dtype == bool:
        kind, data = "u1", a.astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer):
        kind, data = "i4", a.astype("<i4")
    else:
        kind, data = "f4", a.astype("<f4")
    encoded = base64.b64encode(np.ascontiguousarray(data).tobytes()).decode("ascii")
    return {"name": name, "t": kind, "b": encoded}


def f4_base64(a: Any) -> str:
    """``a`` flattened as little-endian float32 bytes, in base64."""
    data = np.ascontiguousarray(np.asarray(a, "<f4")).tobytes()
    return base64.b64encode(data).decode("ascii")


def write_csv(path: Path, columns: Sequence[tuple[str, np.ndarray]], chunk: int = 8192) -> None:
    """Writes the columns as CSV, one line per row (NaN left empty), ``chunk`` rows at a time."""
    rows = len(columns[0][1]) if columns else 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow([name for name, _ in columns])
        for start in range(0, rows, chunk):
            values = [_csv_values(a[start : start + chunk]) for _, a in columns]
            writer.writerows(zip(*values, strict=True))


def _csv_values(a: np.ndarray) -> list[str]:
    if a.dtype == bool:
        return ["1" if v else "0" for v in a.tolist()]
    if np.issubdtype(a.dtype, np.integer):
        return [str(v) for v in a.tolist()]
    return ["" if v != v else f"{v:.9g}" for v in a.astype(np.float64).tolist()]


def metric_columns(label: str, given: Mapping[str, Any] | None, rows: int) -> dict[str, np.ndarray]:
    """A method's given row metrics (``jaxcf.evaluation.metrics.row_metrics`` output), checked:
    every entry ``[rows]`` numbers or flags."""
    out = {}
    for key, value in (given or {}).items():
        a = np.asarray(value)
        if a.shape != (rows,):
            raise ValueError(
                f"metrics[{label!r}][{key!r}] has shape {a.shape}, expected ({rows},): one value "
                "per row of the record"
            )
        if a.dtype != bool and not np.issubdtype(a.dtype, np.number):
            raise TypeError(f"metrics[{label!r}][{key!r}] must be numeric, got dtype {a.dtype}")
        out[str(key)] = a
    return out


def metric_order(keys: Sequence[str]) -> list[tuple[str, str, bool]]:
    """``(key, label, over successful rows)`` for every metric some method has: the known ones in
    report order, then any others in the order given."""
    present = set(keys)
    known = [m for m in KNOWN_METRICS if m[0] in present]
    seen = {m[0] for m in KNOWN_METRICS}
    others = [(k, k, False) for k in dict.fromkeys(keys) if k not in seen]
    return known + others


def is_flag(key: str) -> bool:
    return key in _FLAGS


def block_ranges(rows: int, block_rows: int) -> list[tuple[int, int]]:
    return [(start, min(start + block_rows, rows)) for start in range(0, rows, block_rows)]


def read_rows(a: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of ``a`` as an array in memory (a copy, for memory maps)."""
    return np.array(a[start:stop])


def release(*arrays: np.ndarray) -> None:
    """Drops the pages of memory-mapped arrays from this process (they are read from the file
    again when touched), so reading a mapped record block by block keeps memory at a block.
    Arrays in memory are left alone."""
    for a in arrays:
        base = a
        while isinstance(base, np.ndarray):
            base = base.base
        if isinstance(base, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
            try:
                base.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError):  # a closed map or a platform that refuses
                pass


def target_columns(target: np.ndarray) -> tuple[str, np.ndarray]:
    """How a record's targets show: ``("class", [R] int)`` for class targets, ``("soft",
    [R] int argmax)`` for distributions, ``("value", [R] float)`` for regression values."""
    target = np.asarray(target)
    if target.ndim == 2:
        return "soft", np.argmax(target, axis=1).astype(np.int64)
    if target.ndim == 1 and (np.issubdtype(target.dtype, np.integer) or target.dtype == bool):
        return "class", target.astype(np.int64)
    if target.ndim == 1 and np.issubdtype(target.dtype, np.floating):
        return "value", target.astype(np.float64)
    raise ValueError(f"targets of shape {target.shape} and dtype {target.dtype} are not supported")
