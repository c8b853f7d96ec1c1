"""Scoring methods run on the same pairs: every method's row metrics and summaries (validity
under the classifier it explained, realism under one shared classifier and density, spread over
groups), a comparison on the pairs every method solved, pair by pair, and, with several
counterfactuals per query, per-query aggregates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxcf.core import Results, to_jsonable
from jaxcf.evaluation import metrics


def evaluate(
    results: Mapping[str, Results],
    *,
    classifiers: Mapping[str, Any] | None = None,
    realism: tuple[Any, Any] | None = None,
    compare: tuple[str, ...] = ("l0", "l1"),
    common_over: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Scores and compares methods run on the same pairs.

    Args:
      results: label -> results, all over the same rows.
      classifiers: label -> the classifier whose validity to report (usually the one the
        method explained); methods without one get no ``valid``.
      realism: ``(classifier, density)`` under which every method's counterfactuals get an NLL
        (class targets), so that realism is comparable across methods.
      compare: row metrics compared on the pairs every method solved.
      common_over: the labels whose successes define "the pairs every method solved"
        (default: all); a method that fails most pairs (a one-step attack) would otherwise
        leave only the easiest ones.

    Returns:
      JSON-ready dict: ``rows`` (number of rows), ``summaries`` (label -> :func:`metrics.summarize`
      with spread over groups), ``queries`` (label -> per-query aggregates, when some query has
      several rows), ``timing`` (label -> seconds and seconds per counterfactual),
      ``common`` (the pairs every method of ``common_over`` solved: count, per-method means,
      per-group means; and ``paired``, the first method against each other one on the pairs
      *both* solved, pair by pair); and, not JSON, ``_rows``
      (label -> row metrics) for figures.
    """
    if not results:
        raise ValueError("no results to evaluate")
    labels = list(results)
    first = results[labels[0]]
    for label in labels[1:]:
        other = results[label]
        if len(other) != len(first) or not np.array_equal(other.query, first.query):
            raise ValueError(f"{label!r} was not run on the same rows as {labels[0]!r}")
    classifiers = classifiers or {}
    rows, summaries, queries, timing = {}, {}, {}, {}
    groups = first.group
    for label in labels:
        r = results[label]
        pq = metrics.row_metrics(r, classifier=classifiers.get(label))
        if realism is not None and np.issubdtype(r.target.dtype, np.integer):
            pq["nll"] = metrics.density_nll(realism[0], realism[1], r.x_cf, r.target)
        rows[label] = pq
        summaries[label] = metrics.summarize(pq, sets=groups)
        if len(r) > r.num_queries:
            qm = metrics.query_metrics(r, pq, compare)
            queries[label] = {
                "n": len(qm["query"]),
                "success_rate": float(qm["success"].mean()),
                "diversity": _nanmean(qm["diversity"]),
                **{
                    f"{k}_{agg}": _nanmean(qm[f"{k}_{agg}"])
                    for k in compare
                    for agg in ("best", "mean")
                },
            }
        seconds = float(r.timings.get("seconds", np.nan))
        timing[label] = {"seconds": seconds, "seconds_per_counterfactual": seconds / len(r)}
    over = list(common_over) if common_over is not None else labels
    unknown = set(over) - set(labels)
    if unknown:
        raise ValueError(f"common_over names methods that did not run: {sorted(unknown)}")
    solved = np.logical_and.reduce([rows[m]["success"] for m in over])
    common: dict[str, Any] = {"n": int(solved.sum()), "over": over}
    if solved.any():
        # Only the methods that define the pairs: another method's values there would mix its
        # failures in.
        common.update({m: {k: float(rows[m][k][solved].mean()) for k in compare} for m in over})
        columns = {f"{m}_{k}": rows[m][k] for m in over for k in compare}
        common["per_group"] = [g for g in metrics.set_means(columns, solved, groups) if g["n"]]
    common["paired"] = {  # each pair of methods on the pairs both solved
        f"{labels[0]}_minus_{m}": metrics.paired_comparison(rows[labels[0]], rows[m], compare)
        for m in labels[1:]
    }
    out = {
        "rows": len(first),
        "summaries": summaries,
        "queries": queries,
        "timing": timing,
        "common": common,
    }
    return {**to_jsonable(out), "_rows": rows}


def _nanmean(a: np.ndarray) -> float | None:
    a = np.asarray(a, np.float64)
    return float(np.nanmean(a)) if np.any(np.isfinite(a)) else None
