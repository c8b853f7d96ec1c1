"""A browsable HTML report of counterfactual runs: :func:`write_html`.

The report is a static site that opens from disk with no network: ``index.html`` (which holds
no data), the page's own CSS and JavaScript in ``assets/``, and the data in ``data/`` as script
files that register themselves (a page opened from ``file://`` cannot ``fetch()``). The records
are read a block of rows at a time, so a memory-mapped record larger than memory is written with
memory bounded by a block; the page loads the blocks of the rows it shows, and nothing else.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxcf.core import Results
from jaxcf.evaluation import metrics as metrics_lib
from jaxcf.report._common import PathLike
from jaxcf.report._html_data import (
    block_ranges,
    is_flag,
    js_data,
    metric_columns,
    metric_order,
    read_rows,
    release,
    target_columns,
    write_columns_js,
    write_csv,
)
from jaxcf.report._html_page import check_folder, check_links, publish, staging
from jaxcf.report._html_summary import class_matrix, histograms, method_summary
from jaxcf.report._html_views import data_kind, make_view
from jaxcf.tabular import TabularTransform

_DISTANCES = {"l0": metrics_lib.l0, "l1": metrics_lib.l1, "l2": metrics_lib.l2}


def write_html(
    out_dir: PathLike,
    results: Mapping[str, Results],
    *,
    metrics: Mapping[str, Mapping[str, Any]] | None = None,
    source: Any = None,
    class_names: Sequence[str] | None = None,
    transform: TabularTransform | None = None,
    timing: Mapping[str, Any] | None = None,
    title: str = "Counterfactual explanations",
    links: Mapping[str, str] | None = None,
    page_size: int = 100,
    kind: str | None = None,
) -> Path:
    """Writes a browsable report of counterfactual runs into ``out_dir``; returns its
    ``index.html``.

    The report opens from disk in a browser, with no network and no server. Its summary page
    shows a table per method (rows, success and validity rates, mean L0, L1, L2 and realism NLL
    over successful rows, iterations, time per counterfactual), histograms of the per-row
    metrics and, for class targets, success rate and mean L1 per source class x target class.
    Its gallery shows query, counterfactual and difference, a page at a time, sortable by any
    metric and filtered by method, source class, target class and success: images as pictures
    with a signed difference (red: the counterfactual is larger, blue: smaller, saturated at
    +-1), time series as overlaid curves, table rows as the features that changed, old and new.

    ``out_dir`` gets ``index.html``, ``assets/`` and ``data/`` (other files there are left
    alone; a previous report's folders are replaced). The records are read a block of rows at a
    time, so memory-mapped records (``Results.load(path, mmap=True)``) larger than memory are
    written with bounded memory.

    Args:
      out_dir: the report's folder.
      results: method label -> its record (any number of rows; usually the same rows).
      metrics: method label -> per-row metrics (:func:`jaxcf.evaluation.metrics.row_metrics`
        output: ``[R]`` arrays such as ``success``, ``valid``, ``l0``, ``l1``, ``l2``, ``nll``;
        any other ``[R]`` array becomes a sortable metric too). ``l0``, ``l1`` and ``l2`` are
        computed from the records where not given.
      source: the classifier's predicted class per query (``[Q]`` ints indexed by the records'
        ``query`` field), or method label -> such an array.
      class_names: names of the classes (default: their numbers).
      transform: decodes table rows (``[R, F]`` records) into named columns.
      timing: method label -> seconds of compute (or a dict with ``seconds``, as
        ``jaxcf.experiment.evaluate`` gives); default the record's ``timings["seconds"]``.
      title: the report's heading.
      links: name -> path relative to ``out_dir`` of a file behind the numbers (``metrics.json``,
        a run folder). A name equal to a method label links that method's numbers and figures;
        the others are listed with every table and figure.
      page_size: gallery rows per page.
      kind: ``"image"``, ``"series"``, ``"table"`` or ``"none"``; default from the rows' shape
        (``[R, H, W, C]``, ``[R, T, C]``, ``[R, F]``).

    Returns:
      The path of ``index.html``.

    Raises:
      ValueError, TypeError: inputs that do not fit the records (shapes, labels, classes).
      FileExistsError: ``out_dir`` holds an ``index.html``, ``assets/`` or ``data/`` that is
        not a report's.
    """
    out_dir = Path(out_dir)
    labels = _check_results(results)
    records = dict(zip(labels, results.values(), strict=True))
    metrics = {str(k): v for k, v in (metrics or {}).items()}
    timing = {str(k): v for k, v in (timing or {}).items()}
    if isinstance(source, Mapping):
        source = {str(k): v for k, v in source.items()}
    unknown = sorted(set(map(str, metrics)) - set(labels))
    if unknown:
        raise ValueError(f"metrics for methods not in results: {unknown}")
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
        raise ValueError(f"page_size must be a positive int, got {page_size!r}")
    names = None if class_names is None else [str(c) for c in class_names]
    link_list = check_links(links)
    method_links = {name: href for name, href in link_list if name in labels}
    check_folder(out_dir)

    stage = staging(out_dir)
    try:
        methods, per_method = [], []
        for i, label in enumerate(labels):
            r = records[label]
            entry, cols = _write_method(
                stage / "data" / f"m{i}",
                label,
                r,
                metric_columns(label, metrics.get(label), len(r)),
                _source_rows(source, label, r.query),
                data_kind(r.x, transform, kind),
                transform,
            )
            entry["summary"] = method_summary(cols, r.num_queries, _seconds(timing, label, r))
            entry["link"] = method_links.get(label)
            methods.append(entry)
            per_method.append(cols)
        order = metric_order([k for cols in per_method for k in cols if not k.startswith("_")])
        classes = _classes(names, per_method)
        site = {
            "id": "site",
            "version": 1,
            "title": str(title),
            "page_size": page_size,
            "classes": classes,
            "metrics": [
                {"key": k, "label": lab, "flag": is_flag(k), "over_success": over}
                for k, lab, over in order
            ],
            "methods": methods,
            "links": [
                {"name": name, "href": href} for name, href in link_list if name not in labels
            ],
            "histograms": histograms(per_method, order),
            "matrices": [_matrix(cols) for cols in per_method],
        }
        (stage / "data" / "site.js").write_bytes(js_data(site))
        return publish(stage, out_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _check_results(results: Mapping[str, Results]) -> list[str]:
    if not isinstance(results, Mapping) or not results:
        raise ValueError("results must be a non-empty mapping: method label -> Results")
    labels = []
    for label, r in results.items():
        if not isinstance(r, Results):
            raise TypeError(f"results[{label!r}] must be a jaxcf.core.Results, got {type(r)}")
        if len(r) == 0:
            raise ValueError(f"results[{label!r}] has no rows")
        labels.append(str(label))
    if len(set(labels)) != len(labels):
        raise ValueError(f"method labels must be distinct as text, got {labels}")
    return labels


def _write_method(
    folder: Path,
    label: str,
    r: Results,
    given: dict[str, np.ndarray],
    source: np.ndarray | None,
    kind: str,
    transform: TabularTransform | None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Writes one method's blocks, ``rows.js`` and ``rows.csv``; returns its entry of the site
    and its per-row columns (metrics, then ``_target`` and ``_source`` for the matrix)."""
    folder.mkdir()
    rows = len(r)
    view = make_view(kind, tuple(r.x.shape[1:]), transform)
    need = [k for k in _DISTANCES if k not in given]
    found: dict[str, np.ndarray] = {k: np.empty(rows, np.float64) for k in need}
    if need or view.kind != "none":
        for b, (start, stop) in enumerate(block_ranges(rows, view.block_rows)):
            x, x_cf = read_rows(r.x, start, stop), read_rows(r.x_cf, start, stop)
            _distances(need, x, x_cf, found, start)
            for k, v in view.write(folder, b, x, x_cf).items():
                found.setdefault(k, np.empty(rows, v.dtype))[start:stop] = v
            release(r.x, r.x_cf)

    target_kind, target = target_columns(r.target)
    metric = {
        "success": np.asarray(r.success, bool),
        "n_iter": np.asarray(r.n_iter),
        "score": np.asarray(r.score, np.float64),
    }
    metric.update(found)
    metric.update(given)
    info = [("query", r.query), ("cf", r.cf), ("group", r.group)]
    if source is not None:
        info.append(("source", source))
    info.append(("target", target))
    info = [(name, np.asarray(a)) for name, a in info]
    ordered = [(k, metric[k]) for k, _, _ in metric_order(list(metric))]

    head = {"id": f"{folder.name}/rows", "n": rows}
    write_columns_js(folder / "rows.js", head, info + ordered)
    write_csv(folder / "rows.csv", [("row", np.arange(rows)), *info, *ordered])
    entry = {
        "label": label,
        "dir": f"data/{folder.name}",
        "rows": rows,
        "view": view.info(),
        "target": target_kind,
        "source": source is not None,
    }
    cols = dict(metric)
    if target_kind != "value":
        cols["_target"] = target
        cols["_source"] = source
    return entry, cols


def _distances(
    need: list[str], x: np.ndarray, x_cf: np.ndarray, out: dict[str, np.ndarray], start: int
) -> None:
    """Fills ``out[k][start:start + len(x)]`` for each distance ``k`` of ``need`` (NaN for rows
    holding NaN or inf, which :mod:`jaxcf.evaluation.metrics` refuses)."""
    finite = np.ones(len(x), bool)
    if np.issubdtype(x.dtype, np.floating) or np.issubdtype(x_cf.dtype, np.floating):
        finite = np.isfinite(x.reshape(len(x), -1)).all(1) & np.isfinite(
            x_cf.reshape(len(x), -1)
        ).all(1)
    for k in need:
        values = np.full(len(x), np.nan)
        if finite.any():
            values[finite] = _DISTANCES[k](x[finite], x_cf[finite])
        out[k][start : start + len(x)] = values


def _source_rows(source: Any, label: str, query: np.ndarray) -> np.ndarray | None:
    """Each row's source class: the given per-query classes at the row's ``query``."""
    if isinstance(source, Mapping):
        source = source.get(label)
    if source is None:
        return None
    s = np.asarray(source)
    if s.ndim != 1 or not (np.issubdtype(s.dtype, np.integer) or s.dtype == bool):
        raise ValueError(f"source must be [Q] int classes, got shape {s.shape}, dtype {s.dtype}")
    query = np.asarray(query)
    if query.min() < 0 or query.max() >= len(s):
        raise ValueError(
            f"source has {len(s)} entries, but {label!r} has rows of query {int(query.max())}: "
            "give one class per query, indexed by the records' query field"
        )
    return s[query].astype(np.int64)


def _seconds(timing: Mapping[str, Any], label: str, r: Results) -> float | None:
    value = timing.get(label)
    if value is None:
        value = r.timings.get("seconds")
    if isinstance(value, Mapping):
        per_cf = value.get("seconds_per_counterfactual")
        value = value.get("seconds", None if per_cf is None else per_cf * len(r))
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) and value >= 0 else None


def _classes(names: list[str] | None, per_method: list[dict[str, np.ndarray]]) -> list | None:
    """The class names, checked against every class a target or source holds."""
    highest = -1
    for cols in per_method:
        for key in ("_target", "_source"):
            a = cols.get(key)
            if a is not None and a.size:
                if a.min() < 0:
                    raise ValueError(f"negative class in {key[1:]}: {int(a.min())}")
                highest = max(highest, int(a.max()))
    if names is not None:
        if highest >= len(names):
            raise ValueError(f"class {highest} has no name: class_names has {len(names)}")
        return names
    return [str(c) for c in range(highest + 1)] if highest >= 0 else None


def _matrix(cols: Mapping[str, np.ndarray]) -> dict[str, Any] | None:
    if cols.get("_target") is None:
        return None
    return class_matrix(cols.get("_source"), cols["_target"], cols["success"], cols.get("l1"))
