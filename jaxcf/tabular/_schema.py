"""The schema of a table and the static layout of its encoding.

A *table* is a mapping ``column name -> [N] array`` (a dict of NumPy arrays, or a pandas
DataFrame): categorical columns hold strings, numeric columns numbers. A :class:`Schema` lists
the columns (:class:`Column`) in encoding order; a :class:`Layout` says where each column lives
in an encoded row (one :class:`Block` per column) and is static (hashable, plain Python values),
so it can be a jit static argument.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

Kind = Literal["categorical", "numeric"]
Table = Mapping[str, Any]
"""``column name -> [N]`` values: a dict of arrays or a pandas DataFrame."""


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


@dataclasses.dataclass(frozen=True)
class Block:
    """Where one column lives in an encoded row ``x[:, start:stop]``.

    Attributes:
      name, kind: the column's.
      start, stop: the column's slice of the encoded row.
      scalar: numeric only, the index of ``alpha`` (``start``); None for categorical.
      modes: numeric only, ``(lo, hi)``: the mode one-hot is ``x[:, lo:hi]``; None otherwise.
      means, stds: numeric only, each mode's mean and standard deviation (value units).
      weights: numeric only, each mode's mixture weight (what :func:`~jaxcf.tabular.project`
        picks a value's mode by, as encoding does).
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
    weights: tuple[float, ...] = ()
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
