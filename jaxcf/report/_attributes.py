"""Which attributes an attribute-informed counterfactual (AIP) changed: per query, and ranked over
many queries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from jaxcf.report._common import (
    PathLike,
    as_images,
    new_figure,
    save_figure_atomic,
    show_image,
)

# Bar colours by the sign of an attribute's mean change (attribute_ranking_plot).
_SIGN_COLOURS = {1.0: "tab:purple", -1.0: "tab:orange", 0.0: "tab:gray"}


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
    x = as_images(x, "x")
    x_cf = as_images(x_cf, "x_cf", x.shape)
    delta = np.asarray(delta, np.float64)
    b = x.shape[0]
    if delta.ndim != 2 or delta.shape[0] != b:
        raise ValueError(f"delta must be [{b}, t], got shape {delta.shape}")
    names = _names(names, delta.shape[1])
    k = max(1, min(int(top), delta.shape[1]))
    lim = max(float(np.abs(delta).max()), 1e-6) * 1.1
    fig = new_figure((7.0, 1.9 * b + (0.4 if title else 0.1)), dpi)
    axes = fig.subplots(b, 3, squeeze=False, width_ratios=[1, 1, 2.6])
    for r in range(b):
        show_image(axes[r, 0], x[r])
        show_image(axes[r, 1], x_cf[r])
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
        optionally ``"mean_change"``; as :func:`explain.aip.attribute_ranking`
        returns); an empty list draws an empty panel.
      names: every attribute name (the order does not matter; unknown names raise).
    """
    if not rankings:
        raise ValueError("rankings is empty: give at least one classifier")
    known = set(str(n) for n in names)
    fig = new_figure((3.4 * len(rankings), 0.28 * len(known) + 1.0), dpi)
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
