"""A reversible encoding of mixed-type tables as float vectors: :class:`TabularTransform`.

A :class:`TabularTransform` turns a table (:data:`~jaxcf.tabular.Table`) into ``float32 [N, D]``
rows a generator or classifier can work on, and decodes such rows back into a table.

The encoding, column by column in schema order:

* a categorical column with ``m`` categories: a one-hot block of width ``m``;
* a numeric column: CTGAN's *mode-specific normalisation* (Xu et al. 2019). A 1-D Gaussian
  mixture with ``K`` modes is fitted to the column's training values; a value ``v`` becomes
  ``[alpha, one_hot(k)]`` (width ``1 + K``) with ``k`` its most responsible mode and
  ``alpha = (v - mu_k) / (4 sigma_k)`` (the in-mode position; about ``[-1, 1]`` for values within
  four standard deviations of their mode). Unlike CTGAN the mode is the most responsible one,
  not a sample, so encoding is deterministic, and ``alpha`` is not clipped, so it is reversible.

``decode`` inverts ``encode`` exactly for integer-valued numeric columns (values are rounded)
and to float32 precision of ``alpha`` for real-valued ones. It takes the argmax of every
one-hot block and clips numeric values to the range seen in training, so slightly-off or soft
generator outputs decode to valid rows too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from jaxcf.tabular._activation import Projection, activate
from jaxcf.tabular._mixture import NumericFit, fit_mixture_1d, log_joint
from jaxcf.tabular._schema import Block, Column, Layout, Schema, Table

Array = jax.Array

FORMAT = "jaxcf.tabular.TabularTransform/1"
"""``to_dict()["format"]``: bumped whenever the meaning of the fields changes."""
_MISSING_STRINGS = ("?", "")


class TabularTransform:
    """A fitted, reversible encoding of the tables of one :class:`Schema`.

    Build it with :meth:`fit` (from a training table) or :meth:`from_dict` (from checkpoint
    metadata). The encoded width is ``sum(len(categories))`` over categorical columns plus
    ``1 + K`` per numeric column.
    """

    def __init__(self, schema: Schema, numeric: Mapping[str, NumericFit]):
        if not isinstance(schema, Schema):
            raise TypeError(f"schema must be a Schema, got {type(schema).__name__}")
        wanted = {c.name for c in schema.columns if c.kind == "numeric"}
        if set(numeric) != wanted:
            raise ValueError(
                f"numeric fits are for {sorted(numeric)}, the schema's numeric columns are "
                f"{sorted(wanted)}"
            )
        self.schema = schema
        self.numeric = {name: numeric[name] for name in schema.names if name in wanted}
        self.layout = self._build_layout()

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def fit(cls, schema: Schema, table: Table, *, n_modes: int = 7, seed: int = 0):
        """Fits the numeric columns' mixtures (``n_modes`` each) and ranges on ``table``.

        Categories come from the schema, not the table, so a category absent from the
        training rows still has its one-hot slot.

        Raises:
          ValueError: the table does not match the schema (see :meth:`encode`).
        """
        columns = _check_columns(schema, table)
        numeric = {}
        for column in schema.columns:
            values = columns[column.name]
            if column.kind == "categorical":
                _category_indices(column, values)  # validates
            else:
                numeric[column.name] = fit_mixture_1d(
                    _numeric_values(column, values), n_modes, seed=seed
                )
        return cls(schema, numeric)

    def _build_layout(self) -> Layout:
        blocks, column_of, start = [], [], 0
        for i, column in enumerate(self.schema.columns):
            if column.kind == "categorical":
                stop = start + len(column.categories)
                blocks.append(Block(column.name, "categorical", start, stop))
            else:
                fit = self.numeric[column.name]
                stop = start + 1 + fit.n_modes
                blocks.append(
                    Block(
                        column.name,
                        "numeric",
                        start,
                        stop,
                        scalar=start,
                        modes=(start + 1, stop),
                        means=fit.means,
                        stds=fit.stds,
                        weights=fit.weights,
                        low=fit.low,
                        high=fit.high,
                        integer=column.integer,
                    )
                )
            column_of += [i] * (stop - start)
            start = stop
        return Layout(tuple(blocks), start, tuple(column_of))

    # -- properties -----------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """Encoded width ``D``."""
        return self.layout.dim

    @property
    def names(self) -> tuple[str, ...]:
        return self.schema.names

    def __repr__(self) -> str:
        return (
            f"TabularTransform(columns={len(self.schema)}, dim={self.dim}, "
            f"digest={self.digest()[:12]})"
        )

    # -- encode / decode ------------------------------------------------------------------------

    def encode(self, table: Table) -> np.ndarray:
        """Encodes a table into ``float32 [N, D]`` rows.

        Raises:
          ValueError: a missing or extra column, columns of different lengths, a missing value
            (None, NaN, ``'?'`` or ``''`` where that is not a category), an unknown category,
            a non-numeric, non-integral (integer column) or out-of-range numeric value (the
            range is the training data's). Messages name the column and the first bad row.
        """
        columns = _check_columns(self.schema, table)
        n = len(next(iter(columns.values())))
        out = np.zeros((n, self.dim), np.float32)
        rows = np.arange(n)
        for block, column in zip(self.layout.blocks, self.schema.columns, strict=True):
            values = columns[column.name]
            if column.kind == "categorical":
                out[rows, block.start + _category_indices(column, values)] = 1.0
                continue
            v = _numeric_values(column, values)
            fit = self.numeric[column.name]
            bad = np.flatnonzero((v < fit.low) | (v > fit.high))
            if bad.size:
                raise ValueError(
                    f"column {column.name!r} row {bad[0]}: {fmt(v[bad[0]], column)} is outside "
                    f"the fitted range [{fmt(fit.low, column)}, {fmt(fit.high, column)}]"
                )
            means, stds = np.asarray(fit.means), np.asarray(fit.stds)
            k = np.argmax(log_joint(v, np.asarray(fit.weights), means, stds), axis=1)
            out[:, block.scalar] = (v - means[k]) / (4.0 * stds[k])
            out[rows, block.modes[0] + k] = 1.0
        return out

    def decode(self, x: Any) -> dict[str, np.ndarray]:
        """Decodes ``[N, D]`` rows into a table (``dict`` of ``[N]`` arrays, schema order).

        Every block's argmax picks its category or mode, so soft or slightly-off generator
        outputs decode too. Numeric values are ``mu_k + 4 sigma_k alpha``, clipped to the
        training range, rounded for integer columns (int64), float64 otherwise. Categorical
        columns are object arrays of ``str``.

        Raises:
          ValueError: ``x`` is not ``[N, D]`` with this transform's ``D``, or holds NaN/inf.
        """
        x = self.check_encoded(x)
        table: dict[str, np.ndarray] = {}
        for block, column in zip(self.layout.blocks, self.schema.columns, strict=True):
            if column.kind == "categorical":
                idx = np.argmax(x[:, block.start : block.stop], axis=1)
                table[column.name] = np.asarray(column.categories, dtype=object)[idx]
                continue
            k = np.argmax(x[:, block.modes[0] : block.modes[1]], axis=1)
            means, stds = np.asarray(block.means), np.asarray(block.stds)
            alpha = x[:, block.scalar].astype(np.float64)
            v = np.clip(means[k] + 4.0 * stds[k] * alpha, block.low, block.high)
            table[column.name] = np.rint(v).astype(np.int64) if column.integer else v
        return table

    def check_encoded(self, x: Any) -> np.ndarray:
        """``x`` as a float32 NumPy ``[N, D]`` array; wrong shapes and NaN/inf raise."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(
                f"encoded rows must be [N, {self.dim}] ({len(self.schema)} columns: "
                f"{', '.join(f'{b.name} {b.width}' for b in self.layout.blocks)}), "
                f"got shape {list(x.shape)}"
            )
        if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"encoded rows must be numeric, got dtype {x.dtype}")
        x = x.astype(np.float32, copy=False)
        if not np.all(np.isfinite(x)):
            bad = np.argwhere(~np.isfinite(x))[0]
            name = self.schema.columns[self.layout.column_of[bad[1]]].name
            raise ValueError(f"encoded rows hold NaN/inf (row {bad[0]}, column {name!r})")
        return x

    # -- JAX -------------------------------------------------------------------------------------

    def activate(
        self,
        raw: Array,
        key: Array | None = None,
        *,
        temperature: float = 0.5,
        straight_through: bool = False,
    ) -> Array:
        """:func:`activate` with this transform's layout."""
        return activate(
            self.layout, raw, key, temperature=temperature, straight_through=straight_through
        )

    def projection(self) -> Projection:
        """The map of encodings to the encodings of the rows they decode to (decode then
        encode, in pure JAX: :func:`~jaxcf.tabular.project`), for searches that move encodings
        freely and must judge the rows a user will read (``cfproto``'s ``project``)."""
        return Projection(self.layout)

    # -- serialisation ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description (for checkpoint metadata); :meth:`from_dict` inverts
        it exactly (floats survive JSON's round trip)."""
        return {
            "format": FORMAT,
            "schema": self.schema.to_dict(),
            "numeric": {name: fit.to_dict() for name, fit in self.numeric.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TabularTransform:
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            got = d.get("format") if isinstance(d, Mapping) else type(d).__name__
            raise ValueError(f"not a {FORMAT} description (format {got!r})")
        numeric = {name: NumericFit(**fit) for name, fit in d["numeric"].items()}
        return cls(Schema.from_dict(d["schema"]), numeric)

    def digest(self) -> str:
        """SHA-256 (hex) of :meth:`to_dict`: equal digests mean the same schema and fit."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TabularTransform) and other.to_dict() == self.to_dict()

    __hash__ = None  # mutable-looking container of arrays; compare with digest() instead


def _check_columns(schema: Schema, table: Table) -> dict[str, np.ndarray]:
    """The table's columns as ``[N]`` arrays, in schema order; checks names and lengths."""
    if not hasattr(table, "keys"):
        raise ValueError(f"a table is a mapping column -> values, got {type(table).__name__}")
    keys = [str(k) for k in table.keys()]
    for name in schema.names:
        if name not in keys:
            raise ValueError(f"missing column {name!r}; the schema has {schema.names}")
    extra = [k for k in keys if k not in schema.names]
    if extra:
        raise ValueError(f"unexpected column {extra[0]!r}; the schema has {schema.names}")
    columns = {}
    for name in schema.names:
        values = np.asarray(table[name])
        if values.ndim != 1:
            raise ValueError(f"column {name!r} must be 1-D [N], got shape {list(values.shape)}")
        columns[name] = values
    lengths = {name: len(v) for name, v in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns have different lengths: {lengths}")
    return columns


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return bool(np.isnan(value))
    return isinstance(value, str) and value.strip() in _MISSING_STRINGS


def _category_indices(column: Column, values: np.ndarray) -> np.ndarray:
    """Category index of each value; a missing or unknown value raises naming the column."""
    lookup = {c: i for i, c in enumerate(column.categories)}
    idx = np.fromiter(
        (lookup.get(v, -1) if isinstance(v, str) else -1 for v in values.tolist()),
        dtype=np.int64,
        count=len(values),
    )
    bad = np.flatnonzero(idx < 0)
    if bad.size:
        value = values[bad[0]]
        if _is_missing(value):
            raise ValueError(
                f"column {column.name!r} row {bad[0]}: missing value {value!r} "
                f"(categories: {column.categories})"
            )
        raise ValueError(
            f"column {column.name!r} row {bad[0]}: unknown category {value!r}; expected one "
            f"of {column.categories}"
        )
    return idx


def _numeric_values(column: Column, values: np.ndarray) -> np.ndarray:
    """The values as float64; missing, non-numeric (strings and bools included), non-finite or
    (integer columns) non-integral values raise naming the column and row."""
    try:
        v = values.astype(np.float64)
    except (TypeError, ValueError):
        v = None
    if v is None or values.dtype.kind not in "iuf":
        # Strings, None or mixed objects: find the first offender for the message.
        out = np.empty(len(values), np.float64)
        for i, value in enumerate(values.tolist()):
            if _is_missing(value):
                raise ValueError(f"column {column.name!r} row {i}: missing value {value!r}")
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise ValueError(
                    f"column {column.name!r} row {i}: {value!r} is not a number "
                    f"({type(value).__name__})"
                )
            out[i] = float(value)
        v = out
    nan = np.flatnonzero(np.isnan(v))
    if nan.size:
        raise ValueError(f"column {column.name!r} row {nan[0]}: missing value nan")
    inf = np.flatnonzero(~np.isfinite(v))
    if inf.size:
        raise ValueError(f"column {column.name!r} row {inf[0]}: {v[inf[0]]} is not finite")
    if column.integer:
        frac = np.flatnonzero(v != np.rint(v))
        if frac.size:
            raise ValueError(
                f"column {column.name!r} row {frac[0]}: {float(v[frac[0]])!r} is not an integer "
                f"(the column is integer-valued)"
            )
    return v


def fmt(value: Any, column: Column) -> str:
    """A value as a person reads it: integers without '.0', reals to 6 significant digits."""
    if column.kind == "categorical":
        return str(value)
    value = float(value)
    if column.integer or value.is_integer():
        return str(int(round(value)))
    return f"{value:.6g}"
