"""What the report's figures share: atomic PNG writes, array checks, row labels and bare
Agg figures (so importing the report changes neither matplotlib's global backend nor pyplot's
state)."""

from __future__ import annotations

import os
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxcf.core import write_atomic

PathLike = str | os.PathLike


def save_figure_atomic(fig: Figure, path: PathLike, *, dpi: int = 100):
    """Saves ``fig`` as a PNG at ``path`` atomically."""
    FigureCanvasAgg(fig)  # a figure built elsewhere may lack a canvas
    return write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=dpi))


def as_images(a: Any, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
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


def show_image(ax, img: np.ndarray) -> None:
    if img.shape[-1] == 1:
        ax.imshow(img[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(np.clip(img, 0.0, 1.0), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def as_rows(a: Any, name: str) -> np.ndarray:
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


def as_vector(a: Any, n: int, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
    return a


def as_classes(a: Any, n: int, num_classes: int, name: str) -> np.ndarray:
    a = as_vector(a, n, name)
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must hold integer classes, got dtype {a.dtype}")
    if a.min() < 0 or a.max() >= num_classes:
        raise ValueError(f"{name} has classes outside [0, {num_classes})")
    return a


def row_labels(pred: Any, target: Any, titles: Any, b: int) -> tuple:
    """Checked per-row ``pred`` ``[b]``, ``target`` ``[b]`` (one int broadcast) and ``titles``
    (``b`` strings); each may be None."""
    if pred is not None:
        pred = as_vector(pred, b, "pred")
    if target is not None:
        target = np.asarray(target)
        target = (
            np.full((b,), target.item()) if target.ndim == 0 else as_vector(target, b, "target")
        )
    if titles is not None:
        titles = [str(t) for t in titles]
        if len(titles) != b:
            raise ValueError(f"titles must have {b} entries (one per query), got {len(titles)}")
    return pred, target, titles


def row_label(i: int, pred: Any, target: Any, titles: Any, class_names: Any) -> str:
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


def new_figure(size: tuple[float, float], dpi: int) -> Figure:
    fig = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(fig)
    fig.set_layout_engine("constrained")
    return fig


def palette(num_classes: int) -> list:
    # Qualitative palettes keep neighbouring classes distinguishable; beyond 20, a continuous one.
    name = "tab10" if num_classes <= 10 else "tab20" if num_classes <= 20 else "viridis"
    cmap = matplotlib.colormaps[name]
    if name == "viridis":
        return [cmap(i / max(1, num_classes - 1)) for i in range(num_classes)]
    return [cmap(i) for i in range(num_classes)]
