"""Actionability constraints on tabular counterfactuals, made to hold exactly.

* :class:`Constraints`: columns a counterfactual may never change (``immutable``, e.g. race and
  sex) and numeric columns it may only raise (``increasing``, e.g. age), fixed when a
  generator is trained.
* *fixed* columns: chosen per query at explain time (a list of names, or a bool mask
  ``[B, n_columns]``); :func:`fixed_mask` turns either into the mask.
* :func:`enforce` (pure JAX) makes all of them hold in the *encoded* counterfactual, so that
  :meth:`~jaxcf.tabular.TabularTransform.decode` of its output satisfies them exactly;
  :func:`violations` counts what does not hold on decoded rows (zero after ``enforce``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcf.tabular._activation import numeric_value
from jaxcf.tabular._schema import Layout, Schema, Table
from jaxcf.tabular._transform import TabularTransform

Array = jax.Array

INCREASING_RTOL = 1e-5
"""An increasing column is restored to the query's value unless the counterfactual's value
exceeds it by more than this much relative to the values' sizes: JAX computes the value in
float32 and ``decode`` in float64, and the two must agree on which side of the query it lies."""


def _names(config: Any, field: str) -> tuple[str, ...]:
    value = getattr(config, field)
    if isinstance(value, str):
        raise ValueError(
            f"{type(config).__name__}.{field} must be a sequence of column names, got the "
            f"string {value!r}; write ({value!r},)"
        )
    names = tuple(value)
    if not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{type(config).__name__}.{field} must hold column names, got {names!r}")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"{type(config).__name__}.{field} lists column {dup!r} twice")
    return names


@dataclasses.dataclass(frozen=True)
class Constraints:
    """Columns a counterfactual must not change, or may only increase.

    Attributes:
      immutable: column names whose value is always the query's.
      increasing: numeric column names whose counterfactual value is at least the query's.

    Hashable, so it can be a static argument of jitted code. Names are checked against a
    schema by :meth:`check` (``enforce`` and ``violations`` call it).
    """

    immutable: tuple[str, ...] = ()
    increasing: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "immutable", _names(self, "immutable"))
        object.__setattr__(self, "increasing", _names(self, "increasing"))
        both = set(self.immutable) & set(self.increasing)
        if both:
            raise ValueError(
                f"column {sorted(both)[0]!r} is both immutable and increasing; immutable "
                f"already keeps it at the query's value"
            )

    def to_dict(self) -> dict[str, list[str]]:
        """JSON form (``Constraints(**d)`` reads it back), as generator configs store it."""
        return {"immutable": list(self.immutable), "increasing": list(self.increasing)}

    def check(self, schema: Schema) -> None:
        """Raises ``ValueError`` naming a column the schema lacks, or an increasing column that
        is not numeric."""
        for name in (*self.immutable, *self.increasing):
            if name not in schema.names:
                raise ValueError(
                    f"constraint on unknown column {name!r}; the schema has {schema.names}"
                )
        for name in self.increasing:
            if schema.column(name).kind != "numeric":
                raise ValueError(
                    f"increasing column {name!r} is categorical; only numeric columns can be "
                    f"constrained to increase"
                )


def fixed_mask(schema: Schema, fixed: Any, batch_size: int) -> np.ndarray:
    """Explain-time fixed columns as a bool mask ``[batch_size, n_columns]``.

    Args:
      schema: the columns.
      fixed: None (nothing fixed), a sequence of column names (fixed for every query), or a
        bool array ``[n_columns]`` or ``[batch_size, n_columns]`` (per query).
      batch_size: ``B``.

    Raises:
      ValueError: an unknown column name or a mask of the wrong shape or dtype.
    """
    n = len(schema)
    if fixed is None:
        return np.zeros((batch_size, n), bool)
    if isinstance(fixed, str):
        raise ValueError(f"fixed must be a sequence of column names, got the string {fixed!r}")
    if isinstance(fixed, np.ndarray | jax.Array) and fixed.dtype == bool:
        mask = np.asarray(fixed)
        if mask.shape == (n,):
            mask = np.broadcast_to(mask, (batch_size, n))
        if mask.shape != (batch_size, n):
            raise ValueError(
                f"a fixed mask must be [{n}] or [{batch_size}, {n}] (queries x columns "
                f"{schema.names}), got {list(mask.shape)}"
            )
        return mask.copy()
    names = list(fixed)
    if names and not all(isinstance(name, str) for name in names):
        raise ValueError(
            f"fixed must be column names or a bool mask [B, {n}], got {fixed!r} "
            f"(a non-bool array? use dtype=bool)"
        )
    mask = np.zeros((batch_size, n), bool)
    for name in names:
        mask[:, schema.index(name)] = True
    return mask


def enforce(
    layout: Layout,
    constraints: Constraints,
    x_enc: Array,
    cf_enc: Array,
    fixed: Array | None = None,
) -> Array:
    """Makes the constraints hold exactly in encoded counterfactuals (pure JAX, jittable).

    Immutable and fixed columns are copied from the query block for block. An increasing
    column whose counterfactual value (``mu_k + 4 sigma_k alpha`` at the argmax mode ``k``,
    as ``decode`` reads it) is not above the query's gets the query's block: the value clamped
    to the query's, encoded exactly as the query encodes it. ``decode`` of the result
    therefore satisfies every constraint exactly, whether ``cf_enc`` is hard or a soft
    Gumbel-softmax sample.

    A ``jnp.where`` between the two arrays: differentiable almost everywhere, the gradient
    flows to ``cf_enc`` wherever it is kept.

    Args:
      layout: the transform's static :class:`~jaxcf.tabular.Layout` (hashable).
      constraints: static :class:`Constraints`.
      x_enc: ``[B, D]`` encoded queries (as ``encode`` gives them).
      cf_enc: ``[B, D]`` encoded counterfactuals.
      fixed: bool ``[B, n_columns]`` columns fixed per query (see :func:`fixed_mask`), or None.

    Returns:
      ``[B, D]`` counterfactuals satisfying the constraints.
    """
    names = layout.names
    for name in (*constraints.immutable, *constraints.increasing):
        if name not in names:
            raise ValueError(f"constraint on unknown column {name!r}; the layout has {names}")
    if x_enc.shape != cf_enc.shape or x_enc.ndim != 2 or x_enc.shape[1] != layout.dim:
        raise ValueError(
            f"x_enc and cf_enc must both be [B, {layout.dim}], got {list(x_enc.shape)} and "
            f"{list(cf_enc.shape)}"
        )
    batch = x_enc.shape[0]
    if fixed is not None and tuple(fixed.shape) != (batch, len(names)):
        raise ValueError(
            f"fixed must be a bool mask [{batch}, {len(names)}] (queries x columns), got "
            f"{list(fixed.shape)}"
        )
    keep_query = []
    for i, block in enumerate(layout.blocks):
        copy = jnp.full((batch,), block.name in constraints.immutable)
        if fixed is not None:
            copy = copy | fixed[:, i].astype(bool)
        if block.name in constraints.increasing:
            v_x = numeric_value(block, x_enc)
            v_cf = numeric_value(block, cf_enc)
            tol = INCREASING_RTOL * (1.0 + jnp.abs(v_x) + jnp.abs(v_cf))
            copy = copy | (v_cf <= v_x + tol)
        keep_query.append(copy)
    per_column = jnp.stack(keep_query, axis=1)  # [B, n_columns]
    per_dim = per_column[:, np.asarray(layout.column_of)]  # [B, D]
    return jnp.where(per_dim, x_enc, cf_enc)


def violations(
    transform: TabularTransform,
    x_table: Table,
    cf_table: Table,
    constraints: Constraints,
    fixed: Any = None,
) -> np.ndarray:
    """Counts, per row, the columns that break a constraint on decoded tables (host side).

    A column counts once when it is immutable or fixed and changed, or increasing and lower in
    the counterfactual than in the query.

    Args:
      transform: gives the schema.
      x_table, cf_table: decoded queries and counterfactuals, row ``i`` paired with row ``i``.
      constraints: the :class:`Constraints`.
      fixed: as for :func:`fixed_mask`.

    Returns:
      ``int64 [N]`` number of violated columns per row.
    """
    schema = transform.schema
    constraints.check(schema)
    n = len(np.asarray(x_table[schema.names[0]]))
    n_cf = len(np.asarray(cf_table[schema.names[0]]))
    if n_cf != n:
        raise ValueError(f"x_table has {n} rows but cf_table has {n_cf}; pair them row by row")
    mask = fixed_mask(schema, fixed, n)
    counts = np.zeros(n, np.int64)
    for i, name in enumerate(schema.names):
        old, new = np.asarray(x_table[name]), np.asarray(cf_table[name])
        bad = np.zeros(n, bool)
        if name in constraints.immutable:
            bad |= old != new
        bad |= mask[:, i] & (old != new)
        if name in constraints.increasing:
            bad |= new.astype(np.float64) < old.astype(np.float64)
        counts += bad
    return counts
