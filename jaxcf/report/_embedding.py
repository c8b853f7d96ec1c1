"""Where counterfactuals land: originals and counterfactuals in two dimensions by predicted class
(Van Looveren et al. 2021, Figures 4 and 7), and the target asked for against what the model
gives."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from jaxcf.report._common import (
    PathLike,
    as_classes,
    as_rows,
    as_vector,
    new_figure,
    palette,
    save_figure_atomic,
)


def pca_2d(fit: Any, *others: Any) -> tuple[list[np.ndarray], np.ndarray]:
    """A 2-D PCA fitted on ``fit`` and applied to it and to ``others``.

    The components are the top two right singular vectors of ``fit`` centred on its mean
    (``numpy.linalg.svd``), each signed so that its largest-magnitude loading is positive: the
    picture does not flip between LAPACK builds.

    Args:
      fit: ``[N, D]`` the points that define the axes (any ``[N, ...]``, flattened), ``N >= 2``.
      *others: ``[M, D]`` further points projected on the same axes.

    Returns:
      ``([fit_2d [N, 2], *others_2d [M, 2]], ratio [2])``: coordinates (input units, centred on
      ``fit``'s mean) and the fraction of ``fit``'s variance each axis explains.
    """
    x = as_rows(fit, "fit")
    if len(x) < 2:
        raise ValueError("a PCA needs at least 2 points to fit")
    rest = [as_rows(o, f"others[{i}]") for i, o in enumerate(others)]
    for i, o in enumerate(rest):
        if o.shape[1] != x.shape[1]:
            raise ValueError(f"others[{i}] has {o.shape[1]} features, fit has {x.shape[1]}")
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    comps = np.zeros((2, x.shape[1]))
    k = min(2, vt.shape[0])
    comps[:k] = vt[:k]
    sign = np.sign(comps[np.arange(2), np.argmax(np.abs(comps), axis=1)])
    comps *= np.where(sign == 0, 1.0, sign)[:, None]
    var = np.square(s)
    ratio = np.zeros(2)
    if var.sum() > 0:
        ratio[:k] = var[:k] / var.sum()
    return [(p - mean) @ comps.T for p in (x, *rest)], ratio


def _umap_2d(fit: np.ndarray, other: np.ndarray, seed: int) -> list[np.ndarray]:
    try:
        import umap  # optional; not a dependency of jaxcf
    except ImportError:
        raise ImportError(
            "method='umap' needs the umap-learn package (pip install umap-learn); "
            "method='pca' needs nothing"
        ) from None
    reducer = umap.UMAP(n_components=2, random_state=seed).fit(fit)
    return [reducer.embedding_, reducer.transform(other)]


def embedding_plot(
    path: PathLike,
    originals: Any,
    counterfactuals: Any,
    pred_orig: Any,
    pred_cf: Any,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
    *,
    query: Any = None,
    method: str = "pca",
    seed: int = 0,
    dpi: int = 100,
) -> Figure:
    """Originals (circles) and counterfactuals (crosses) in 2-D, coloured by predicted class.

    With ``method="pca"`` (default) the axes are a PCA fitted on the originals only
    (:func:`pca_2d`), so the counterfactuals are placed in the originals' frame and a
    counterfactual far from every original stays visibly far. ``method="umap"`` uses umap-learn
    when it is installed (fitted on the originals, counterfactuals transformed; ``seed`` is its
    ``random_state``); jaxcf does not depend on it.

    Args:
      path: the PNG to write (atomically).
      originals: ``[N, D]`` real instances or their encodings (any ``[N, ...]``, flattened).
      counterfactuals: ``[M, D]`` counterfactuals in the same space.
      pred_orig: ``[N]`` int, the classifier's prediction on each original.
      pred_cf: ``[M]`` int, its prediction on each counterfactual.
      class_names: one name per class (their number is the number of classes); None names
        classes by index, ``max(pred) + 1`` of them.
      title: optional axes title.
      query: optional ``[M]`` int, the original each counterfactual explains (an index into
        ``originals``); draws a faint line from it to its counterfactual.
      method: ``"pca"`` or ``"umap"``.
      seed: umap's ``random_state`` (PCA is deterministic).
      dpi: resolution of the PNG.

    Returns:
      The figure (already saved).
    """
    x = as_rows(originals, "originals")
    x_cf = as_rows(counterfactuals, "counterfactuals")
    if x_cf.shape[1] != x.shape[1]:
        raise ValueError(
            f"counterfactuals have {x_cf.shape[1]} features per row, originals {x.shape[1]}"
        )
    if class_names is None:
        top = max(int(np.max(np.asarray(pred_orig))), int(np.max(np.asarray(pred_cf))))
        class_names = [str(c) for c in range(top + 1)]
    names = [str(c) for c in class_names]
    c = len(names)
    if c < 1:
        raise ValueError("class_names is empty")
    pred_orig = as_classes(pred_orig, len(x), c, "pred_orig")
    pred_cf = as_classes(pred_cf, len(x_cf), c, "pred_cf")
    if query is not None:
        query = as_classes(query, len(x_cf), len(x), "query")
    if method == "pca":
        (p, p_cf), ratio = pca_2d(x, x_cf)
        labels = [f"PC{i + 1} ({100 * r:.1f}% of variance)" for i, r in enumerate(ratio)]
    elif method == "umap":
        p, p_cf = _umap_2d(x, x_cf, seed)
        labels = ["UMAP 1", "UMAP 2"]
    else:
        raise ValueError(f"method must be 'pca' or 'umap', got {method!r}")

    colours = palette(c)
    fig = new_figure((6.4, 5.2), dpi)
    ax = fig.subplots()
    if query is not None:
        segments = np.stack([p[query], p_cf], axis=1)  # [M, 2 ends, 2 coords]
        for seg in segments:
            ax.plot(seg[:, 0], seg[:, 1], color="0.6", lw=0.4, alpha=0.4, zorder=1)
    # Markers stay small and translucent: thousands of points overlap.
    size = float(np.clip(3000.0 / math.sqrt(len(x) + len(x_cf)), 4.0, 40.0))
    for k in range(c):
        mine = pred_orig == k
        if mine.any():
            ax.scatter(*p[mine].T, s=size, marker="o", color=colours[k], alpha=0.35, lw=0, zorder=2)
        mine = pred_cf == k
        if mine.any():
            ax.scatter(*p_cf[mine].T, s=size * 1.3, marker="x", color=colours[k], lw=1.0, zorder=3)
    present = sorted(set(pred_orig.tolist()) | set(pred_cf.tolist()))
    handles = [Line2D([], [], ls="", marker="s", color=colours[k], label=names[k]) for k in present]
    handles += [
        Line2D([], [], ls="", marker="o", color="0.3", alpha=0.5, label="original"),
        Line2D([], [], ls="", marker="x", color="0.3", label="counterfactual"),
    ]
    ax.legend(
        handles=handles,
        title="predicted class",
        fontsize=7,
        title_fontsize=7,
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
    )
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(title or "Originals and counterfactuals by predicted class", fontsize=10)
    ax.grid(alpha=0.2)
    save_figure_atomic(fig, path, dpi=dpi)
    return fig


def target_scatter(
    path: PathLike,
    target: Any,
    achieved: Any,
    kind: str = "soft",
    *,
    success: Any = None,
    tolerance: float | None = None,
    title: str | None = None,
    dpi: int = 100,
) -> Figure:
    """Target against achieved prediction per counterfactual, with the identity line.

    For ``kind="soft"``, each point is the probability the target distribution gives its
    target class (its argmax) against the probability the model gives that class on the
    counterfactual; both axes span [0, 1]. For ``kind="regression"``, the target value against
    the model's output. The corner shows the mean absolute error and Pearson's r.

    Args:
      path: the PNG to write (atomically).
      target: soft: ``[N, C]`` target distributions, or ``[N]`` target-class probabilities
        already taken; regression: ``[N]`` target values.
      achieved: soft: ``[N, C]`` the model's probabilities (softmax, not logits) on the
        counterfactuals, or ``[N]`` its probability of each target class; regression: ``[N]``
        (or ``[N, 1]``) outputs.
      kind: ``"soft"`` or ``"regression"``.
      success: optional ``[N]`` bool: successes drawn as dots, failures as crosses.
      tolerance: regression only: draws the band ``|achieved - target| <= tolerance``, the
        success criterion of :mod:`jaxcf.core.targets`. (A soft target's criterion, total variation,
        is not a band on one class's probability.)
      title: optional axes title.
      dpi: resolution of the PNG.

    Returns:
      The figure (already saved).
    """
    if kind not in ("soft", "regression"):
        raise ValueError(f"kind must be 'soft' or 'regression', got {kind!r}")
    t = np.asarray(target, np.float64)
    a = np.asarray(achieved, np.float64)
    if kind == "soft":
        if t.ndim == 2:
            if a.shape != t.shape:
                raise ValueError(
                    f"achieved {a.shape} must match the target distributions {t.shape}"
                )
            cls = np.argmax(t, axis=1)
            rows = np.arange(len(t))
            t, a = t[rows, cls], a[rows, cls]
    elif a.ndim == 2 and a.shape[1] == 1:  # a regression model returns [N, 1]
        a = a[:, 0]
    if t.ndim != 1 or t.size == 0:
        raise ValueError(
            f"target must be a non-empty [N] array (or [N, C] for soft), got {t.shape}"
        )
    a = as_vector(a, len(t), "achieved")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(a))):
        raise ValueError("target and achieved must be finite")
    if kind == "soft" and (t.min() < 0 or t.max() > 1 or a.min() < 0 or a.max() > 1):
        raise ValueError("soft targets compare probabilities: values must lie in [0, 1]")
    ok = None if success is None else as_vector(success, len(t), "success").astype(bool)
    if tolerance is not None:
        if kind != "regression":
            raise ValueError("tolerance bands are drawn for regression targets only")
        if not (math.isfinite(float(tolerance)) and tolerance >= 0):
            raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")

    fig = new_figure((4.8, 4.6), dpi)
    ax = fig.subplots()
    if kind == "soft":
        lo, hi = 0.0, 1.0
    else:
        lo, hi = float(min(t.min(), a.min())), float(max(t.max(), a.max()))
        pad = 0.05 * (hi - lo) if hi > lo else 0.5
        lo, hi = lo - pad, hi + pad
    line = np.array([lo, hi])
    ax.plot(line, line, color="k", lw=0.8, ls="--", label="achieved = target", zorder=1)
    if tolerance is not None:
        ax.fill_between(
            line,
            line - tolerance,
            line + tolerance,
            color="tab:green",
            alpha=0.12,
            lw=0,
            label=f"|error| \u2264 {tolerance:g}",
        )
    size = float(np.clip(600.0 / math.sqrt(len(t)), 3.0, 25.0))
    if ok is None:
        ax.scatter(t, a, s=size, color="tab:blue", alpha=0.6, lw=0, zorder=2)
    else:
        ax.scatter(t[ok], a[ok], s=size, color="tab:blue", alpha=0.6, lw=0, label="success")
        ax.scatter(
            t[~ok], a[~ok], s=size * 1.3, marker="x", color="tab:red", lw=0.8, label="failure"
        )
    mae = float(np.mean(np.abs(a - t)))
    r = float(np.corrcoef(t, a)[0, 1]) if len(t) > 1 and t.std() > 0 and a.std() > 0 else math.nan
    ax.text(
        0.03,
        0.97,
        f"n = {len(t)}\nMAE = {mae:.3g}\nr = {r:.3f}" if math.isfinite(r) else f"MAE = {mae:.3g}",
        transform=ax.transAxes,
        va="top",
        fontsize=8,
    )
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    if kind == "soft":
        ax.set_xlabel("target probability of the target class")
        ax.set_ylabel("model's probability of that class")
    else:
        ax.set_xlabel("target value")
        ax.set_ylabel("model output on the counterfactual")
    ax.set_title(title or ("Soft targets" if kind == "soft" else "Regression targets"), fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.2)
    save_figure_atomic(fig, path, dpi=dpi)
    return fig
