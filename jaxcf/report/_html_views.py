"""The HTML report's per-row views, written a block of rows at a time: PNG sprite sheets of
images (query, counterfactual, signed difference), curves of time series, and the changed
features of table rows.

Each view writes one file per block of ``block_rows`` rows into the method's data folder; the
page loads the blocks of the rows it shows, and nothing else.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from jaxcf.report._html_data import f4_base64, js_data
from jaxcf.tabular import TabularTransform

KINDS = ("image", "series", "table", "none")
THUMB_MAX = 96  # thumbnails larger than this (height or width) are shrunk by an integer factor
SHEET_BYTES = 1 << 19  # about this many raw bytes per sprite sheet or series block
MAX_STEPS = 2000  # longer series are drawn from every k-th step
ATOL = 1e-6  # a feature of a table row without a transform changed when |new - old| > ATOL


def data_kind(x: np.ndarray, transform: TabularTransform | None, kind: str | None) -> str:
    """How a record's rows show: ``image`` (``[R, H, W, C]``), ``series`` (``[R, T, C]``),
    ``table`` (``[R, F]``, decoded with ``transform`` when given) or ``none`` (numbers only)."""
    ndim = np.ndim(x)
    wanted = {"image": 4, "series": 3, "table": 2}
    if kind is not None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS} or None, got {kind!r}")
        if kind != "none" and ndim != wanted[kind]:
            raise ValueError(f"kind {kind!r} wants rows of {wanted[kind] - 1} axes, got {x.shape}")
    else:
        kind = {4: "image", 3: "series", 2: "table"}.get(ndim, "none")
    if kind == "table" and transform is not None and x.shape[1] != transform.dim:
        raise ValueError(f"rows of width {x.shape[1]}, but the transform encodes {transform.dim}")
    return kind


def make_view(kind: str, shape: tuple[int, ...], transform: TabularTransform | None):
    """The writer of one method's view for rows of ``shape`` (without the row axis)."""
    if kind == "image":
        return ImageView(shape)
    if kind == "series":
        return SeriesView(shape)
    if kind == "table":
        return TableView(shape, transform)
    return NoView()


def _block_rows(bytes_per_row: int, low: int = 8, high: int = 256) -> int:
    rows = SHEET_BYTES // max(1, bytes_per_row)
    return int(min(high, max(low, 2 ** math.floor(math.log2(max(rows, 1))))))


class NoView:
    kind = "none"
    block_rows = 1 << 12

    def info(self) -> dict[str, Any]:
        return {"kind": self.kind, "block": self.block_rows}

    def write(self, folder: Path, block: int, x: np.ndarray, x_cf: np.ndarray) -> dict:
        return {}


# --------------------------------------------------------------------------------------------
# Images


def image_file(block: int) -> str:
    return f"img-{block:05d}.png"


def shrink(images: np.ndarray, factor: int) -> np.ndarray:
    """``[b, H, W, C]`` averaged over ``factor x factor`` tiles (edges that do not fill a tile
    are cropped)."""
    if factor == 1:
        return images
    b, h, w, c = images.shape
    h, w = h // factor * factor, w // factor * factor
    tiles = images[:, :h, :w].reshape(b, h // factor, factor, w // factor, factor, c)
    return tiles.mean(axis=(2, 4))


def to_rgb8(images: np.ndarray) -> np.ndarray:
    """``[b, h, w, C]`` in ``[0, 1]`` as ``uint8 [b, h, w, 3]`` (one channel as grey; channel
    counts other than 1 and 3 as the grey of their mean)."""
    if images.shape[-1] not in (1, 3):
        images = images.mean(axis=-1, keepdims=True)
    out = np.rint(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.repeat(out, 3, axis=-1) if out.shape[-1] == 1 else out


def diff_rgb8(diff: np.ndarray, limit: float = 1.0) -> np.ndarray:
    """Signed ``[b, h, w]`` differences as ``uint8 [b, h, w, 3]``: white at 0, red where the
    counterfactual is larger, blue where it is smaller, saturated at ``+-limit``."""
    d = np.clip(diff / limit, -1.0, 1.0)
    fade = np.rint(255.0 * (1.0 - np.abs(d))).astype(np.uint8)
    full = np.full_like(fade, 255)
    red = np.where(d > 0, full, fade)
    blue = np.where(d < 0, full, fade)
    return np.stack([red, fade, blue], axis=-1)


def as_unit(images: np.ndarray) -> np.ndarray:
    """Images as float32, integer images (bytes) scaled to ``[0, 1]``; NaN shows as 0."""
    if np.issubdtype(images.dtype, np.integer):
        return images.astype(np.float32) / 255.0
    return np.nan_to_num(images.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)


def sprite_sheet(x: np.ndarray, x_cf: np.ndarray, factor: int = 1) -> np.ndarray:
    """One block's sheet, ``uint8 [b * h, 3 * w, 3]``: row ``i`` holds the query, the
    counterfactual and the difference (channel mean of ``x_cf - x``) of block row ``i``."""
    q, c = shrink(as_unit(x), factor), shrink(as_unit(x_cf), factor)
    d = diff_rgb8((c - q).mean(axis=-1))
    b, h, w = d.shape[:3]
    return np.concatenate([to_rgb8(q), to_rgb8(c), d], axis=2).reshape(b * h, 3 * w, 3)


class ImageView:
    kind = "image"

    def __init__(self, shape: tuple[int, ...]):
        h, w, _ = shape
        self.factor = max(1, math.ceil(max(h, w) / THUMB_MAX))
        self.h, self.w = h // self.factor, w // self.factor
        self.block_rows = _block_rows(self.h * self.w * 9)

    def info(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "block": self.block_rows,
            "h": self.h,
            "w": self.w,
            "factor": self.factor,
            "panels": ["query", "counterfactual", "difference"],
        }

    def write(self, folder: Path, block: int, x: np.ndarray, x_cf: np.ndarray) -> dict:
        sheet = sprite_sheet(x, x_cf, self.factor)
        with open(folder / image_file(block), "wb") as f:
            Image.fromarray(sheet, "RGB").save(f, format="PNG", compress_level=3)
        return {}


# --------------------------------------------------------------------------------------------
# Time series


def series_file(block: int) -> str:
    return f"series-{block:05d}.js"


class SeriesView:
    kind = "series"

    def __init__(self, shape: tuple[int, ...]):
        steps, self.channels = shape
        self.stride = max(1, math.ceil(steps / MAX_STEPS))
        self.steps = len(range(0, steps, self.stride))
        self.block_rows = _block_rows(self.steps * self.channels * 8, high=1024)

    def info(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "block": self.block_rows,
            "steps": self.steps,
            "channels": self.channels,
            "stride": self.stride,
        }

    def write(self, folder: Path, block: int, x: np.ndarray, x_cf: np.ndarray) -> dict:
        payload = {
            "id": f"{folder.name}/series/{block}",
            "n": len(x),
            "x": f4_base64(x[:, :: self.stride]),
            "cf": f4_base64(x_cf[:, :: self.stride]),
        }
        (folder / series_file(block)).write_bytes(js_data(payload))
        return {}


# --------------------------------------------------------------------------------------------
# Table rows


def table_file(block: int) -> str:
    return f"table-{block:05d}.js"


def format_value(value: Any, integer: bool = False) -> str:
    """A value as a person reads it: text as it is, integers without ``.0``, reals to 6
    significant digits (as :func:`jaxcf.tabular.changes` shows them)."""
    if isinstance(value, str):
        return value
    value = float(value)
    if integer or value.is_integer():
        return str(int(round(value)))
    return f"{value:.6g}"


class TableView:
    kind = "table"

    def __init__(self, shape: tuple[int, ...], transform: TabularTransform | None):
        self.transform = transform
        self.block_rows = 256
        if transform is not None:
            self.columns = list(transform.names)
            self.integer = [c.kind == "numeric" and c.integer for c in transform.schema.columns]
        else:
            self.columns = [f"feature {i}" for i in range(shape[0])]
            self.integer = [False] * shape[0]

    def info(self) -> dict[str, Any]:
        return {"kind": self.kind, "block": self.block_rows, "columns": self.columns}

    def _decoded(self, x: np.ndarray) -> list[np.ndarray]:
        if self.transform is None:
            return list(np.asarray(x, np.float64).T)
        table = self.transform.decode(x)
        return [table[name] for name in self.columns]

    def write(self, folder: Path, block: int, x: np.ndarray, x_cf: np.ndarray) -> dict:
        """Writes each row's changed features as ``[column, old, new]``; returns the number of
        changed features per row (``{"changed": [b]}``)."""
        old, new = self._decoded(x), self._decoded(x_cf)
        if self.transform is None:
            moved = [np.abs(n - o) > ATOL for o, n in zip(old, new, strict=True)]
        else:
            moved = [o != n for o, n in zip(old, new, strict=True)]
        rows: list[list[list[Any]]] = [[] for _ in range(len(x))]
        for j, mask in enumerate(moved):
            for i in np.flatnonzero(mask).tolist():
                integer = self.integer[j]
                rows[i].append(
                    [j, format_value(old[j][i], integer), format_value(new[j][i], integer)]
                )
        payload = {"id": f"{folder.name}/table/{block}", "n": len(x), "rows": rows}
        (folder / table_file(block)).write_bytes(js_data(payload))
        return {"changed": np.asarray([len(r) for r in rows], np.int64)}
