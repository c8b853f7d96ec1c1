"""A user's table as counterfactual queries: a CSV (or Parquet) file with declared columns,
encoded by :class:`~jaxcf.tabular.TabularTransform` (one-hot categories, mode-specific
normalisation of numbers) fitted on the training file.

The columns are declared by kind (:func:`table_schema`): categorical columns get their
categories from the training file when they are not given; numeric columns are read as
numbers (integers where declared). The label column holds the class of each row, mapped to
indices by ``label_classes`` (default: its sorted distinct values). Missing or extra columns,
unknown categories and values that are not numbers are errors naming the column (and, for a
CSV, the line).
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxcf.data._idx import DataError
from jaxcf.tabular import Column, Schema, TabularTransform


def read_table(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every column of a CSV (first line: the header) or Parquet file, as ``[N]`` object
    arrays of stripped strings (CSV) or the file's own values (Parquet).

    Raises:
      FileNotFoundError: no such file.
      DataError: an empty file, a repeated header name, or a row of another length (naming the
        line).
      ImportError: a Parquet file without pandas and pyarrow installed (``pip install pandas
        pyarrow``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no table at {path}")
    if path.suffix.lower() == ".parquet":
        try:
            import pandas as pd  # an optional extra: only Parquet tables need it
        except ImportError as exc:
            raise ImportError(f"{path}: reading Parquet needs pandas and pyarrow") from exc
        frame = pd.read_parquet(path)
        return {str(name): frame[name].to_numpy(object) for name in frame.columns}
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise DataError(f"{path} is empty")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise DataError(f"{path}: column {dup!r} appears twice in the header")
    body = [r for r in rows[1:] if any(v.strip() for v in r)]
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DataError(f"{path}, line {line}: {len(row)} values for {len(header)} columns")
    columns = list(zip(*body, strict=True)) if body else [() for _ in header]
    return {
        name: np.asarray([v.strip() for v in values], object)
        for name, values in zip(header, columns, strict=True)
    }


def table_schema(
    table: dict[str, np.ndarray],
    *,
    categorical: Sequence[str] = (),
    numeric: Sequence[str] = (),
    integer: Sequence[str] = (),
    categories: dict[str, Sequence[str]] | None = None,
) -> Schema:
    """A :class:`~jaxcf.tabular.Schema` of the declared columns, in the order declared
    (categorical first, then numeric); a categorical column's categories are ``categories``'s
    entry or the sorted distinct values of ``table`` (the training file).

    Raises:
      DataError: a declared column the table lacks, a column declared twice, or an integer
        column that is not numeric.
    """
    categories = dict(categories or {})
    declared = [*categorical, *numeric]
    if len(set(declared)) != len(declared):
        dup = next(c for c in declared if declared.count(c) > 1)
        raise DataError(f"column {dup!r} is declared twice")
    missing = [c for c in declared if c not in table]
    if missing:
        raise DataError(f"the table has no columns {missing}; it has {sorted(table)}")
    stray = sorted(set(integer) - set(numeric))
    if stray:
        raise DataError(f"integer columns {stray} must be among the numeric ones")
    columns = [
        Column(
            name,
            "categorical",
            categories=tuple(categories.get(name) or sorted({str(v) for v in table[name]})),
        )
        for name in categorical
    ]
    columns += [Column(name, "numeric", integer=name in integer) for name in numeric]
    return Schema(tuple(columns))


def _numbers(values: np.ndarray, column: Column, path: Path) -> np.ndarray:
    try:
        out = np.asarray([float(v) for v in values], np.float64)
    except (TypeError, ValueError) as exc:
        bad = next(v for v in values if not _is_number(v))
        raise DataError(
            f"{path}: column {column.name!r} holds {bad!r}, which is not a number"
        ) from exc
    return out.astype(np.int64) if column.integer else out


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def typed_table(
    table: dict[str, np.ndarray], schema: Schema, path: str | os.PathLike[str]
) -> dict[str, np.ndarray]:
    """The schema's columns of ``table`` with numeric columns parsed (float64, or int64 where
    declared integer) and categorical ones as strings, ready for
    :meth:`~jaxcf.tabular.TabularTransform.encode`."""
    out = {}
    for column in schema.columns:
        if column.name not in table:
            raise DataError(f"{path}: no column {column.name!r}; it has {sorted(table)}")
        values = table[column.name]
        if column.kind == "numeric":
            out[column.name] = _numbers(values, column, Path(path))
        else:
            out[column.name] = np.asarray([str(v) for v in values], object)
    return out


class TableFile:
    """A table file's rows as encoded queries (``float32 [N, D]``) with their classes.

    Args:
      path: the CSV or Parquet file to explain.
      schema: its feature columns.
      label_column: the column holding each row's class (not a feature).
      label_classes: the label values in class-index order (default: the sorted distinct
        values of the training file's label column).
      transform: the encoding (default: fitted on ``fit_path``, or on ``path`` itself).
      fit_path: the training file the encoding and the classes are taken from.

    Raises:
      FileNotFoundError: a missing file. DataError: a missing column, a label value not among
        ``label_classes``, or a value the encoding does not accept (naming the column).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        schema: Schema,
        label_column: str,
        *,
        label_classes: Sequence[str] | None = None,
        transform: TabularTransform | None = None,
        fit_path: str | os.PathLike[str] | None = None,
    ):
        self.path = Path(path)
        raw = read_table(self.path)
        fit_raw = raw if fit_path is None else read_table(fit_path)
        for table, where in ((raw, self.path), (fit_raw, fit_path or self.path)):
            if label_column not in table:
                raise DataError(f"{where}: no label column {label_column!r}")
        if label_column in schema.names:
            raise DataError(f"the label column {label_column!r} is also a feature column")
        classes = tuple(
            str(c) for c in (label_classes or sorted({str(v) for v in fit_raw[label_column]}))
        )
        labels = [str(v) for v in raw[label_column]]
        unknown = sorted(set(labels) - set(classes))
        if unknown:
            raise DataError(
                f"{self.path}: labels {unknown[:5]} are not among the classes {list(classes)}"
            )
        self.schema = schema
        if transform is None:
            transform = TabularTransform.fit(schema, typed_table(fit_raw, schema, fit_path or path))
        try:
            self._x = transform.encode(typed_table(raw, schema, self.path))
        except ValueError as exc:  # the transform names the column and the value
            raise DataError(f"{self.path}: {exc}") from exc
        self.transform = transform
        self._labels = np.asarray([classes.index(v) for v in labels], np.int32)
        self._classes = classes

    def __len__(self) -> int:
        return int(self._x.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (int(self._x.shape[1]),)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._classes

    @property
    def domain(self) -> None:
        return None  # encoded numeric columns are standardised: unbounded

    def read(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        idx = np.asarray(indices, np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"row indices outside [0, {len(self)})")
        return self._x[idx], self._labels[idx]

    def identity(self) -> dict[str, Any]:
        h = hashlib.sha256(np.ascontiguousarray(self._x).tobytes())
        return {"kind": "table", "path": str(self.path.resolve()), "sha256": h.hexdigest()}
