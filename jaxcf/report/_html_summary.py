"""The numbers of the HTML report's summary page: each method's summary, the distributions of its
per-row metrics (histograms on edges shared by all methods) and, for class targets, success and
mean L1 per source class and target class."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxcf.evaluation import metrics as metrics_lib

BINS = 30
MAX_CLASSES = 40  # a matrix with more source or target classes than this is left out
_SUMMARIZED = ("success", "valid", "l0", "l1", "l2", "n_iter", "nll", "score")


def method_summary(
    columns: Mapping[str, np.ndarray], queries: int, seconds: float | None
) -> dict[str, Any]:
    """One method's summary: ``rows``, ``queries``, ``success_rate``, ``valid_rate``, the means
    of ``l0``, ``l1``, ``l2``, ``nll`` and ``changed`` over successful rows, ``n_iter`` over all
    rows (as :func:`jaxcf.evaluation.metrics.summarize` averages them), and ``seconds`` of
    compute with ``seconds_per_cf``; None where unknown."""
    s = metrics_lib.summarize({k: columns[k] for k in _SUMMARIZED if k in columns})
    rows = int(s["n"])
    success = np.asarray(columns["success"], bool)
    changed = columns.get("changed")
    out = {
        "rows": rows,
        "queries": int(queries),
        "success_rate": 1.0 - s["failure_rate"],
        "valid_rate": s.get("valid_rate"),
        "l0": s.get("l0"),
        "l1": s.get("l1"),
        "l2": s.get("l2"),
        "nll": s.get("nll"),
        "changed": _mean(changed[success]) if changed is not None else None,
        "n_iter": s.get("n_iter_all"),
        "seconds": seconds,
        "seconds_per_cf": None if seconds is None else seconds / rows,
    }
    return out


def _mean(a: np.ndarray) -> float | None:
    a = np.asarray(a, np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else None


def histogram_edges(values: Sequence[np.ndarray]) -> np.ndarray | None:
    """Edges shared by every method's values: one bin per integer for integers spanning at most
    :data:`BINS` values, else :data:`BINS` equal bins; None when no value is finite."""
    finite = [v[np.isfinite(v)] for v in values]
    finite = [v for v in finite if v.size]
    if not finite:
        return None
    low = min(float(v.min()) for v in finite)
    high = max(float(v.max()) for v in finite)
    integral = all(np.all(v == np.rint(v)) for v in finite)
    if integral and high - low < BINS:
        return np.arange(low - 0.5, high + 1.0, 1.0)
    if high == low:
        return np.asarray([low - 0.5, high + 0.5])
    return np.linspace(low, high, BINS + 1)


def histograms(
    per_method: Sequence[Mapping[str, np.ndarray]], order: Sequence[tuple[str, str, bool]]
) -> list[dict[str, Any]]:
    """One histogram per metric (flags left out): ``key``, ``label``, ``over`` (which rows),
    ``edges`` and ``counts`` (one list per method; None for a method without the metric)."""
    out = []
    for key, label, over_success in order:
        if key in ("success", "valid"):
            continue
        values = []
        for cols in per_method:
            if key not in cols:
                values.append(None)
                continue
            v = np.asarray(cols[key], np.float64)
            values.append(v[np.asarray(cols["success"], bool)] if over_success else v)
        edges = histogram_edges([v for v in values if v is not None])
        if edges is None:
            continue
        counts = [
            None if v is None else np.histogram(v[np.isfinite(v)], edges)[0].tolist()
            for v in values
        ]
        over = "successful rows" if over_success else "all rows"
        unit = bool(np.all(np.diff(edges) == 1.0) and edges[0] % 1 == 0.5)  # a bin per integer
        out.append(
            {
                "key": key,
                "label": label,
                "over": over,
                "edges": edges,
                "counts": counts,
                "unit": unit,
            }
        )
    return out


def class_matrix(
    source: np.ndarray | None,
    target: np.ndarray,
    success: np.ndarray,
    l1: np.ndarray | None,
) -> dict[str, Any] | None:
    """Success rate and mean L1 (over successful rows) per source class x target class.

    ``source`` is ``[R]`` classes (-1 unknown) or None (one row for every source, marked -1).
    Returns ``sources``, ``targets`` (the classes present), ``n``, ``success`` (rates, None in
    empty cells) and ``l1`` (None where no row succeeded); None with more than
    :data:`MAX_CLASSES` classes on either side.
    """
    source = np.full(target.shape, -1, np.int64) if source is None else source
    sources, s_idx = np.unique(source, return_inverse=True)
    targets, t_idx = np.unique(target, return_inverse=True)
    if len(sources) > MAX_CLASSES or len(targets) > MAX_CLASSES:
        return None
    cell = s_idx * len(targets) + t_idx
    size = len(sources) * len(targets)
    ok = np.asarray(success, bool)
    n = np.bincount(cell, minlength=size)
    found = np.bincount(cell, weights=ok, minlength=size)
    rate = np.where(n > 0, found / np.maximum(n, 1), np.nan)
    mean_l1 = np.full(size, np.nan)
    if l1 is not None:
        l1 = np.asarray(l1, np.float64)
        good = ok & np.isfinite(l1)
        total = np.bincount(cell[good], weights=l1[good], minlength=size)
        count = np.bincount(cell[good], minlength=size)
        mean_l1 = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    shape = (len(sources), len(targets))
    return {
        "sources": sources.tolist(),
        "targets": targets.tolist(),
        "n": n.reshape(shape).tolist(),
        "success": rate.reshape(shape),
        "l1": mean_l1.reshape(shape),
    }
