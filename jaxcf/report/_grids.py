"""Image grids: a tiled grid of images, and originals beside each method's counterfactuals and
their signed differences."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxcf.report._common import (
    PathLike,
    as_images,
    save_figure_atomic,
    show_image,
)


def image_grid(images: Any, path: PathLike, *, columns: int = 8, cell: float = 0.9):
    """Saves ``images`` (``[N, H, W, C]`` in ``[0, 1]``, C 1 or 3) as one PNG grid of
    ``columns`` columns, without axes."""
    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or not len(images):
        raise ValueError(f"image_grid wants [N, H, W, 1 or 3] images, got {images.shape}")
    columns = min(columns, len(images))
    rows = math.ceil(len(images) / columns)
    fig = Figure(figsize=(cell * columns, cell * rows))
    for i, img in enumerate(images):
        ax = fig.add_subplot(rows, columns, i + 1)
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
        ax.axis("off")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.99, wspace=0.05, hspace=0.05)
    return save_figure_atomic(fig, path)


def _per_query(a: Any, b: int, name: str) -> np.ndarray | None:
    if a is None:
        return None
    a = np.asarray(a)
    if a.ndim == 0:
        a = np.full((b,), a.item())
    if a.shape != (b,):
        raise ValueError(f"{name} must be a scalar or have shape ({b},), got {a.shape}")
    return a


def _split_result(value: Any) -> tuple[Any, dict[str, Any]]:
    """An ``x_cf`` array, or a CFResult / Results / dict with ``x_cf`` (and maybe success,
    score)."""
    if isinstance(value, Mapping):
        return value["x_cf"], {k: value[k] for k in ("success", "score") if k in value}
    if hasattr(value, "x_cf"):  # a CFResult or a Results record
        return value.x_cf, {k: getattr(value, k) for k in ("success", "score") if hasattr(value, k)}
    return value, {}


def counterfactual_grid(
    path: PathLike,
    x: Any,
    results: Mapping[str, Any],
    target: Any,
    *,
    pred: Any = None,
    n: int = 8,
    title: str | None = None,
    extras: Mapping[str, Mapping[str, Any]] | None = None,
    dpi: int = 100,
) -> Figure:
    """Draws originals, counterfactuals and differences, one row per query, and saves a PNG.

    Columns: the original (titled with its predicted class when ``pred`` is given and its
    target), then for each method its counterfactual and the difference ``x_cf - x`` (averaged
    over channels) in a diverging colormap, red = increased, blue = decreased, limits +-1, with a
    shared colorbar. Counterfactual cells are titled with success and score (``s``: the target
    probability for class targets) when known.

    Args:
      path: the PNG to write (atomically).
      x: ``[B, H, W, C]`` queries in [0, 1], ``C`` 1 or 3.
      results: method name -> ``[B, H, W, C]`` counterfactuals, or a CFResult, Results or dict
        with ``x_cf`` (whose ``success`` and ``score`` are then shown).
      target: ``[B]`` int targets (or one int).
      pred: optional ``[B]`` classifier predictions on ``x``.
      n: number of queries shown (the first ``n``).
      title: optional figure title.
      extras: optional method name -> ``{"success": [B], "score": [B]}``, overriding what
        ``results`` provides.
      dpi: resolution of the PNG.

    Returns:
      The figure (already saved).
    """
    x = as_images(x, "x")
    b = x.shape[0]
    if not results:
        raise ValueError("results is empty: give at least one method")
    target = _per_query(target, b, "target")
    pred = _per_query(pred, b, "pred")
    methods = list(results)
    cfs, info = {}, {}
    for m in methods:
        x_cf, found = _split_result(results[m])
        cfs[m] = as_images(x_cf, f"results[{m!r}]", x.shape)
        found.update((extras or {}).get(m, {}))
        info[m] = {k: _per_query(v, b, f"{m} {k}") for k, v in found.items()}
    rows = max(1, min(int(n), b))
    cols = 1 + 2 * len(methods)

    fig = Figure(figsize=(1.25 * cols + 0.9, 1.4 * rows + (0.5 if title else 0.2)), dpi=dpi)
    FigureCanvasAgg(fig)
    fig.set_layout_engine("constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    diff_im = None
    for r in range(rows):
        label = f"target {int(target[r])}"
        if pred is not None:
            label = f"pred {int(pred[r])} \u2192 {int(target[r])}"
        show_image(axes[r, 0], x[r])
        axes[r, 0].set_title(("original\n" if r == 0 else "") + label, fontsize=7)
        for j, m in enumerate(methods):
            ax_cf, ax_d = axes[r, 1 + 2 * j], axes[r, 2 + 2 * j]
            show_image(ax_cf, cfs[m][r])
            bits = []
            if info[m].get("success") is not None:
                bits.append("\u2713" if bool(info[m]["success"][r]) else "\u2717 failed")
            if info[m].get("score") is not None:
                bits.append(f"s={float(info[m]['score'][r]):.2f}")
            ax_cf.set_title((f"{m}\n" if r == 0 else "") + " ".join(bits), fontsize=7)
            diff = (cfs[m][r] - x[r]).mean(axis=-1)
            diff_im = ax_d.imshow(diff, cmap="RdBu_r", vmin=-1.0, vmax=1.0, interpolation="nearest")
            ax_d.set_xticks([])
            ax_d.set_yticks([])
            if r == 0:
                ax_d.set_title(f"\u0394 {m}", fontsize=7)
    cbar = fig.colorbar(diff_im, ax=axes[:, 2::2].ravel().tolist(), shrink=0.6, aspect=30)
    cbar.set_label("x_cf \u2212 x (red: increased, blue: decreased)", fontsize=7)
    cbar.ax.tick_params(labelsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure_atomic(fig, path, dpi=dpi)
    return fig


def labelled_rows(rows: Sequence[tuple[str, np.ndarray]], path: str | Path) -> None:
    """Saves a PNG of image rows (``[(label, [n, H, W, C] in [0, 1]), ...]``, equal ``n``),
    each row labelled on its left."""
    n = len(rows[0][1])
    fig = Figure(figsize=(0.9 * n + 1.1, 0.9 * len(rows)))
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(n):
            img = np.clip(np.asarray(images[c], np.float32), 0.0, 1.0)
            ax = axes[r, c]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        axes[r, 0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    left = 1.0 / (0.9 * n + 1.1)
    fig.subplots_adjust(left=left, right=0.99, bottom=0.01, top=0.99, wspace=0.05, hspace=0.05)
    save_figure_atomic(fig, path)
