"""Images beside attribution maps (saliency, Grad-CAM, counterfactual differences), one row per
query: signed maps red/blue around 0, non-negative maps sequential."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from jaxcf.report._common import (
    PathLike,
    as_images,
    new_figure,
    row_label,
    row_labels,
    save_figure_atomic,
    show_image,
)

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
        ``x_cf - x``), e.g. the output of :func:`jaxcf.evaluation.attribution.saliency`.
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
    images = as_images(images, "images")
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
    pred, target, titles = row_labels(pred, target, titles, b)

    rows = min(int(n), b)
    cols = 1 + len(names)
    fig = new_figure((1.35 * cols + 0.4, 1.4 * rows + 0.9 + (0.3 if title else 0.0)), dpi)
    axes = fig.subplots(rows, cols, squeeze=False)
    shown = {}  # name -> the last image drawn in its column (for the colorbar)
    for r in range(rows):
        label = row_label(r, pred, target, titles, class_names)
        show_image(axes[r, 0], images[r])
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
