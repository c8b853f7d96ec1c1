"""Readers of a user's data, a block of rows at a time: a folder of image files (one sub-folder
per class), a TensorFlow Datasets split through its random-access source, a directory of
``.npy`` files, and a registered data set already in memory.

Every reader offers the same small interface (:class:`RowReader`): its length, the shape of one
input, ``read(indices) -> (x, labels)`` for any list of row indices, the class names, the value
domain of its inputs and a cheap ``identity()`` that a run's fingerprint records. Nothing reads
more than the rows asked for, so a data set larger than memory is explained a chunk at a time.
Images come back as ``float32 [n, H, W, C]`` in ``[0, 1]``; labels as ``int32 [n]`` (or
``None`` for unlabelled data).

Tables (CSV files with a declared schema) are read by :mod:`jaxcf.data._tables`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image, UnidentifiedImageError

from jaxcf.data._dataset import Dataset
from jaxcf.data._idx import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
"""File types an image folder may hold (case-insensitive)."""


@runtime_checkable
class RowReader(Protocol):
    """What an experiment needs of its data."""

    def __len__(self) -> int: ...

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input, e.g. ``(28, 28, 1)``."""
        ...

    @property
    def class_names(self) -> tuple[str, ...]:
        """One name per class (empty when unknown or unlabelled)."""
        ...

    @property
    def domain(self) -> tuple[float, float] | None:
        """The box every input value lies in, or ``None`` (unbounded)."""
        ...

    def read(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray | None]:
        """Rows ``indices``: ``(float32 [n, *input_shape], int32 [n] labels or None)``."""
        ...

    def identity(self) -> dict[str, Any]:
        """JSON-ready description of the data, cheap to compute, for run fingerprints."""
        ...


def _indices(indices: Sequence[int], n: int) -> np.ndarray:
    idx = np.asarray(indices, np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise IndexError(f"row indices outside [0, {n}): {idx.min()}..{idx.max()}")
    return idx


class DatasetReader:
    """A registered data set's split (:func:`jaxcf.data.load_dataset`), already in memory."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.dataset.input_shape

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.dataset.class_names

    @property
    def domain(self) -> tuple[float, float] | None:
        return self.dataset.domain

    def read(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray | None]:
        idx = _indices(indices, len(self))
        labels = self.dataset.labels
        x = np.asarray(self.dataset.inputs[idx], np.float32)
        return x, None if labels is None else np.asarray(labels[idx], np.int32)

    def identity(self) -> dict[str, Any]:
        d = self.dataset
        return {"kind": "registered", "name": d.name, "split": d.split, "rows": len(d)}


def _to_image(image: Image.Image, shape: tuple[int, int, int]) -> np.ndarray:
    """One image as ``float32 [H, W, C]`` in ``[0, 1]``: converted to the channels asked for
    (1: grey, 3: RGB) and resized to ``H x W`` (Lanczos)."""
    height, width, channels = shape
    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    array = np.asarray(image, np.float32) / 255.0
    return array.reshape(height, width, channels)


class ImageFolder:
    """A folder of image files with one sub-folder per class (the sub-folder's name is the
    class name; classes sorted by name), e.g. ``test/cat/1.png``, ``test/dog/2.jpg``.

    Files are listed once (sorted by class, then by file name) and decoded when their rows are
    read, converted to ``channels`` and resized to ``image_size``.

    Args:
      path: the folder.
      image_size: ``(H, W)`` every image is resized to (the model's input).
      channels: 1 (grey) or 3 (RGB).
      class_names: the classes in label order, when they must match a model's (a sub-folder
        not among them is an error); default: the sorted sub-folder names.

    Raises:
      FileNotFoundError: no such folder.
      DataError: no class sub-folders, a class without images, or a sub-folder not among
        ``class_names``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        image_size: tuple[int, int],
        channels: int = 3,
        class_names: Sequence[str] | None = None,
    ):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"no image folder at {self.path}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        height, width = (int(v) for v in image_size)
        if height < 1 or width < 1:
            raise ValueError(f"image_size must be positive (H, W), got {image_size!r}")
        self._shape = (height, width, channels)
        found = sorted(p.name for p in self.path.iterdir() if p.is_dir())
        if not found:
            raise DataError(f"{self.path} has no class sub-folders (one per class, images inside)")
        names = tuple(class_names) if class_names is not None else tuple(found)
        unknown = sorted(set(found) - set(names))
        if unknown:
            raise DataError(
                f"{self.path}: sub-folders {unknown} are not among the classes {list(names)}"
            )
        files, labels = [], []
        for label, name in enumerate(names):
            folder = self.path / name
            images = (
                sorted(
                    p
                    for p in folder.iterdir()
                    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                )
                if folder.is_dir()
                else []
            )
            if not images and name in found:
                raise DataError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            files += images
            labels += [label] * len(images)
        self._names = names
        self._files = files
        self._labels = np.asarray(labels, np.int32)

    def __len__(self) -> int:
        return len(self._files)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._names

    @property
    def domain(self) -> tuple[float, float]:
        return (0.0, 1.0)

    @property
    def files(self) -> tuple[Path, ...]:
        """The image files in row order."""
        return tuple(self._files)

    def read(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        idx = _indices(indices, len(self))
        out = np.empty((len(idx), *self._shape), np.float32)
        for k, i in enumerate(idx):
            path = self._files[i]
            try:
                with Image.open(path) as image:
                    out[k] = _to_image(image, self._shape)
            except (OSError, UnidentifiedImageError, ValueError) as exc:
                raise DataError(f"cannot read the image {path}: {exc}") from exc
        return out, self._labels[idx]

    def identity(self) -> dict[str, Any]:
        h = hashlib.sha256()
        for path in self._files:
            stat = path.stat()
            h.update(f"{path.relative_to(self.path)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        return {
            "kind": "image_folder",
            "path": str(self.path.resolve()),
            "shape": list(self._shape),
            "classes": list(self._names),
            "files": len(self),
            "sha256": h.hexdigest(),
        }


class NpyFolder:
    """A directory holding ``x.npy`` (``[N, ...]`` inputs) and optionally ``labels.npy``
    (``[N]`` integer classes), read a block of rows at a time through a memory map.

    Args:
      path: the directory.
      domain: the box the inputs lie in (``None``: unbounded), checked on every block read.
      class_names: one name per class, if known.

    Raises:
      FileNotFoundError: no ``x.npy`` there.
      DataError: labels of another length or not integers.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        domain: tuple[float, float] | None = None,
        class_names: Sequence[str] = (),
    ):
        self.path = Path(path)
        if not (self.path / "x.npy").is_file():
            raise FileNotFoundError(f"no x.npy in {self.path}")
        self._x = np.load(self.path / "x.npy", mmap_mode="r")
        self._labels = None
        if (self.path / "labels.npy").is_file():
            labels = np.load(self.path / "labels.npy")
            if labels.shape != (len(self._x),) or not np.issubdtype(labels.dtype, np.integer):
                raise DataError(
                    f"{self.path / 'labels.npy'} must be [N] = [{len(self._x)}] integers, got "
                    f"{labels.dtype} {labels.shape}"
                )
            self._labels = labels.astype(np.int32)
        self._domain = None if domain is None else (float(domain[0]), float(domain[1]))
        self._names = tuple(class_names)

    def __len__(self) -> int:
        return int(self._x.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self._x.shape[1:])

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._names

    @property
    def domain(self) -> tuple[float, float] | None:
        return self._domain

    def read(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray | None]:
        idx = _indices(indices, len(self))
        x = np.asarray(self._x[idx], np.float32)
        if (
            self._domain is not None
            and x.size
            and (x.min() < self._domain[0] or x.max() > self._domain[1])
        ):
            raise DataError(
                f"{self.path / 'x.npy'}: values in [{x.min()}, {x.max()}] outside the domain "
                f"{self._domain}"
            )
        return x, None if self._labels is None else self._labels[idx]

    def identity(self) -> dict[str, Any]:
        stat = (self.path / "x.npy").stat()
        return {
            "kind": "npy_folder",
            "path": str(self.path.resolve()),
            "shape": list(self._x.shape),
            "bytes": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
        }


class TFDSSplit:
    """A TensorFlow Datasets split read through ``tfds.data_source`` (random access, no
    TensorFlow needed): rows are decoded when read; images (``uint8``) are scaled to
    ``[0, 1]``.

    Args:
      name: the TFDS name, e.g. ``"mnist"`` or ``"fashion_mnist"``.
      split: e.g. ``"test"``.
      data_dir: where TFDS keeps its data (``None``: its default).
      image_key, label_key: the feature names of the input and the class.

    Raises:
      DataError: TFDS does not know the name, or cannot prepare the split (offline and not
        downloaded), or a feature key is missing.
    """

    def __init__(
        self,
        name: str,
        split: str,
        data_dir: str | None = None,
        image_key: str = "image",
        label_key: str = "label",
    ):
        import tensorflow_datasets as tfds  # slow to import; only this reader needs it

        self.name, self.split, self.image_key, self.label_key = name, split, image_key, label_key
        try:
            builder = tfds.builder(name, data_dir=data_dir)
        except Exception as exc:  # tfds raises its own DatasetNotFoundError and others
            raise DataError(f"TensorFlow Datasets has no data set {name!r}: {exc}") from exc
        try:
            self._source = tfds.data_source(name, split=split, data_dir=data_dir)
        except Exception as exc:
            raise DataError(f"cannot open the TFDS split {name}/{split}: {exc}") from exc
        features = builder.info.features
        for key in (image_key, label_key):
            if key not in features:
                raise DataError(
                    f"the TFDS data set {name!r} has no feature {key!r}; it has {list(features)}"
                )
        label = features[label_key]
        self._names = tuple(getattr(label, "names", None) or ())
        image_shape = tuple(int(v) for v in features[image_key].shape)
        self._shape = image_shape if len(image_shape) == 3 else (*image_shape, 1)
        first = np.asarray(self._source[0][image_key]) if len(self._source) else None
        self._image_dtype = None if first is None else first.dtype

    def __len__(self) -> int:
        return len(self._source)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._names

    @property
    def domain(self) -> tuple[float, float] | None:
        return (0.0, 1.0) if self._image_dtype == np.uint8 else None

    def read(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        idx = _indices(indices, len(self))
        # One by one: tfds.testing.mock_data's sources have no __getitems__.
        rows = [self._source[int(i)] for i in idx]
        x = np.stack([np.asarray(r[self.image_key]) for r in rows]) if rows else None
        if x is None:
            return np.zeros((0, *self._shape), np.float32), np.zeros((0,), np.int32)
        x = x.reshape(len(idx), *self._shape)
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
        labels = np.asarray([int(r[self.label_key]) for r in rows], np.int32)
        return x, labels

    def identity(self) -> dict[str, Any]:
        return {"kind": "tfds", "name": self.name, "split": self.split, "rows": len(self)}
