"""Experiments: several methods over one list of (query, target) pairs, with metrics, figures and a
report. Protocols (:mod:`jaxcf.protocols`) build their pairs and resources and call these.

* :func:`run_methods` builds each :class:`~jaxcf.methods.MethodSpec` from the registry and runs
  it through :func:`jaxcf.runner.run` into ``workdir/<label>`` (resumable);
* :func:`evaluate` scores every method's :class:`~jaxcf.core.Results` (row metrics, validity
  under the classifier it explained, realism under one shared classifier + density, summaries with
  spread over groups), compares the methods on the pairs every method solved, pair by pair, and,
  with several counterfactuals per query, aggregates per query;
* :func:`write_report` writes ``metrics.json``, ``report.md`` and, for images, ``grid.png`` and
  ``l0.png``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxcf import report, runner
from jaxcf.core import Results, to_jsonable, write_json_atomic, write_text_atomic
from jaxcf.evaluation import metrics
from jaxcf.methods import MethodSpec, make


def _config_dict(spec: MethodSpec) -> dict[str, Any]:
    config = spec.resolved_config()
    return to_jsonable(dataclasses.asdict(config)) if dataclasses.is_dataclass(config) else {}


def run_methods(
    specs: Sequence[MethodSpec],
    resources: Mapping[str, Any],
    x: Any,
    target: Any,
    workdir: str | Path,
    *,
    group: Any = None,
    config: runner.RunnerConfig | None = None,
    num_cfs: int = 1,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Results]:
    """Runs every method on the same pairs; returns label -> results.

    Args:
      specs: the methods (labels must be distinct).
      resources: what the methods need, by key (``"classifier"``, ``"density"``, ...).
      x, target: ``[N, ...]`` queries and their targets.
      workdir: each method's runner directory is ``workdir/<label>``.
      group: optional ``[N]`` group id per query (a protocol's sets).
      config, num_cfs, seed: passed to :func:`jaxcf.runner.run`.
    """
    labels = [s.key for s in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"method labels must be distinct, got {labels}")
    out = {}
    for spec in specs:
        explainer = make(spec, **resources)
        out[spec.key] = runner.run(
            explainer,
            x,
            target,
            Path(workdir) / spec.key,
            config=config or runner.RunnerConfig(),
            num_cfs=num_cfs,
            seed=seed,
            group=group,
            desc=spec.key,
            progress=progress,
            meta={"method": spec.name, "config": _config_dict(spec), "precision": spec.precision},
        )
    return out


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


def _is_image(x: np.ndarray) -> bool:
    return x.ndim == 4 and x.shape[-1] in (1, 3)


def grid_rows(n_rows: int, n: int) -> np.ndarray:
    """``n`` row indices spread evenly over ``n_rows`` (the figure's examples)."""
    return np.unique(np.linspace(0, n_rows - 1, num=min(n, n_rows)).astype(int))


def write_report(
    workdir: str | Path,
    results: Mapping[str, Results],
    evaluation: Mapping[str, Any],
    *,
    title: str,
    intro: str = "",
    published: Mapping[str, Any] | None = None,
    published_label: str = "paper",
    extra: Mapping[str, Any] | None = None,
    grid: int = 6,
    pred: Any = None,
) -> dict[str, Any]:
    """Writes ``metrics.json``, ``report.md`` and (for images) ``grid.png`` and ``l0.png``.

    Args:
      workdir: where the files go.
      results: label -> results (for the figures).
      evaluation: output of :func:`evaluate`.
      title, intro: the report's heading and first paragraph (markdown).
      published: optional published numbers beside ours (see :func:`jaxcf.report.format_table`).
      extra: more JSON-ready entries for ``metrics.json`` (models, configs, ...).
      grid: examples in ``grid.png``.
      pred: optional callable ``pred(x) -> [B]`` classes, to title the grid's originals.

    Returns:
      The dict written to ``metrics.json``.
    """
    workdir = Path(workdir)
    labels = list(results)
    summaries = evaluation["summaries"]
    doc = {k: v for k, v in evaluation.items() if not k.startswith("_")}
    doc.update(to_jsonable(dict(extra or {})))
    write_json_atomic(workdir / "metrics.json", doc)

    first = results[labels[0]]
    figures = ""
    if _is_image(first.x):
        show = grid_rows(len(first), grid)
        report.counterfactual_grid(
            workdir / "grid.png",
            first.x[show],
            {m: results[m].rows(show) for m in labels},
            first.target[show] if first.target.ndim == 1 else np.argmax(first.target[show], -1),
            pred=None if pred is None else np.asarray(pred(first.x[show])),
            n=len(show),
            title=f"{title}: counterfactual and difference (red: increased)",
        )
        rows = evaluation["_rows"]
        report.l0_plot(
            workdir / "l0.png",
            {m: rows[m]["l0"][rows[m]["success"]] for m in labels},
            published=published,
            title=f"L0 of found counterfactuals ({len(first)} rows)",
        )
        figures = "\n![counterfactuals](grid.png)\n\n![L0](l0.png)\n"
    timing = "\n".join(
        f"| {m} | {t['seconds_per_counterfactual'] * 1e3:.2f} ms |"
        for m, t in evaluation["timing"].items()
    )
    text = (
        f"# {title}\n\n"
        + (intro.strip() + "\n\n" if intro else "")
        + report.markdown_table(summaries, published, published_label=published_label)
        + _queries_markdown(evaluation.get("queries", {}))
        + _common_markdown(evaluation["common"], labels)
        + "\n| method | time per counterfactual (incl. compilation) |\n| :--- | ---: |\n"
        + timing
        + "\n"
        + figures
    )
    write_text_atomic(workdir / "report.md", text)
    return doc


def _queries_markdown(queries: Mapping[str, Any]) -> str:
    if not queries:
        return ""
    lines = [
        "\nPer query (several counterfactuals each):\n",
        "| method | queries | solved % | L0 best | L0 mean | diversity (mean pairwise L1) |",
        "| :--- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m, q in queries.items():
        cells = [q.get("l0_best"), q.get("l0_mean"), q.get("diversity")]
        text = ["—" if c is None else f"{c:.2f}" for c in cells]
        lines.append(
            f"| {m} | {q['n']} | {100 * q['success_rate']:.1f} | " + " | ".join(text) + " |"
        )
    return "\n".join(lines) + "\n"


def _common_markdown(common: Mapping[str, Any], labels: list[str]) -> str:
    """The per-group L0/L1 table on the common pairs, and the paired differences."""
    if len(labels) < 2:
        return ""
    paired = [
        f"* {name.replace('_minus_', ' - ')} on the {p['n']} pairs both solved: "
        + "; ".join(
            f"{k.upper()} {p[k]['diff']:+.2f} ± {p[k]['stderr'] or 0:.2f} "
            f"(lower on {100 * p[k]['a_lower']:.0f}% of pairs, higher on "
            f"{100 * p[k]['b_lower']:.0f}%)"
            for k in ("l0", "l1")
            if k in p and p[k]["diff"] is not None
        )
        for name, p in common["paired"].items()
    ]
    text = "\nPaired differences (mean ± standard error):\n\n" + "\n".join(paired) + "\n"
    if "per_group" not in common:
        return text
    keys = [k for k in ("l0", "l1") if k in common[common["over"][0]]]
    cols = [(m, k) for k in keys for m in common["over"]]
    head = "| group | pairs | " + " | ".join(f"{m} {k.upper()}" for m, k in cols) + " |\n"
    head += "| ---: | ---: |" + " ---: |" * len(cols) + "\n"
    rows = [
        f"| {r['set'] + 1} | {r['n']} | "
        + " | ".join(f"{r[f'{m}_{k}']:.2f}" for m, k in cols)
        + " |"
        for r in common["per_group"]
    ]
    rows.append(
        f"| all | {common['n']} | " + " | ".join(f"{common[m][k]:.2f}" for m, k in cols) + " |"
    )
    return (
        f"\nOn the {common['n']} pairs {', '.join(common['over'])} all solved:\n\n"
        + head
        + "\n".join(rows)
        + "\n"
        + text
    )
