"""The protocol's figures: counterfactual grids (images), series grids (series) or changes CSVs
(tabular), and each method's embedding plot against the queries."""

from __future__ import annotations

import numpy as np

from jaxcf import report
from jaxcf.report import embedding_plot, series_grid
from jaxcf.tabular import write_changes_csv


def write_figures(config, space, out, method_rows, extras, x, pred, query_feats, class_names, soft):
    """Writes the figures (tabular data: the changes CSVs) into ``out``; returns their file names.

    ``x [N, ...]`` are the queries, ``pred [N]`` their predicted classes and ``query_feats`` their
    MMD features; ``extras`` holds each method's evaluated rows
    (:func:`~explain.amortised.evaluation.evaluate_rows`); ``soft`` the soft-target section, whose
    figure is listed too.
    """
    written = []
    gen = method_rows["generator"]
    n_cfs = gen.num_cfs
    # The figures' queries: the first ones, which every method explained.
    n_show = min(config.grid_queries, len(x))
    if space.kind == "image":
        results = {}
        for k in range(min(n_cfs, 3)):
            sel = (gen.query < n_show) & (np.arange(len(gen.query)) % n_cfs == k)
            results[f"generator #{k + 1}" if n_cfs > 1 else "generator"] = gen.x_cf[sel]
        if "wachter" in method_rows:
            w = method_rows["wachter"]
            results["wachter"] = w.x_cf[w.query < n_show]
        path = out / "grid.png"
        report.counterfactual_grid(
            path,
            x[:n_show],
            results,
            gen.target[gen.query < n_show][::n_cfs],
            pred=pred[:n_show],
            n=n_show,
            title="Counterfactuals and differences (red: increased)",
        )
        written.append(path.name)
    elif space.kind == "series":
        for label in ("generator", "wachter", "cfproto"):
            if label not in method_rows:
                continue
            rows = method_rows[label]
            pick = np.flatnonzero(np.r_[True, np.diff(rows.query) != 0])  # first cf per query
            for c in range(len(class_names)):
                mine = pick[pred[rows.query[pick]] == c][: config.grid_queries]
                if not len(mine):
                    continue
                to = int(rows.target[mine[0]]) if len(class_names) == 2 else None
                name = f"series_{label}_{class_names[c]}" + (
                    f"_to_{class_names[to]}" if to is not None else ""
                )
                path = out / f"{_slug(name)}.png"
                series_grid(
                    path,
                    rows.x[mine],
                    extras[label]["x_eval"][mine],
                    pred=pred[rows.query[mine]],
                    target=rows.target[mine],
                    class_names=class_names,
                    n=len(mine),
                    title=f"{label}: predicted {class_names[c]}",
                )
                written.append(path.name)
    else:
        k = min(config.changes_queries, len(x))
        # Every method's rows but the generator's subsets (the same rows again).
        for label in [lb for lb in method_rows if not lb.startswith("generator (first")]:
            rows = method_rows[label]
            sel = rows.query < k
            ev = extras[label]
            path = out / f"changes_{_slug(label)}.csv"
            write_changes_csv(
                path,
                space.transform,
                rows.x[sel],
                ev["x_eval"][sel],
                rows.query[sel].tolist(),
                extra={
                    "target": [class_names[int(t)] for t in rows.target[sel]],
                    "valid": [bool(v) for v in ev["valid"][sel]],
                },
            )
            written.append(path.name)
    # Embeddings: originals (the queries) against each method's counterfactuals, by predicted
    # class, in the MMD feature space.
    for label in method_rows:
        if label.startswith("generator ("):
            continue
        path = out / f"embedding_{_slug(label)}.png"
        embedding_plot(
            path,
            query_feats,
            extras[label]["features"],
            pred,
            extras[label]["pred_cf"],
            class_names=class_names,
            title=f"{label}: queries (o) and counterfactuals (x), PCA of {space.kind} features",
        )
        written.append(path.name)
    if soft is not None:
        written.append(soft["figure"])
    return written


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name).strip("_")
