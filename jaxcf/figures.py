"""Figures for counterfactual generators: embeddings, target against achieved, time series.

* :func:`embedding_plot`: originals and counterfactuals in two dimensions, coloured by predicted
  class (Van Looveren et al. 2021, Figures 4 and 7): do counterfactuals land among the real
  instances of the class they are predicted as?
* :func:`target_scatter`: the target each counterfactual was asked for against what the model
  gives it (soft targets: the target class's probability; regression: the value).
* :func:`series_grid`: original and counterfactual series overlaid, one panel per query.
* :func:`attribution_grid`: images beside attribution maps (saliency, Grad-CAM, counterfactual
  differences), one row per query.
* :func:`attribute_change_figure` and :func:`attribute_ranking_plot`: which attributes an
  attribute-informed counterfactual (AIP) changed, per query and over many queries.
* :func:`method_scatter`: one labelled point per method on two summary metrics (a trade-off,
  such as latent perturbation against image change), some joined as a series.

Image grids are :func:`jaxcf.report.counterfactual_grid`. As in :mod:`jaxcf.report`, figures
are drawn on a bare :class:`matplotlib.figure.Figure` with an Agg canvas (importing this module
changes neither the global backend nor pyplot's state), written atomically with
:func:`jaxcf.report.save_figure_atomic`, and returned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from jaxcf.report import PathLike, _images, _show, save_figure_atomic

_SCATTER_MARKERS = "osD^vP*"  # method_scatter: 7 shapes against 10 colours, 70 distinct points

# Bar colours by the sign of an attribute's mean change (attribute_ranking_plot).
_SIGN_COLOURS = {1.0: "tab:purple", -1.0: "tab:orange", 0.0: "tab:gray"}

__all__ = [
    "attribute_change_figure",
    "attribute_ranking_plot",
    "attribution_grid",
    "embedding_plot",
    "method_scatter",
    "pca_2d",
    "series_grid",
    "target_scatter",
]


def _rows(a: Any, name: str) -> np.ndarray:
    """``[N, ...]`` finite numbers -> ``[N, D]`` float64."""
    a = np.asarray(a)
    if a.ndim < 2:
        raise ValueError(f"{name} must be [N, D] (or [N, ...]), got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch")
    if not np.issubdtype(a.dtype, np.number) and a.dtype != bool:
        raise TypeError(f"{name} must be numeric, got dtype {a.dtype}")
    a = a.reshape(a.shape[0], -1).astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _vector(a: Any, n: int, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
    return a


def _classes(a: Any, n: int, num_classes: int, name: str) -> np.ndarray:
    a = _vector(a, n, name)
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must hold integer classes, got dtype {a.dtype}")
    if a.min() < 0 or a.max() >= num_classes:
        raise ValueError(f"{name} has classes outside [0, {num_classes})")
    return a


def _row_labels(pred: Any, target: Any, titles: Any, b: int) -> tuple:
    """Checked per-row ``pred`` ``[b]``, ``target`` ``[b]`` (one int broadcast) and ``titles``
    (``b`` strings); each may be None."""
    if pred is not None:
        pred = _vector(pred, b, "pred")
    if target is not None:
        target = np.asarray(target)
        target = np.full((b,), target.item()) if target.ndim == 0 else _vector(target, b, "target")
    if titles is not None:
        titles = [str(t) for t in titles]
        if len(titles) != b:
            raise ValueError(f"titles must have {b} entries (one per query), got {len(titles)}")
    return pred, target, titles


def _row_label(i: int, pred: Any, target: Any, titles: Any, class_names: Any) -> str:
    """Row ``i``'s title: its given title, else ``"pred a -> b"`` from what is known (class
    names for integer classes where given, ``:g`` for regression values), else ``"query i"``."""

    def name(v: Any) -> str:
        if class_names is not None and np.issubdtype(np.asarray(v).dtype, np.integer):
            return str(class_names[int(v)])
        return f"{v:g}" if isinstance(v, float | np.floating) else str(v)

    if titles is not None:
        return titles[i]
    if pred is not None and target is not None:
        return f"pred {name(pred[i])} \u2192 {name(target[i])}"
    if target is not None:
        return f"target {name(target[i])}"
    if pred is not None:
        return f"pred {name(pred[i])}"
    return f"query {i}"


def _new_figure(size: tuple[float, float], dpi: int) -> Figure:
    fig = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(fig)
    fig.set_layout_engine("constrained")
    return fig


# --------------------------------------------------------------------------------------------
# Embedding


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
    x = _rows(fit, "fit")
    if len(x) < 2:
        raise ValueError("a PCA needs at least 2 points to fit")
    rest = [_rows(o, f"others[{i}]") for i, o in enumerate(others)]
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


def _palette(num_classes: int) -> list:
    # Qualitative palettes keep neighbouring classes distinguishable; beyond 20, a continuous one.
    name = "tab10" if num_classes <= 10 else "tab20" if num_classes <= 20 else "viridis"
    cmap = matplotlib.colormaps[name]
    if name == "viridis":
        return [cmap(i / max(1, num_classes - 1)) for i in range(num_classes)]
    return [cmap(i) for i in range(num_classes)]


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
    x = _rows(originals, "originals")
    x_cf = _rows(counterfactuals, "counterfactuals")
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
    pred_orig = _classes(pred_orig, len(x), c, "pred_orig")
    pred_cf = _classes(pred_cf, len(x_cf), c, "pred_cf")
    if query is not None:
        query = _classes(query, len(x_cf), len(x), "query")
    if method == "pca":
        (p, p_cf), ratio = pca_2d(x, x_cf)
        labels = [f"PC{i + 1} ({100 * r:.1f}% of variance)" for i, r in enumerate(ratio)]
    elif method == "umap":
        p, p_cf = _umap_2d(x, x_cf, seed)
        labels = ["UMAP 1", "UMAP 2"]
    else:
        raise ValueError(f"method must be 'pca' or 'umap', got {method!r}")

    colours = _palette(c)
    fig = _new_figure((6.4, 5.2), dpi)
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


# --------------------------------------------------------------------------------------------
# Target against achieved


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
        success criterion of :mod:`jaxcf.targets`. (A soft target's criterion, total variation,
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
    a = _vector(a, len(t), "achieved")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(a))):
        raise ValueError("target and achieved must be finite")
    if kind == "soft" and (t.min() < 0 or t.max() > 1 or a.min() < 0 or a.max() > 1):
        raise ValueError("soft targets compare probabilities: values must lie in [0, 1]")
    ok = None if success is None else _vector(success, len(t), "success").astype(bool)
    if tolerance is not None:
        if kind != "regression":
            raise ValueError("tolerance bands are drawn for regression targets only")
        if not (math.isfinite(float(tolerance)) and tolerance >= 0):
            raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")

    fig = _new_figure((4.8, 4.6), dpi)
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


# --------------------------------------------------------------------------------------------
# Time series


def _series(a: Any, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2:  # [N, T]: one channel
        a = a[..., None]
    if a.ndim != 3:
        raise ValueError(f"{name} must be [N, T, C] (or [N, T]), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} has no queries or no time steps: shape {a.shape}")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, expected {shape} like x")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def series_grid(
    path: PathLike,
    x: Any,
    x_cf: Any,
    *,
    pred: Any = None,
    target: Any = None,
    class_names: Sequence[str] | None = None,
    titles: Sequence[str] | None = None,
    channel_names: Sequence[str] | None = None,
    n: int = 8,
    cols: int = 4,
    title: str | None = None,
    dpi: int = 100,
) -> Figure:
    """Original and counterfactual series overlaid, one panel per query (e.g. ECG beats).

    The original is solid, the counterfactual dashed; one channel is drawn blue and red, several
    take one colour per channel (both lines) and a legend entry each. Panels are
    titled ``"pred -> target"`` (with class names when given) from ``pred`` and ``target``,
    or with ``titles``.

    Args:
      path: the PNG to write (atomically).
      x: ``[N, T, C]`` original series (``[N, T]`` for one channel).
      x_cf: counterfactuals, same shape.
      pred: optional ``[N]`` int, the classifier's prediction on each original.
      target: optional ``[N]`` int target classes (or any ``[N]`` values, shown as they are).
      class_names: optional names for the int classes in ``pred`` and ``target``.
      titles: optional ``[N]`` panel titles; replace the ones built from ``pred`` and ``target``.
      channel_names: optional ``C`` names for the legend.
      n: number of queries shown (the first ``n``).
      cols: panels per row.
      title: optional figure title.
      dpi: resolution of the PNG.

    Returns:
      The figure (already saved).
    """
    x = _series(x, "x")
    x_cf = _series(x_cf, "x_cf", x.shape)
    b, steps, channels = x.shape
    if int(n) < 1 or int(cols) < 1:
        raise ValueError(f"n and cols must be >= 1, got n={n}, cols={cols}")
    pred, target, titles = _row_labels(pred, target, titles, b)
    if channel_names is not None and len(channel_names) != channels:
        raise ValueError(f"channel_names must have {channels} entries, got {len(channel_names)}")

    shown = min(int(n), b)
    ncols = min(int(cols), shown)
    nrows = math.ceil(shown / ncols)
    fig = _new_figure((2.8 * ncols + 0.4, 2.0 * nrows + (0.6 if title else 0.3)), dpi)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    colours = _palette(channels)
    # One channel: colour tells original from counterfactual; several: colour is the channel.
    orig_colours = colours if channels > 1 else ["tab:blue"]
    cf_colours = colours if channels > 1 else ["tab:red"]
    neutral = "0.2" if channels > 1 else None
    t_axis = np.arange(steps)
    for i in range(nrows * ncols):
        ax = axes.flat[i]
        if i >= shown:
            ax.set_axis_off()
            continue
        for ch in range(channels):
            ax.plot(t_axis, x[i, :, ch], color=orig_colours[ch], lw=1.0)
            ax.plot(t_axis, x_cf[i, :, ch], color=cf_colours[ch], lw=1.0, ls="--")
        label = _row_label(i, pred, target, titles, class_names)
        ax.set_title(label, fontsize=8)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.2)
        if i + ncols >= shown:  # the lowest panel of its column
            ax.set_xlabel("time step", fontsize=7)
    handles = [
        Line2D([], [], color=neutral or orig_colours[0], lw=1.0, label="original"),
        Line2D([], [], color=neutral or cf_colours[0], lw=1.0, ls="--", label="counterfactual"),
    ]
    if channels > 1:
        cnames = channel_names or [f"channel {ch}" for ch in range(channels)]
        handles += [
            Line2D([], [], color=colours[ch], lw=2, label=str(cnames[ch])) for ch in range(channels)
        ]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure_atomic(fig, path, dpi=dpi)
    return fig


# --------------------------------------------------------------------------------------------
# Attribution maps

SEQUENTIAL_CMAP = "inferno"  # non-negative maps: black (0) to yellow (largest)
DIVERGING_CMAP = "RdBu_r"  # signed maps, centred at 0: red > 0 (increase), blue < 0 (decrease)


def _attribution_map(a: Any, name: str, images_shape: tuple[int, ...]) -> np.ndarray:
    """``[B, H, W]`` (or ``[B, H, W, C]``, averaged over channels) finite floats."""
    a = np.asarray(a)
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise TypeError(f"maps[{name!r}] must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if a.ndim == 4:
        a = a.mean(axis=-1)
    if a.ndim != 3:
        raise ValueError(f"maps[{name!r}] must be [B, H, W] (or [B, H, W, C]), got {a.shape}")
    if a.shape != images_shape[:3]:
        raise ValueError(
            f"maps[{name!r}] has shape {a.shape}, expected {images_shape[:3]} like images"
        )
    if not np.all(np.isfinite(a)):
        raise ValueError(f"maps[{name!r}] contains NaN or inf")
    return a


def attribution_grid(
    path: PathLike,
    images: Any,
    maps: Mapping[str, Any],
    *,
    pred: Any = None,
    target: Any = None,
    class_names: Sequence[str] | None = None,
    titles: Sequence[str] | None = None,
    signed: Mapping[str, bool] | None = None,
    limits: Mapping[str, float] | None = None,
    overlay: bool = False,
    n: int = 8,
    title: str | None = None,
    dpi: int = 100,
) -> Figure:
    """Images and their attribution maps, one row per query and one column per map.

    The first column shows the image, titled ``"pred -> target"`` (with class names when given)
    from ``pred`` and ``target``, or with ``titles``. Then each map of ``maps`` in its order
    (e.g. ``"saliency"``, ``"Grad-CAM"``, ``"counterfactual difference"``):

    * a *signed* map (any negative value, or ``signed[name]`` True) in a diverging colormap
      centred at 0, red where the value is positive (e.g. the counterfactual increases the
      intensity), blue where negative (decreases), white at 0;
    * a non-negative map in a sequential colormap from black (0) to yellow.

    Colour limits: by default each cell is scaled to its own largest absolute value (the usual
    display of attributions, whose magnitudes differ between queries), and the column's
    colorbar reads as a fraction of it; ``limits[name]`` fixes that column's limits to
    ``[-L, L]`` (signed) or ``[0, L]`` in the map's own units, shared by every query (e.g.
    ``1.0`` for differences of images in [0, 1]).

    Args:
      path: the PNG to write (atomically).
      images: ``[B, H, W, C]`` images in [0, 1], ``C`` 1 or 3 (``[B, H, W]``: grayscale).
      maps: name -> ``[B, H, W]`` map (``[B, H, W, C]``: averaged over channels, as for
        ``x_cf - x``), e.g. the output of :func:`jaxcf.attribution.saliency`.
      pred: optional ``[B]`` int, the classifier's prediction on each image.
      target: optional ``[B]`` int (or one int), the class each map explains.
      class_names: optional names for the int classes in ``pred`` and ``target``.
      titles: optional ``[B]`` row titles; replace the ones built from ``pred`` and ``target``.
      signed: optional name -> bool, overriding the detection of signed maps (a map declared
        non-negative must have no negative value).
      limits: optional name -> ``L > 0``, fixed colour limits for that column (see above).
      overlay: draw each map translucent over its image (grayscale) instead of alone.
      n: number of queries shown (the first ``n``).
      title: optional figure title.
      dpi: resolution of the PNG.

    Returns:
      The figure (already saved).
    """
    images = np.asarray(images)
    if images.ndim == 3:  # [B, H, W] grayscale
        images = images[..., None]
    images = _images(images, "images")
    b = images.shape[0]
    if not maps:
        raise ValueError("maps is empty: give at least one attribution map")
    names = [str(m) for m in maps]
    data = {str(m): _attribution_map(v, str(m), images.shape) for m, v in maps.items()}
    for extra, what in ((signed, "signed"), (limits, "limits")):
        unknown = sorted(set(map(str, extra or {})) - set(names))
        if unknown:
            raise ValueError(f"{what} names maps that are not in maps: {unknown}")
    is_signed = {}
    for m in names:
        negative = bool(np.any(data[m] < 0))
        declared = (signed or {}).get(m)
        if declared is False and negative:
            raise ValueError(f"maps[{m!r}] is declared non-negative but has negative values")
        is_signed[m] = negative if declared is None else bool(declared)
    for m, lim in (limits or {}).items():
        if not (isinstance(lim, int | float) and math.isfinite(lim) and lim > 0):
            raise ValueError(f"limits[{m!r}] must be a finite number > 0, got {lim!r}")
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    pred, target, titles = _row_labels(pred, target, titles, b)

    rows = min(int(n), b)
    cols = 1 + len(names)
    fig = _new_figure((1.35 * cols + 0.4, 1.4 * rows + 0.9 + (0.3 if title else 0.0)), dpi)
    axes = fig.subplots(rows, cols, squeeze=False)
    shown = {}  # name -> the last image drawn in its column (for the colorbar)
    for r in range(rows):
        label = _row_label(r, pred, target, titles, class_names)
        _show(axes[r, 0], images[r])
        axes[r, 0].set_title(("input\n" if r == 0 else "") + label, fontsize=7)
        for j, m in enumerate(names):
            ax = axes[r, 1 + j]
            cell = data[m][r]
            if limits and m in limits:
                top = float(limits[m])
            else:  # scaled to the cell's own largest |value| (1 for an all-zero map)
                peak = float(np.max(np.abs(cell)))
                top = 1.0
                cell = cell / peak if peak > 0 else cell
            lo = -top if is_signed[m] else 0.0
            cmap = DIVERGING_CMAP if is_signed[m] else SEQUENTIAL_CMAP
            if overlay:
                gray = images[r].mean(axis=-1)
                ax.imshow(gray, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            shown[m] = ax.imshow(
                cell,
                cmap=cmap,
                vmin=lo,
                vmax=top,
                alpha=0.6 if overlay else None,
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(m, fontsize=7)
    for j, m in enumerate(names):
        cbar = fig.colorbar(shown[m], ax=axes[:, 1 + j], location="bottom", shrink=0.9, aspect=12)
        if limits and m in limits:
            unit = "value"
        else:
            unit = "\u00f7 |max| per query"
        if is_signed[m]:
            unit += "\n(red +, blue \u2212)"
        cbar.set_label(unit, fontsize=6)
        cbar.ax.tick_params(labelsize=5)
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure_atomic(fig, path, dpi=dpi)
    return fig


# --------------------------------------------------------------------------------------------
# Attributes


def _names(names: Sequence[str], width: int) -> tuple[str, ...]:
    names = tuple(str(n) for n in names)
    if len(names) != width:
        raise ValueError(f"{len(names)} attribute names for {width} attributes")
    return names


def attribute_change_figure(
    path: PathLike,
    x: Any,
    x_cf: Any,
    delta: Any,
    names: Sequence[str],
    *,
    top: int = 8,
    title: str | None = None,
    dpi: int = 100,
) -> Figure:
    """One row per query: the query, its counterfactual, and a bar chart of the ``top``
    attributes ranked by ``|a* - a0|`` (the AIP paper's per-query attribute analysis), bars
    signed: red where the attribute grew, blue where it shrank.

    Args:
      path: the PNG to write (atomically).
      x, x_cf: ``[B, H, W, C]`` queries and counterfactuals in [0, 1].
      delta: ``[B, t]`` attribute changes ``a* - a0``.
      names: the ``t`` attribute names.
      top: attributes shown per query (the largest changes).
    """
    x = _images(x, "x")
    x_cf = _images(x_cf, "x_cf", x.shape)
    delta = np.asarray(delta, np.float64)
    b = x.shape[0]
    if delta.ndim != 2 or delta.shape[0] != b:
        raise ValueError(f"delta must be [{b}, t], got shape {delta.shape}")
    names = _names(names, delta.shape[1])
    k = max(1, min(int(top), delta.shape[1]))
    lim = max(float(np.abs(delta).max()), 1e-6) * 1.1
    fig = _new_figure((7.0, 1.9 * b + (0.4 if title else 0.1)), dpi)
    axes = fig.subplots(b, 3, squeeze=False, width_ratios=[1, 1, 2.6])
    for r in range(b):
        _show(axes[r, 0], x[r])
        _show(axes[r, 1], x_cf[r])
        if r == 0:
            axes[r, 0].set_title("query", fontsize=8)
            axes[r, 1].set_title("counterfactual", fontsize=8)
        order = np.argsort(-np.abs(delta[r]), kind="stable")[:k][::-1]  # largest on top
        values = delta[r, order]
        ax = axes[r, 2]
        ax.barh(
            np.arange(k),
            values,
            color=["tab:red" if v > 0 else "tab:blue" for v in values],
        )
        ax.set_yticks(np.arange(k), [names[i] for i in order], fontsize=6)
        ax.set_xlim(-lim, lim)
        ax.axvline(0.0, color="0.4", lw=0.6)
        ax.tick_params(axis="x", labelsize=6)
        if r == b - 1:
            ax.set_xlabel("a* \u2212 a0 (red: increased, blue: decreased)", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure_atomic(fig, path, dpi=dpi)
    return fig


def attribute_ranking_plot(
    path: PathLike,
    rankings: Mapping[str, Sequence[Mapping[str, Any]]],
    names: Sequence[str],
    *,
    title: str | None = None,
    dpi: int = 100,
) -> Figure:
    """One panel per classifier: mean ``|a* - a0|`` per attribute over many queries, sorted,
    the largest on top (which attributes the classifier leans on). Where rows carry the signed
    ``"mean_change"``, a bar's colour says which way the attribute moved on average.

    Args:
      path: the PNG to write (atomically).
      rankings: panel title -> rows with ``"attribute"`` and ``"mean_abs_change"`` (and
        optionally ``"mean_change"``; as :func:`jaxcf.protocols.aip.attribute_ranking`
        returns); an empty list draws an empty panel.
      names: every attribute name (the order does not matter; unknown names raise).
    """
    if not rankings:
        raise ValueError("rankings is empty: give at least one classifier")
    known = set(str(n) for n in names)
    fig = _new_figure((3.4 * len(rankings), 0.28 * len(known) + 1.0), dpi)
    axes = fig.subplots(1, len(rankings), squeeze=False)[0]
    for ax, (panel, rows) in zip(axes, rankings.items(), strict=True):
        unknown = {r["attribute"] for r in rows} - known
        if unknown:
            raise ValueError(f"{panel}: unknown attributes {sorted(unknown)}")
        rows = sorted(rows, key=lambda r: r["mean_abs_change"])
        colours = [_SIGN_COLOURS[np.sign(r.get("mean_change", 0.0))] for r in rows]
        ax.barh(np.arange(len(rows)), [r["mean_abs_change"] for r in rows], color=colours)
        ax.set_yticks(np.arange(len(rows)), [r["attribute"] for r in rows], fontsize=7)
        ax.set_xlabel("mean |a* \u2212 a0|", fontsize=7)
        ax.tick_params(axis="x", labelsize=6)
        ax.set_title(panel, fontsize=8)
    signed = any("mean_change" in r for rows in rankings.values() for r in rows)
    if signed:
        labels = ((1.0, "raised on average"), (-1.0, "lowered on average"))
        handles = [Patch(color=_SIGN_COLOURS[v], label=t) for v, t in labels]
        fig.legend(handles=handles, loc="upper right", ncol=2, fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure_atomic(fig, path, dpi=dpi)
    return fig


def method_scatter(
    path: PathLike,
    points: Mapping[str, tuple[float, float]],
    *,
    series: Sequence[Sequence[str]] = (),
    xlabel: str = "",
    ylabel: str = "",
    title: str | None = None,
    dpi: int = 100,
) -> Figure:
    """One labelled point per method, ``label -> (x, y)``; each of ``series`` (labels in order)
    is joined by a line, as for one method at several settings.

    Raises:
      ValueError: no points, a non-finite coordinate, or a series naming an unknown label.
    """
    if not points:
        raise ValueError("points is empty: give at least one method")
    xy = {k: (float(v[0]), float(v[1])) for k, v in points.items()}
    bad = sorted(k for k, v in xy.items() if not all(map(math.isfinite, v)))
    if bad:
        raise ValueError(f"non-finite coordinates for {bad}")
    for line in series:
        unknown = sorted(set(line) - set(xy))
        if unknown:
            raise ValueError(f"series {list(line)} names unknown points {unknown}")
    fig = _new_figure((6.4, 3.8), dpi)
    ax = fig.subplots()
    for line in series:
        ax.plot(*zip(*(xy[k] for k in line), strict=True), color="0.7", lw=1, zorder=1)
    # Close points would hide each other's text labels: a legend with a marker shape and colour
    # per method stays readable, and hollow markers show points that lie on top of each other.
    for i, (label, (x, y)) in enumerate(xy.items()):
        marker = _SCATTER_MARKERS[i % len(_SCATTER_MARKERS)]
        ax.scatter(
            [x],
            [y],
            s=48,
            marker=marker,
            facecolors="none",
            edgecolors=f"C{i % 10}",
            linewidths=1.5,
            label=label,
            zorder=2,
        )
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7, frameon=False)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.margins(0.15)
    if title:
        ax.set_title(title, fontsize=9)
    save_figure_atomic(fig, path, dpi=dpi)
    return fig
