"""Figures and tables for counterfactual runs, and atomic file writers.

* :func:`counterfactual_grid`: originals, counterfactuals and signed differences per method.
* :func:`image_grid`: a tiled grid of images (e.g. a generative model's samples).
* :func:`l0_plot`: distribution of L0 per method beside the published means.
* :func:`format_table` / :func:`markdown_table`: the per-method summary table.
* :func:`write_json_atomic` / :func:`write_text_atomic` / :func:`save_figure_atomic`: every file
  is written to a temporary sibling and moved into place with ``os.replace``, so a reader never
  sees a half-written file.

Figures are drawn on a bare :class:`matplotlib.figure.Figure` with an Agg canvas, so importing this
module changes neither the global matplotlib backend nor pyplot's state.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxcf.io import (
    to_jsonable,
    write_atomic,
    write_json_atomic,
    write_text_atomic,
)

__all__ = [
    "counterfactual_grid",
    "format_table",
    "image_grid",
    "l0_plot",
    "markdown_table",
    "published_for",
    "save_figure_atomic",
    "to_jsonable",
    "write_atomic",
    "write_json_atomic",
    "write_text_atomic",
]

PathLike = str | os.PathLike

_DASH = "\u2014"  # shown where a number is not known
_PM = "\u00b1"


def save_figure_atomic(fig: Figure, path: PathLike, *, dpi: int = 100):
    """Saves ``fig`` as a PNG at ``path`` atomically."""
    FigureCanvasAgg(fig)  # a figure built elsewhere may lack a canvas
    return write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=dpi))


def published_for(method: str, published: Mapping[str, Any] | None) -> Any:
    """The entry of ``published`` for ``method``, names matched ignoring case and punctuation
    (``"DeDUCE"``, ``"deduce"`` and ``"De-DUCE"`` are one method), or None."""
    if not published:
        return None
    key = _normalise(method)
    for name, value in published.items():
        if _normalise(name) == key:
            return value
    return None


def _normalise(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


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


# --------------------------------------------------------------------------------------------
# Counterfactual grid


def _images(a: Any, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    a = np.asarray(a, np.float32)
    if a.ndim != 4 or a.shape[-1] not in (1, 3):
        raise ValueError(f"{name} must be NHWC with 1 or 3 channels, got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, expected {shape} like x")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


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


def _show(ax, img: np.ndarray) -> None:
    if img.shape[-1] == 1:
        ax.imshow(img[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(np.clip(img, 0.0, 1.0), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


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
    x = _images(x, "x")
    b = x.shape[0]
    if not results:
        raise ValueError("results is empty: give at least one method")
    target = _per_query(target, b, "target")
    pred = _per_query(pred, b, "pred")
    methods = list(results)
    cfs, info = {}, {}
    for m in methods:
        x_cf, found = _split_result(results[m])
        cfs[m] = _images(x_cf, f"results[{m!r}]", x.shape)
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
        _show(axes[r, 0], x[r])
        axes[r, 0].set_title(("original\n" if r == 0 else "") + label, fontsize=7)
        for j, m in enumerate(methods):
            ax_cf, ax_d = axes[r, 1 + 2 * j], axes[r, 2 + 2 * j]
            _show(ax_cf, cfs[m][r])
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


# --------------------------------------------------------------------------------------------
# L0 plot


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
        such as :data:`jaxcf.protocols.deduce.PUBLISHED`); names match ignoring case and
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


# --------------------------------------------------------------------------------------------
# Tables

_COLUMNS = (  # (header, summary key, format, scale)
    ("L0", "l0", ".2f", 1.0),
    ("L1", "l1", ".2f", 1.0),
    ("failure %", "failure_rate", ".2f", 100.0),
    ("iterations", "n_iter", ".1f", 1.0),
    ("realism NLL", "nll", ".1f", 1.0),
)
_PUBLISHED_COLUMNS = (("L0", "l0", "g", 1.0), ("L1", "l1", "g", 1.0))
_PUBLISHED_COLUMNS += (("failure %", "failure_rate", ".2f", 100.0),)


def _num(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _cell(summary: Mapping[str, Any], key: str, fmt: str, scale: float = 1.0) -> str:
    mean = _num(summary.get(key))
    if mean is None:
        return _DASH
    text = format(mean * scale, fmt)
    std = _num(summary.get(f"{key}_std_over_sets"))
    if std is not None and (summary.get("n_sets") or 0) > 1:  # one set has no spread
        text += f" {_PM} {format(std * scale, fmt)}"
    return text


def _pub_cell(pub: Mapping[str, Any] | None, key: str, fmt: str, scale: float = 1.0) -> str:
    value = _num(pub.get(key)) if isinstance(pub, Mapping) else None
    return _DASH if value is None else format(value * scale, fmt)


def _table(
    summaries: Mapping[str, Mapping[str, Any]],
    published: Mapping[str, Any] | None,
    published_label: str,
) -> list[tuple[str, ...]]:
    """Header and one row per method; summary columns without any value are left out."""
    present = [
        c for c in _COLUMNS if any(_num(s.get(c[1])) is not None for s in summaries.values())
    ]
    header = ["method", "n", *(c[0] for c in present)]
    if published:
        header += [f"{published_label} {c[0]}" for c in _PUBLISHED_COLUMNS]
    rows = [tuple(header)]
    for method, s in summaries.items():
        n = s.get("n")
        row = [str(method), _DASH if n is None else str(int(n))]
        row += [_cell(s, key, fmt, scale) for _, key, fmt, scale in present]
        if published:
            pub = published_for(method, published)
            row += [_pub_cell(pub, key, fmt, scale) for _, key, fmt, scale in _PUBLISHED_COLUMNS]
        rows.append(tuple(row))
    return rows


def format_table(
    summaries: Mapping[str, Mapping[str, Any]],
    published: Mapping[str, Any] | None = None,
    *,
    published_label: str = "paper",
) -> str:
    """A fixed-width text table of per-method summaries, optionally beside published numbers.

    Args:
      summaries: method name -> output of :func:`jaxcf.metrics.summarize`.
      published: optional method name -> dict with ``l0``, ``l1``, ``failure_rate`` (a
        protocol's published results, e.g. :data:`jaxcf.protocols.deduce.PUBLISHED`); adds
        columns headed ``"<published_label> L0"``, ...
      published_label: the prefix of the published columns.

    Distances, iterations and NLL are means over successful rows; ``a ± s`` shows the standard
    deviation over sets when the summary has one; a dash marks an unknown value. Metrics no
    method has (NLL without a density, say) get no column.
    """
    rows = _table(summaries, published, published_label)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def line(r):
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(rows[0]), rule, *(line(r) for r in rows[1:])]) + "\n"


def markdown_table(
    summaries: Mapping[str, Mapping[str, Any]],
    published: Mapping[str, Any] | None = None,
    *,
    published_label: str = "paper",
) -> str:
    """The table of :func:`format_table` in GitHub-flavoured markdown."""
    header, *rows = _table(summaries, published, published_label)
    out = ["| " + " | ".join(header) + " |", "| :--- |" + " ---: |" * (len(header) - 1)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"
