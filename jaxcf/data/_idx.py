"""Readers for the IDX files of MNIST and Fashion-MNIST, raw or gzip-compressed.

The IDX format (LeCun et al.) is a big-endian header followed by row-major data:

* images: magic 2051 (``0x00000803``: unsigned bytes, 3 dimensions), then ``n``, ``rows``,
  ``cols`` as 4-byte integers (a 16-byte header), then ``n * rows * cols`` pixel bytes;
* labels: magic 2049 (``0x00000801``: unsigned bytes, 1 dimension), then ``n`` (an 8-byte
  header), then ``n`` label bytes.

A file is decompressed when it starts with the gzip magic bytes, whatever its name, so the
original ``.gz`` files and their uncompressed copies both load. Every problem with a file's
contents raises :class:`DataError`, whose message starts with the file's path and says exactly
what is wrong; a missing file raises the usual :class:`FileNotFoundError`.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

IMAGES_MAGIC = 2051
"""Magic number of an IDX file of unsigned-byte images, shape ``[n, rows, cols]``."""
LABELS_MAGIC = 2049
"""Magic number of an IDX file of unsigned-byte labels, shape ``[n]``."""

_GZIP_MAGIC = b"\x1f\x8b"
_KIND_OF_MAGIC = {IMAGES_MAGIC: "image", LABELS_MAGIC: "label"}


class DataError(ValueError):
    """A data file (or data set) exists but its contents are not what they should be.

    The message names the file and what is wrong with it, e.g.
    ``".../t10k-images-idx3-ubyte.gz: bad magic number 2049, expected 2051 (an IDX image file)"``.
    """


def read_idx_images(
    path: str | os.PathLike[str],
    *,
    expected_count: int | None = None,
    expected_shape: tuple[int, int] | None = (28, 28),
) -> np.ndarray:
    """Reads an IDX image file (magic 2051), raw or gzip-compressed.

    Args:
      path: the file, e.g. ``t10k-images-idx3-ubyte.gz``.
      expected_count: if given, the number of images the header must declare.
      expected_shape: ``(rows, cols)`` the header must declare; ``None`` accepts any.

    Returns:
      A read-only ``uint8`` array ``[n, rows, cols]`` of raw pixel values 0..255.

    Raises:
      FileNotFoundError: the file does not exist.
      DataError: corrupt gzip stream, wrong magic number, short header, unexpected image
        size, truncated payload or extra bytes after it, or a count other than
        ``expected_count``.
    """
    path = Path(path)
    data = _read_maybe_gzip(path)
    n, rows, cols = _read_header(path, data, IMAGES_MAGIC, ndim=3)
    if expected_shape is not None and (rows, cols) != tuple(expected_shape):
        want_rows, want_cols = expected_shape
        raise DataError(
            f"{path}: header says images of {rows}x{cols} pixels, expected {want_rows}x{want_cols}"
        )
    header_bytes = _header_size(ndim=3)
    _check_payload_size(
        path,
        found=len(data) - header_bytes,
        needed=n * rows * cols,
        what=f"{n} images of {rows}x{cols}",
    )
    _check_count(path, n, expected_count, noun="images")
    return np.frombuffer(data, dtype=np.uint8, offset=header_bytes).reshape(n, rows, cols)


def read_idx_labels(
    path: str | os.PathLike[str],
    *,
    expected_count: int | None = None,
) -> np.ndarray:
    """Reads an IDX label file (magic 2049), raw or gzip-compressed.

    Args:
      path: the file, e.g. ``t10k-labels-idx1-ubyte.gz``.
      expected_count: if given, the number of labels the header must declare.

    Returns:
      A read-only ``uint8`` array ``[n]`` of labels as stored (no range check here).

    Raises:
      FileNotFoundError: the file does not exist.
      DataError: corrupt gzip stream, wrong magic number, short header, truncated payload or
        extra bytes after it, or a count other than ``expected_count``.
    """
    path = Path(path)
    data = _read_maybe_gzip(path)
    (n,) = _read_header(path, data, LABELS_MAGIC, ndim=1)
    header_bytes = _header_size(ndim=1)
    _check_payload_size(path, found=len(data) - header_bytes, needed=n, what=f"{n} labels")
    _check_count(path, n, expected_count, noun="labels")
    return np.frombuffer(data, dtype=np.uint8, offset=header_bytes)


def _read_maybe_gzip(path: Path) -> bytes:
    """Returns the file's bytes, gunzipped when they start with the gzip magic bytes."""
    raw = path.read_bytes()  # FileNotFoundError names the path.
    if raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError.
            raise DataError(f"{path}: corrupt gzip stream ({exc})") from exc
    if path.suffix == ".gz":
        raise DataError(
            f"{path}: not a gzip stream although the name ends in .gz "
            f"(first bytes {raw[:4].hex(' ') or 'none: the file is empty'})"
        )
    return raw


def _header_size(ndim: int) -> int:
    """Bytes in an IDX header: the 4-byte magic number plus one 4-byte size per dimension."""
    return 4 + 4 * ndim


def _read_header(path: Path, data: bytes, magic: int, ndim: int) -> tuple[int, ...]:
    """Checks the magic number and returns the ``ndim`` dimension sizes from the header."""
    kind = _KIND_OF_MAGIC[magic]
    size = _header_size(ndim)
    if len(data) < size:
        raise DataError(
            f"{path}: truncated header: an IDX {kind} file starts with a {size}-byte header, "
            f"found {len(data)} bytes in all"
        )
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        hint = ""
        if found in _KIND_OF_MAGIC:
            hint = f"; this is an IDX {_KIND_OF_MAGIC[found]} file"
        raise DataError(
            f"{path}: bad magic number {found}, expected {magic} (an IDX {kind} file){hint}"
        )
    return tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))


def _check_payload_size(path: Path, *, found: int, needed: int, what: str) -> None:
    """Raises :class:`DataError` unless the payload after the header is ``needed`` bytes long."""
    if found < needed:
        raise DataError(f"{path}: truncated: header says {what} = {needed} bytes, found {found}")
    if found > needed:
        raise DataError(
            f"{path}: {found - needed} extra bytes: header says {what} = {needed} bytes, "
            f"found {found}"
        )


def _check_count(path: Path, count: int, expected: int | None, *, noun: str) -> None:
    """Raises :class:`DataError` if ``expected`` is given and differs from the header's count."""
    if expected is not None and count != expected:
        raise DataError(f"{path}: header says {count} {noun}, expected {expected}")
