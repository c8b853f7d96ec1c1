"""The generator, trained on flips only, towards soft targets: its run on the first queries, how
close the classifier's probabilities land to the targets, and the figure of that."""

from __future__ import annotations

import jax
import numpy as np

from jaxcf.evaluation import metrics
from jaxcf.experiment import run_explainer, soft_targets
from jaxcf.report import target_scatter


def run_soft_targets(config, explainer, classifier, x, pred, flip, num_classes, out, workdir):
    """The generator towards soft targets on the first ``config.soft_queries`` of the queries
    ``x [N, ...]`` (``pred``, ``flip``: ``[N]`` predicted and flip classes): the run
    ``generator_soft`` in the run store, ``out/soft_targets.png``, and the report's
    ``soft_targets`` section (errors in probability units)."""
    k = min(config.soft_queries, len(x))
    t, p = soft_targets(pred[:k], flip[:k], num_classes, config.seed + 3)
    res = run_explainer(
        "generator_soft",
        explainer,
        x[:k],
        t,
        workdir,
        config=config.runner,
        num_cfs=1,
        seed=config.seed,
        progress=config.progress,
        meta={"method": "generator", "targets": "soft"},
    )
    probs = jax.nn.softmax(metrics.outputs(classifier, np.asarray(res.x_cf)), axis=-1)
    probs = np.asarray(probs, np.float64)
    rows = np.arange(k)
    achieved = probs[rows, flip[:k]]
    valid = metrics.validity(classifier, np.asarray(res.x_cf), t)
    err = np.abs(achieved - p)
    before = np.asarray(jax.nn.softmax(metrics.outputs(classifier, x[:k]), axis=-1), np.float64)[
        rows, flip[:k]
    ]
    path = out / "soft_targets.png"
    target_scatter(
        path,
        p,
        achieved,
        kind="soft",
        success=valid,
        title=f"Generator (trained on flips) towards soft targets, {k} queries",
    )
    r = float(np.corrcoef(p, achieved)[0, 1]) if achieved.std() > 0 else None
    return {
        "queries": k,
        "rule": "p ~ U(0, 1) on the flip class, 1 - p on the predicted class",
        "within_tolerance": float(valid.mean()),
        "tolerance": explainer.config.tolerance,
        "mae": float(err.mean()),
        "median_abs_error": float(np.median(err)),
        "pearson_r": r,
        "mae_before": float(np.abs(before - p).mean()),
        "figure": path.name,
    }
