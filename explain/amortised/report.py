"""The protocol's report in markdown: the main and per-class tables, the conventions of each
metric, and the paper's numbers (:data:`explain.amortised.published.PUBLISHED`) shown beside
ours."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from explain.amortised.evaluation import Space, finite_mean


def conventions(space: Space) -> dict[str, str]:
    """How each metric of the report is measured, by metric (the report's Conventions)."""
    out = {
        "validity": "argmax of the classifier on the counterfactual equals the target; "
        "'validity' on the row as used (tabular: after decode -> encode), 'validity_raw' on "
        "the method's own output",
        "mmd2": "unbiased MMD^2 (Gaussian kernel) between all of a method's counterfactuals "
        "and real training instances, in " + space.feature_space,
        "class_mmd2": "per class c: counterfactuals the classifier predicts as c against "
        "training instances labelled c (NaN/None with fewer than 2 on a side)",
        "diversity": "mean pairwise distance among a query's num_cfs counterfactuals "
        "(metrics.query_metrics), averaged over queries ('diversity_valid' in report.json: "
        "among its valid ones, over queries with at least two)",
        "seconds_per_cf": "steady state: the runner's chunk times without the first "
        "(compiling) chunk, per counterfactual, end to end (host steps, transfers, chunk "
        "files: on small models these dominate; benchmarks/amortised.py times the compute "
        "alone); DiCE: its per-query wall time / num_cfs",
    }
    if space.kind == "tabular":
        out["l1"] = (
            "sum over the numeric columns of |value_cf - value_query| / (training std of "
            "the column), on decoded rows, averaged over all counterfactuals"
        )
        out["l0"] = "features whose decoded value changed (categorical or numeric)"
        out["l1_scaled"] = (
            "the paper's L1: sum over the numeric columns of |value_cf - value_query| / "
            "(training range, max - min, of the column), on decoded rows (min-max units), "
            "averaged over all counterfactuals"
        )
        out["l0_categorical"] = (
            "the paper's L0: categorical features whose decoded value changed (numeric "
            "columns not counted)"
        )
        out["mmd2_paper"] = (
            "the paper's MMD^2 as we read it: as 'mmd2' (same rows, same space) with a kernel "
            "bandwidth 2.5 times as wide, the width at which DiCE scores the paper's DiCE row "
            "(explain/amortised/units.py); 'class_mmd2_paper' likewise per class"
        )
        out["violations"] = (
            "immutable or fixed columns changed plus increasing columns lowered, summed over "
            "counterfactuals (decoded rows); '\u2014' when the job has no constraints"
        )
        out["diversity"] += (
            "; distance = standardised numeric L1 + number of categorical features that differ"
        )
    else:
        out["l1"] = "mean |x_cf - x| per element, averaged over all counterfactuals"
        out["diversity"] += "; distance = mean |a - b| per element"
    return out


def _fmt(v: Any, fmt: str, scale: float = 1.0) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "\u2014"
    return format(v * scale, fmt)


def main_table(doc: Mapping[str, Any], space: Space) -> str:
    """The main table in markdown: one row per method, then the paper's row if it has one."""
    tabular = space.kind == "tabular"
    names = doc["class_names"]
    per_class = len(names) <= 3
    head = ["method", "queries", "cfs", "validity %"]
    if tabular:
        head += ["validity before projection %"]
    head += ["MMD\u00b2"]
    head += [f"class MMD\u00b2 {c}" for c in names] if per_class else ["class MMD\u00b2 (mean)"]
    head += ["L1"] + (["L0", "violations"] if tabular else [])
    head += ["diversity", "ms per cf", "generator speed-up"]
    lines = ["| " + " | ".join(head) + " |", "| :--- |" + " ---: |" * (len(head) - 1)]
    for label, m in doc["methods"].items():
        cells = [label, str(m["queries"]), str(m["counterfactuals"])]
        cells += [_fmt(m["validity"], ".1f", 100)]
        if tabular:
            cells += [_fmt(m["validity_raw"], ".1f", 100)]
        cells += [_fmt(m["mmd2"], ".4f")]
        if per_class:
            cells += [_fmt(v, ".4f") for v in m["class_mmd2"]]
        else:
            cells += [
                _fmt(finite_mean([np.nan if v is None else v for v in m["class_mmd2"]]), ".4f")
            ]
        cells += [_fmt(m["l1"], ".4f")]
        if tabular:
            violations = m["violations"]
            cells += [_fmt(m["l0"], ".2f"), "\u2014" if violations is None else str(violations)]
        cells += [
            _fmt(m["diversity"], ".3f"),
            _fmt(m["seconds_per_cf"], ".3g", 1e3),
            "1 (itself)"
            if m["method"] == "generator"
            else _fmt(
                m["generator_speedup"], ",.0f" if (m["generator_speedup"] or 0) >= 10 else ".2g"
            )
            + "x",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    pub = doc.get("published")
    # The paper's peers are printed here for series and images; tabular ones are in the paper's
    # units, which the table of paper_table holds.
    for name, p in _paper_rows(pub, peers=not tabular):
        cells = [f"paper ({name})", "\u2014", "\u2014", "\u2014"]
        if tabular:
            cells += ["\u2014"]
        cells += [_fmt(p.get("mmd2"), ".4f")]
        cls = p.get("class_mmd2") or [None] * len(names)
        cells += [_fmt(v, ".4f") for v in cls] if per_class else ["\u2014"]
        cells += [_fmt(p.get("l1"), ".4f")]
        if tabular:
            cells += [_fmt(p.get("l0"), ".2f"), "0"]
        cells += ["\u2014", "\u2014", "\u2014"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _paper_rows(pub: Mapping[str, Any] | None, *, peers: bool = True) -> list[tuple[str, Any]]:
    """The paper's rows as ``(name, numbers)``: its generator, then (``peers``) the same
    table's other methods."""
    if not pub:
        return []
    rows = [("generator", pub)]
    if peers:
        rows += list((pub.get("peers") or {}).items())
    return rows


def paper_table(doc: Mapping[str, Any]) -> str:
    """Tabular: the table in the paper's units and columns (MMD² and class MMD² in its feature
    space, L1 in min-max units, L0 over categorical features), ours then the paper's rows."""
    names = doc["class_names"]
    head = ["method", "queries", "cfs", "validity %", "MMD\u00b2"]
    head += [f"class MMD\u00b2 {c}" for c in names] + ["L1", "L0"]
    lines = ["| " + " | ".join(head) + " |", "| :--- |" + " ---: |" * (len(head) - 1)]
    for label, m in doc["methods"].items():
        cells = [label, str(m["queries"]), str(m["counterfactuals"])]
        cells += [_fmt(m["validity"], ".1f", 100), _fmt(m.get("mmd2_paper"), ".4f")]
        cells += [_fmt(v, ".4f") for v in m.get("class_mmd2_paper") or [None] * len(names)]
        cells += [_fmt(m.get("l1_scaled"), ".3f"), _fmt(m.get("l0_categorical"), ".2f")]
        lines.append("| " + " | ".join(cells) + " |")
    for name, p in _paper_rows(doc.get("published")):
        cells = [f"paper ({name})", "\u2014", "\u2014", "\u2014", _fmt(p.get("mmd2"), ".4f")]
        cells += [_fmt(v, ".4f") for v in p.get("class_mmd2") or [None] * len(names)]
        cells += [_fmt(p.get("l1"), ".3f"), _fmt(p.get("l0"), ".2f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _class_table(doc: Mapping[str, Any]) -> str:
    names = doc["class_names"]
    head = ["method", *(f"{c}" for c in names)]
    lines = ["| " + " | ".join(head) + " |", "| :--- |" + " ---: |" * len(names)]
    for label, m in doc["methods"].items():
        cells = [
            f"{_fmt(v, '.4f')} ({n})"
            for v, n in zip(m["class_mmd2"], m["class_counts"], strict=True)
        ]
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return "\n".join(lines) + "\n"


def report_markdown(doc: Mapping[str, Any], space: Space) -> str:
    """``report.md`` from the report's dict (what ``report.json`` holds)."""
    clf = doc["classifier"]
    gen = doc["generator"]
    bw = doc["bandwidth"]
    peers = ", ".join(f"{p} on the first {k}" for p, k in doc["peer_queries"].items())
    intro = (
        f"Data set **{doc['dataset']}**: {doc['queries']} test queries (a seeded draw), target "
        f"rule `{doc['target_rule']}`, {doc['num_cfs']} counterfactuals per query from the "
        f"generator"
        + (
            f"; peers: {peers} (Wachter and CFProto: one counterfactual per query, their "
            "searches are deterministic)"
            if peers
            else ""
        )
        + ". "
        f"Classifier: {(clf.get('model') or {}).get('kind')}, test accuracy "
        f"{_fmt(clf.get('test_accuracy'), '.4f')}. Generator trained "
        f"{gen.get('train_steps')} steps at batch {gen.get('batch_size')}"
        + (
            f" in {gen['train_seconds'] / 60:.1f} minutes"
            if isinstance(gen.get("train_seconds"), int | float)
            else ""
        )
        + (
            f" (last validation: validity {_fmt(gen['last_validation'].get('val_validity'), '.3f')}"
            f", L1 {_fmt(gen['last_validation'].get('val_l1'), '.4f')})"
            if gen.get("last_validation")
            else ""
        )
        + ". "
        + "".join(
            f"Row 'generator ({name})': another generator of the same classifier, trained "
            f"{extra.get('train_steps')} steps at batch {extra.get('batch_size')}. "
            for name, extra in (doc.get("extra_generators") or {}).items()
        )
        + "\n\n"
        f"One kernel bandwidth for every method: s = {bw['value']:.4g}, the median heuristic on "
        f"{bw['reference_instances']} real training instances in {bw['space']}. Rows "
        "'generator (first k)' are the generator on the peers' queries, for a like-for-like "
        "comparison.\n"
    )
    for note in doc.get("left_out", {}).values():
        intro += f"\nNote: {note}.\n"
    conv = "\n".join(f"* **{k}**: {v}" for k, v in doc["conventions"].items())
    text = f"# Amortised counterfactual generator on {doc['dataset']}\n\n{intro}\n"
    text += main_table(doc, space)
    pub = doc.get("published")
    if pub:
        table = f" ({pub['table']})" if pub.get("table") else ""
        text += (
            f"\n'paper (generator)': Van Looveren et al. (2021){table}, their conditional "
            "generator's own numbers (other classifier, other training budget)"
            + (
                "; 'paper (cfproto)': the same table's CFProto row (their CFProto set-up)"
                if "cfproto" in (pub.get("peers") or {}) and space.kind != "tabular"
                else ""
            )
            + ".\n"
        )
    real = doc["real_queries"]
    text += (
        f"\nFor scale: the {real['queries']} real test queries themselves (unchanged, by "
        f"predicted class) give MMD\u00b2 {_fmt(real['mmd2'], '.4f')}, class MMD\u00b2 "
        + " / ".join(_fmt(v, ".4f") for v in real["class_mmd2"])
        + ".\n"
    )
    text += "\nClass MMD\u00b2 per predicted class (counterfactuals predicted as the class):\n\n"
    text += _class_table(doc)
    if space.kind == "tabular":
        bw = doc.get("bandwidth_paper") or {}
        text += (
            "\n## In the paper's units\n\nThe same counterfactuals measured as the paper "
            "measures Adult rows: L1 sums the numeric changes in min-max units (each column "
            "divided by its training range), L0 counts the changed categorical features only, "
            f"and MMD\u00b2 uses a kernel {bw.get('scale')} times as wide as above (s = "
            f"{_fmt(bw.get('value'), '.4g')}), the width at which DiCE scores the paper's DiCE "
            "row. The paper's rows are its own numbers (its classifier, its training).\n\n"
        )
        text += paper_table(doc)
        if real.get("mmd2_paper") is not None:
            text += (
                f"\nFor scale, in these units the real test queries give MMD\u00b2 "
                f"{_fmt(real['mmd2_paper'], '.4f')}, class MMD\u00b2 "
                + " / ".join(_fmt(v, ".4f") for v in real["class_mmd2_paper"])
                + ".\n"
            )
    soft = doc.get("soft_targets")
    if soft:
        text += (
            f"\n## Soft targets\n\nThe same generator (trained on flips only) on the first "
            f"{soft['queries']} queries with soft targets ({soft['rule']}): the classifier's "
            f"probability of the flip class lands within {soft['mae']:.3f} of p on average "
            f"(median {soft['median_abs_error']:.3f}; Pearson r "
            f"{_fmt(soft['pearson_r'], '.3f')}; before explaining, the mean gap was "
            f"{soft['mae_before']:.3f}); {100 * soft['within_tolerance']:.1f}% are within the "
            f"total-variation tolerance {soft['tolerance']}.\n\n![soft targets]"
            f"({soft['figure']})\n"
        )
    text += f"\n## Conventions\n\n{conv}\n\n## Figures\n\n"
    for f in doc["figures"]:
        if soft and f == soft["figure"]:
            continue  # shown with its section
        text += f"![{f}]({f})\n\n" if f.endswith(".png") else f"* [{f}]({f})\n\n"
    return text
