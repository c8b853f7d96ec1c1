"""Plots of summary numbers: L0 per method beside the published means, and one labelled point
per method on two metrics (a trade-off)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxcf.report._common import (
    PathLike,
    new_figure,
    save_figure_atomic,
)
from jaxcf.report._tables import published_for


def _published_l0(published: Mapping[str, Any] | None, method: str) -> float | None:
    value = published_for(method, published)
    if isinstance(value, Mapping):
        value = value.get("l0")
    return None if value is None else float(value)


def l0_plot(
    path: PathLike,
    l0_by_method: Mapping[str, Any],
    published: Mapping[str, Any] | None = None,
    *,
    title: str | None = None,
    dpi: int = 100,
) -> Figure:
    """Box plot of L0 (changed pixels) per method, with our mean and the published mean marked.

    Args:
      path: the PNG to write (atomically).
      l0_by_method: method name -> ``[N]`` L0 of its successful queries.
      published: optional method name -> published mean L0 (a number, or a dict with ``"l0"``
        such as :data:`explain.deduce.PUBLISHED`); names match ignoring case and
        punctuation.
      title: optional axes title.
      dpi: resolution of the PNG.

    The y axis is logarithmic (symmetric-log if some L0 is 0) when the values or published means
    span more than a factor of 20.

    Returns:
      The figure (already saved).
    """
    if not l0_by_method:
        raise ValueError("l0_by_method is empty")
    methods = list(l0_by_method)
    data = []
    for m in methods:
        v = np.asarray(l0_by_method[m], np.float64).ravel()
        if not np.all(np.isfinite(v)):
            raise ValueError(f"L0 of {m!r} contains NaN or inf")
        data.append(v)
    pub = [_published_l0(published, m) for m in methods]

    fig = Figure(figsize=(max(4.0, 1.3 * len(methods) + 1.5), 4.0), dpi=dpi)
    FigureCanvasAgg(fig)
    fig.set_layout_engine("constrained")
    ax = fig.subplots()
    pos = np.arange(1, len(methods) + 1)
    filled = [i for i, v in enumerate(data) if v.size]
    if filled:
        ax.boxplot(
            [data[i] for i in filled],
            positions=pos[filled],
            widths=0.5,
            showfliers=True,
            flierprops={"markersize": 2, "alpha": 0.4},
        )
        ax.scatter(
            pos[filled],
            [data[i].mean() for i in filled],
            marker="o",
            color="tab:blue",
            zorder=3,
            label="mean (ours)",
        )
    known = [(p, v) for p, v in zip(pos, pub, strict=True) if v is not None]
    if known:
        ax.scatter(
            [p for p, _ in known],
            [v for _, v in known],
            marker="D",
            color="tab:red",
            zorder=4,
            label="mean (published)",
        )
    for i, v in enumerate(data):
        if not v.size:
            ax.text(pos[i], 0.5, "no successes", ha="center", transform=ax.get_xaxis_transform())

    everything = np.concatenate([*data, np.asarray([v for _, v in known], np.float64)])
    positive = everything[everything > 0]
    if positive.size and positive.max() / positive.min() > 20:
        if np.any(everything <= 0):
            ax.set_yscale("symlog", linthresh=1.0)
        else:
            ax.set_yscale("log")
    ax.set_xticks(pos, [str(m) for m in methods])
    ax.set_xlim(0.4, len(methods) + 0.6)
    ax.set_xlabel("method")
    ax.set_ylabel("L0 (pixels changed, successful queries)")
    ax.set_title(title or "Sparsity of counterfactuals", fontsize=10)
    if filled or known:
        ax.legend(fontsize=8, loc="best")
    ax.grid(axis="y", alpha=0.3)
    save_figure_atomic(fig, path, dpi=dpi)
    return fig


_SCATTER_MARKERS = "osD^vP*"  # method_scatter: 7 shapes against 10 colours, 70 distinct points


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
    fig = new_figure((6.4, 3.8), dpi)
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
