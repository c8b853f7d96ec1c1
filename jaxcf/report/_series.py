"""Time series: original and counterfactual overlaid, one panel per query."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from jaxcf.report._common import (
    PathLike,
    new_figure,
    palette,
    row_label,
    row_labels,
    save_figure_atomic,
)


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
    pred, target, titles = row_labels(pred, target, titles, b)
    if channel_names is not None and len(channel_names) != channels:
        raise ValueError(f"channel_names must have {channels} entries, got {len(channel_names)}")

    shown = min(int(n), b)
    ncols = min(int(cols), shown)
    nrows = math.ceil(shown / ncols)
    fig = new_figure((2.8 * ncols + 0.4, 2.0 * nrows + (0.6 if title else 0.3)), dpi)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    colours = palette(channels)
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
        label = row_label(i, pred, target, titles, class_names)
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
