"""What a counterfactual changed, readably: :func:`changes` and :func:`write_changes_csv` list it
feature by feature, as ``old -> new``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from typing import Any

from jaxcf.tabular._transform import TabularTransform, fmt

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
                diff[column.name] = fmt(old, column) + ARROW + fmt(new, column)
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
