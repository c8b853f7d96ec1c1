"""An experiment's report: ``metrics.json``, ``report.md`` and, for images, a grid of
counterfactuals and an L0 plot, from the output of :func:`jaxcf.experiment.evaluate`."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxcf import report
from jaxcf.core import (
    RESULT_FILE,
    DamagedFileError,
    Results,
    to_jsonable,
    write_json_atomic,
    write_text_atomic,
)

REPORT_DIR = "report"
"""The folder of an experiment's workdir that holds its report."""

HTML_DIR = "html"
"""The browsable report's folder inside the report folder: ``<workdir>/report/html/``."""


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
        f"* {name.replace('_minus_', ' - ')}: no pairs both solved"
        if not p["n"]
        else f"* {name.replace('_minus_', ' - ')} on the {p['n']} pairs both solved: "
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


def stored_runs(store: str | Path) -> dict[str, Results]:
    """Every finished run in a run store, by its folder name (``<label>-<key>``), read
    memory-mapped; a run whose record is damaged or missing is left out with a warning."""
    runs = {}
    for folder in sorted(Path(store).glob("*-*")):
        if not (folder / RESULT_FILE).is_file():
            continue
        try:
            runs[folder.name] = Results.load(folder, mmap=True)
        except (DamagedFileError, ValueError) as exc:
            warnings.warn(f"{folder}: left out of the HTML report: {exc}", stacklevel=2)
    return runs


def write_html_report(
    workdir: str | Path,
    results: Mapping[str, Results] | None = None,
    *,
    store: str | Path | None = None,
    evaluation: Mapping[str, Any] | None = None,
    title: str = "Counterfactual explanations",
    **kwargs: Any,
) -> Path:
    """Writes the browsable report (:func:`jaxcf.report.write_html`) into
    ``<workdir>/report/html/`` and returns its ``index.html``.

    Args:
      workdir: the experiment's workdir.
      results: label -> record; default every finished run of the run store, labelled by
        folder (what ``jaxcf report W --html`` shows for any experiment).
      store: the run store to read when ``results`` is not given (default ``<workdir>/runs``).
      evaluation: :func:`evaluate`'s output, whose per-row metrics (validity, realism) and
        timings the report shows.
      title: the report's heading.
      kwargs: passed to :func:`jaxcf.report.write_html` (``source``, ``class_names``,
        ``transform``, ...).

    Raises:
      ValueError: no runs to show.
    """
    workdir = Path(workdir)
    out = workdir / REPORT_DIR / HTML_DIR
    if results is None:
        results = stored_runs(store if store is not None else workdir / "runs")
    if not results:
        raise ValueError(f"{workdir}: no finished runs to show")
    links = {"report.md": "../report.md"}
    for name in ("metrics.json", "report.json"):
        if (workdir / REPORT_DIR / name).is_file():
            links[name] = f"../{name}"
    if evaluation is not None:
        kwargs.setdefault("metrics", evaluation.get("_rows"))
        kwargs.setdefault("timing", evaluation.get("timing"))
    return report.write_html(out, results, title=title, links=links, **kwargs)
