"""Mixed-type tabular rows as float vectors and back: a schema, a reversible encoding, its layout.

A *table* is a mapping ``column name -> [N] array`` (a dict of NumPy arrays, or a pandas
DataFrame): categorical columns hold strings, numeric columns numbers. A
:class:`TabularTransform` turns a table into ``float32 [N, D]`` rows a generator or classifier
can work on, and decodes such rows back into a table.

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

:func:`activate` maps a generator's unconstrained outputs to valid encodings inside jitted
code (tanh for alphas; Gumbel-softmax or a hard argmax for each block), driven by the static
:class:`Layout` of blocks. :func:`changes` and :func:`write_changes_csv` list what a
counterfactual changed, feature by feature, as ``old -> new``.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Kind = Literal["categorical", "numeric"]
Table = Mapping[str, Any]
"""``column name -> [N]`` values: a dict of arrays or a pandas DataFrame."""

FORMAT = "jaxcf.tabular.TabularTransform/1"
"""``to_dict()["format"]``: bumped whenever the meaning of the fields changes."""
_MISSING_STRINGS = ("?", "")


# ---------------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Column:
    """One column of a table.

    Attributes:
      name: the column's name in tables.
      kind: ``"categorical"`` or ``"numeric"``.
      categories: the categories of a categorical column, in encoding order (non-empty,
        distinct strings); empty for numeric columns.
      integer: a numeric column whose values are integers (decoded values are rounded and
        returned as int64); False for categorical columns.
    """

    name: str
    kind: Kind
    categories: tuple[str, ...] = ()
    integer: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a column name must be a non-empty string, got {self.name!r}")
        if self.kind not in ("categorical", "numeric"):
            raise ValueError(
                f"column {self.name!r}: kind must be 'categorical' or 'numeric', got {self.kind!r}"
            )
        categories = self.categories
        if isinstance(categories, str):
            raise ValueError(f"column {self.name!r}: categories must be a sequence of strings")
        categories = tuple(categories)
        object.__setattr__(self, "categories", categories)
        if self.kind == "categorical":
            if not categories or not all(isinstance(c, str) for c in categories):
                raise ValueError(
                    f"categorical column {self.name!r} needs a non-empty tuple of string "
                    f"categories, got {categories!r}"
                )
            if len(set(categories)) != len(categories):
                dup = next(c for c in categories if categories.count(c) > 1)
                raise ValueError(f"column {self.name!r}: category {dup!r} is listed twice")
            if self.integer:
                raise ValueError(f"categorical column {self.name!r} cannot be integer=True")
        else:
            if categories:
                raise ValueError(f"numeric column {self.name!r} cannot have categories")
            if not isinstance(self.integer, bool):
                raise ValueError(f"column {self.name!r}: integer must be a bool")

    @classmethod
    def categorical(cls, name: str, categories: Sequence[str]) -> Column:
        return cls(name, "categorical", tuple(categories))

    @classmethod
    def numeric(cls, name: str, *, integer: bool = False) -> Column:
        return cls(name, "numeric", (), integer)

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "categorical":
            return {"name": self.name, "kind": self.kind, "categories": list(self.categories)}
        return {"name": self.name, "kind": self.kind, "integer": self.integer}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Column:
        return cls(
            d["name"], d["kind"], tuple(d.get("categories", ())), bool(d.get("integer", False))
        )


@dataclasses.dataclass(frozen=True)
class Schema:
    """The columns of a table, in encoding order (names distinct)."""

    columns: tuple[Column, ...]

    def __post_init__(self) -> None:
        columns = tuple(self.columns)
        object.__setattr__(self, "columns", columns)
        if not columns or not all(isinstance(c, Column) for c in columns):
            raise ValueError("a Schema needs a non-empty sequence of Column")
        names = [c.name for c in columns]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ValueError(f"column {dup!r} appears twice in the schema")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def __len__(self) -> int:
        return len(self.columns)

    def index(self, name: str) -> int:
        """Position of column ``name``; an unknown name raises ``ValueError`` listing them all."""
        for i, column in enumerate(self.columns):
            if column.name == name:
                return i
        raise ValueError(f"unknown column {name!r}; the schema has {self.names}")

    def column(self, name: str) -> Column:
        return self.columns[self.index(name)]

    def to_dict(self) -> dict[str, Any]:
        return {"columns": [c.to_dict() for c in self.columns]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Schema:
        return cls(tuple(Column.from_dict(c) for c in d["columns"]))


# ---------------------------------------------------------------------------------------------
# Static layout (usable as a jit static argument: hashable, plain Python values)
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Block:
    """Where one column lives in an encoded row ``x[:, start:stop]``.

    Attributes:
      name, kind: the column's.
      start, stop: the column's slice of the encoded row.
      scalar: numeric only, the index of ``alpha`` (``start``); None for categorical.
      modes: numeric only, ``(lo, hi)``: the mode one-hot is ``x[:, lo:hi]``; None otherwise.
      means, stds: numeric only, each mode's mean and standard deviation (value units).
      low, high: numeric only, the range of the training values (decoded values are clipped
        to it).
      integer: numeric only, whether values are rounded when decoded.
    """

    name: str
    kind: Kind
    start: int
    stop: int
    scalar: int | None = None
    modes: tuple[int, int] | None = None
    means: tuple[float, ...] = ()
    stds: tuple[float, ...] = ()
    low: float | None = None
    high: float | None = None
    integer: bool = False

    @property
    def width(self) -> int:
        return self.stop - self.start


@dataclasses.dataclass(frozen=True)
class Layout:
    """The blocks of an encoded row, in column order, and derived static indices.

    Attributes:
      blocks: one :class:`Block` per schema column.
      dim: the encoded width ``D``.
      column_of: ``len D``: the column index each encoded dimension belongs to.
    """

    blocks: tuple[Block, ...]
    dim: int
    column_of: tuple[int, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.blocks)

    def block(self, name: str) -> Block:
        for b in self.blocks:
            if b.name == name:
                return b
        raise ValueError(f"unknown column {name!r}; the layout has {self.names}")

    def groups(self) -> tuple[tuple[int, int], ...]:
        """Every one-hot slice ``(lo, hi)``: categorical blocks and numeric mode blocks."""
        out = []
        for b in self.blocks:
            out.append((b.start, b.stop) if b.kind == "categorical" else b.modes)
        return tuple(out)


# ---------------------------------------------------------------------------------------------
# 1-D Gaussian mixture (deterministic EM)
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NumericFit:
    """A numeric column's fitted mixture and range (float64 values, modes sorted by mean).

    Attributes:
      weights, means, stds: ``K`` mixture weights (sum 1), means and standard deviations.
      low, high: the smallest and largest training value.
    """

    weights: tuple[float, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]
    low: float
    high: float

    def __post_init__(self) -> None:
        for field in ("weights", "means", "stds"):
            object.__setattr__(self, field, tuple(float(v) for v in getattr(self, field)))
        object.__setattr__(self, "low", float(self.low))
        object.__setattr__(self, "high", float(self.high))
        k = len(self.means)
        if k < 1 or len(self.weights) != k or len(self.stds) != k:
            raise ValueError(
                f"a NumericFit needs K >= 1 weights, means and stds, got "
                f"{len(self.weights)}, {k}, {len(self.stds)}"
            )
        values = (*self.weights, *self.means, *self.stds, self.low, self.high)
        if not all(math.isfinite(v) for v in values):
            raise ValueError("NumericFit values must be finite")
        if min(self.stds) <= 0 or min(self.weights) < 0 or self.low > self.high:
            raise ValueError("NumericFit needs stds > 0, weights >= 0 and low <= high")

    @property
    def n_modes(self) -> int:
        return len(self.means)

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": list(self.weights),
            "means": list(self.means),
            "stds": list(self.stds),
            "low": self.low,
            "high": self.high,
        }


def fit_mixture_1d(
    values: np.ndarray,
    n_modes: int,
    *,
    seed: int = 0,
    max_iter: int = 1000,
    tol: float = 1e-10,
) -> NumericFit:
    """Fits a ``n_modes``-component 1-D Gaussian mixture by EM; deterministic for a seed.

    EM runs on the distinct values weighted by their counts, which is the same likelihood as
    on the raw values but much cheaper for integer-valued columns. Means start from k-means++
    seeding over the distinct values (``seed``), so isolated spikes (Adult's capital-gain
    values) get a mode of their own. Standard deviations are floored at ``1e-3`` times the
    column's standard deviation: point masses are common (zero capital gain) and an unfloored
    mode would collapse to zero width. A mode can end up a copy of another (Adult's capital
    gain and loss put two on the zero spike) or dominated everywhere: it keeps its slot, so
    the width stays ``1 + K``, but ``encode`` never picks it (``decode`` still reads it).

    Args:
      values: ``[N]`` finite numbers.
      n_modes: ``K``; columns with fewer distinct values get duplicate modes.
      seed: seeds the k-means++ initialisation.
      max_iter: EM iterations at most; ``tol``: stop when the mean log-likelihood improves by
        less than this.

    Returns:
      A :class:`NumericFit`, modes sorted by mean.
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError("fit_mixture_1d needs a non-empty array of finite values")
    if isinstance(n_modes, bool) or not isinstance(n_modes, int) or n_modes < 1:
        raise ValueError(f"n_modes must be an integer >= 1, got {n_modes!r}")
    uniq, counts = np.unique(x, return_counts=True)
    counts = counts.astype(np.float64)
    total = counts.sum()
    scale = float(np.std(x)) or 1.0
    floor = 1e-3 * scale

    rng = np.random.default_rng(seed)
    centers = [uniq[rng.integers(uniq.size)]]
    while len(centers) < min(n_modes, uniq.size):
        d2 = np.min((uniq[:, None] - np.asarray(centers)[None, :]) ** 2, axis=1)
        centers.append(uniq[rng.choice(uniq.size, p=d2 / d2.sum())])
    centers += [centers[-1]] * (n_modes - len(centers))
    means = np.sort(np.asarray(centers))
    stds = np.full(n_modes, scale)
    weights = np.full(n_modes, 1.0 / n_modes)

    prev = -np.inf
    for _ in range(max_iter):
        log_p = _log_joint(uniq, weights, means, stds)  # [U, K]
        top = log_p.max(axis=1, keepdims=True)
        log_norm = top[:, 0] + np.log(np.exp(log_p - top).sum(axis=1))
        resp = np.exp(log_p - log_norm[:, None]) * counts[:, None]
        nk = resp.sum(axis=0)
        alive = nk > 1e-12 * total
        # A mode that lost all its points keeps its mean and width with weight 0 (never the
        # most responsible mode when encoding, but still a valid mode to decode).
        safe_nk = np.where(alive, nk, 1.0)
        new_means = np.where(alive, (resp * uniq[:, None]).sum(axis=0) / safe_nk, means)
        var = (resp * (uniq[:, None] - new_means[None, :]) ** 2).sum(axis=0) / safe_nk
        stds = np.where(alive, np.sqrt(np.maximum(var, floor**2)), stds)
        means, weights = new_means, nk / total
        ll = float((log_norm * counts).sum() / total)
        if ll - prev < tol:
            break
        prev = ll
    order = np.argsort(means, kind="stable")
    return NumericFit(
        weights=weights[order],
        means=means[order],
        stds=stds[order],
        low=float(x.min()),
        high=float(x.max()),
    )


def _log_joint(x: np.ndarray, weights: np.ndarray, means: np.ndarray, stds: np.ndarray):
    """``log w_k + log N(x; mu_k, sigma_k)``, ``[N, K]`` (weight 0 gives -inf)."""
    with np.errstate(divide="ignore"):
        log_w = np.log(weights)
    z = (x[:, None] - means[None, :]) / stds[None, :]
    return log_w[None, :] - 0.5 * z * z - np.log(stds)[None, :] - 0.5 * math.log(2 * math.pi)


# ---------------------------------------------------------------------------------------------
# The transform
# ---------------------------------------------------------------------------------------------


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
                    f"column {column.name!r} row {bad[0]}: {_fmt(v[bad[0]], column)} is outside "
                    f"the fitted range [{_fmt(fit.low, column)}, {_fmt(fit.high, column)}]"
                )
            means, stds = np.asarray(fit.means), np.asarray(fit.stds)
            k = np.argmax(_log_joint(v, np.asarray(fit.weights), means, stds), axis=1)
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


# ---------------------------------------------------------------------------------------------
# Table validation helpers
# ---------------------------------------------------------------------------------------------


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


def _fmt(value: Any, column: Column) -> str:
    """A value as a person reads it: integers without '.0', reals to 6 significant digits."""
    if column.kind == "categorical":
        return str(value)
    value = float(value)
    if column.integer or value.is_integer():
        return str(int(round(value)))
    return f"{value:.6g}"


# ---------------------------------------------------------------------------------------------
# Generator outputs -> valid encodings (pure JAX)
# ---------------------------------------------------------------------------------------------


def activate(
    layout: Layout,
    raw: Array,
    key: Array | None = None,
    *,
    temperature: float = 0.5,
    straight_through: bool = False,
) -> Array:
    """Maps unconstrained generator outputs ``[B, D]`` to valid encodings ``[B, D]``.

    ``alpha`` entries go through ``tanh`` (the in-mode range ``(-1, 1)``). Every one-hot block
    (a categorical column, a numeric column's modes):

    * ``key`` given (training): Gumbel-softmax at ``temperature``, soft and differentiable,
      each block summing to 1; with ``straight_through`` the forward value is the hard
      one-hot of the soft sample and the gradient the soft one's.
    * ``key`` None (explaining): the hard one-hot of the block's argmax.

    Pure and jittable; ``layout`` is static (hashable), so pass it through a closure or
    ``static_argnums``.
    """
    if raw.ndim != 2 or raw.shape[1] != layout.dim:
        raise ValueError(f"raw outputs must be [B, {layout.dim}], got {list(raw.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    # One Gumbel draw for the whole row (entries under alphas unused): a single random op
    # compiles once, where a draw per block of a different width compiled one kernel each.
    noisy = None if key is None else raw + jax.random.gumbel(key, raw.shape, raw.dtype)
    pieces = []
    for block, (lo, hi) in zip(layout.blocks, layout.groups(), strict=True):
        if block.kind == "numeric":
            pieces.append(jnp.tanh(raw[:, block.scalar : block.scalar + 1]))
        if noisy is None:
            pieces.append(_hard(raw[:, lo:hi]))
            continue
        soft = jax.nn.softmax(noisy[:, lo:hi] / temperature, axis=1)
        if straight_through:
            soft = soft + jax.lax.stop_gradient(_hard(soft) - soft)
        pieces.append(soft)
    return jnp.concatenate(pieces, axis=1)


def _hard(logits: Array) -> Array:
    """The one-hot of each row's argmax, ``[B, m]``."""
    return jax.nn.one_hot(jnp.argmax(logits, axis=1), logits.shape[1], dtype=logits.dtype)


def numeric_value(block: Block, enc: Array) -> Array:
    """The value ``mu_k + 4 sigma_k alpha`` of a numeric block, ``k`` the argmax mode, before
    :meth:`TabularTransform.decode`'s clipping and rounding; ``float32 [B]`` (pure JAX).

    Computed in float32 whatever ``enc``'s dtype: in bfloat16 a capital gain near 10^5 would
    be off by hundreds, and callers compare it with what ``decode`` reads."""
    if block.kind != "numeric":
        raise ValueError(f"column {block.name!r} is not numeric")
    k = jnp.argmax(enc[:, block.modes[0] : block.modes[1]], axis=1)
    means = jnp.asarray(block.means, jnp.float32)[k]
    stds = jnp.asarray(block.stds, jnp.float32)[k]
    return means + 4.0 * stds * enc[:, block.scalar].astype(jnp.float32)


# ---------------------------------------------------------------------------------------------
# Readable changes
# ---------------------------------------------------------------------------------------------

ARROW = " -> "


def changes(
    transform: TabularTransform,
    x_enc: Any,
    cf_enc: Any,
    query_ids: Sequence[Any] | None = None,
    *,
    extra: Mapping[str, Sequence[Any]] | None = None,
) -> list[dict[str, Any]]:
    """What each counterfactual changed, as one dict per row.

    Args:
      transform: decodes both arrays.
      x_enc: ``[N, D]`` encoded queries, row ``i`` the query of counterfactual ``i`` (repeat a
        query for several counterfactuals).
      cf_enc: ``[N, D]`` encoded counterfactuals.
      query_ids: ``[N]`` labels of the queries (default ``0..N-1``).
      extra: more per-row fields to carry, e.g. ``{"prediction": [...]}`` (``[N]`` each).

    Returns:
      ``[{"query": id, **extra, "changed": n, "<column>": "old -> new", ...}, ...]``: only the
      columns whose decoded value changed appear, in schema order.
    """
    x_table, cf_table = transform.decode(x_enc), transform.decode(cf_enc)
    n = len(next(iter(x_table.values())))
    n_cf = len(next(iter(cf_table.values())))
    if n_cf != n:
        raise ValueError(f"x_enc has {n} rows but cf_enc has {n_cf}; pair them row by row")
    ids = list(range(n)) if query_ids is None else list(query_ids)
    if len(ids) != n:
        raise ValueError(f"query_ids has {len(ids)} entries for {n} rows")
    extra = dict(extra or {})
    for name, values in extra.items():
        if len(values) != n:
            raise ValueError(f"extra field {name!r} has {len(values)} entries for {n} rows")
    rows = []
    for i in range(n):
        row: dict[str, Any] = {"query": ids[i]}
        row.update({name: values[i] for name, values in extra.items()})
        diff = {}
        for column in transform.schema.columns:
            old, new = x_table[column.name][i], cf_table[column.name][i]
            if old != new:
                diff[column.name] = _fmt(old, column) + ARROW + _fmt(new, column)
        row["changed"] = len(diff)
        row.update(diff)
        rows.append(row)
    return rows


def write_changes_csv(
    path: str | os.PathLike[str],
    transform: TabularTransform,
    x_enc: Any,
    cf_enc: Any,
    query_ids: Sequence[Any] | None = None,
    *,
    extra: Mapping[str, Sequence[Any]] | None = None,
) -> list[dict[str, Any]]:
    """Writes :func:`changes` as a CSV, one line per counterfactual (like the conditional
    generator paper's Figure 1 table): ``query``, the ``extra`` fields, ``changed`` (how many
    features changed), then one column per feature holding ``old -> new`` where it changed
    and nothing where it did not. Returns the rows written."""
    rows = changes(transform, x_enc, cf_enc, query_ids, extra=extra)
    header = ["query", *(extra or {}), "changed", *transform.schema.names]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return rows
