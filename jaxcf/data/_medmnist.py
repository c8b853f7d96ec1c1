"""PneumoniaMNIST and BreastMNIST (MedMNIST v2, 28x28) as in-memory arrays, from the official
``.npz`` files.

Both are registered in :mod:`jaxcf.data`, as ``"pneumoniamnist"`` and
``"breastmnist"`` (``load_dataset("pneumoniamnist", "val")`` is
``load_medmnist("val", dataset="pneumoniamnist")``), with the three splits MedMNIST ships:
``"train"``, ``"val"`` and ``"test"``.

The data (Yang et al., "MedMNIST v2", Scientific Data 10:41, 2023; https://medmnist.com/,
files on Zenodo; CC BY 4.0): grayscale images reduced to 28x28 pixels, two classes each.

* PneumoniaMNIST: paediatric chest X-rays (Kermany et al., Cell 2018); label 0 is *normal*,
  1 *pneumonia*; train 4,708 / val 524 / test 624.
* BreastMNIST: breast ultrasound images (Al-Dhabyani et al., 2020); label 0 is *malignant*,
  1 *normal or benign*; train 546 / val 78 / test 156.

Each file holds ``<split>_images`` (``uint8 [N, 28, 28]``) and ``<split>_labels``
(``uint8 [N, 1]``) for the three splits. A file is checked as a whole when it is read: every
split must have the official number of images (:data:`SPLIT_SIZES`) and of each label
(:data:`LABEL_COUNTS`), so a truncated, re-split or edited copy raises
:class:`~jaxcf.data.DataError` (a ``ValueError``) naming the file and the mismatch.

Where the data comes from: an explicit ``data_dir`` only, else ``$JAXCF_DATA_DIR``, then the
shared data folder beside the checkout (:func:`~jaxcf.data.default_data_dir`; there is no
TensorFlow Datasets version). A directory holds ``<dataset>.npz`` in a subfolder
``medmnist/`` (tried first) or directly. As for the other loaders, a ``$JAXCF_DATA_DIR``
without the file is skipped with a warning, and a file that exists but is broken raises
rather than falling through to another source. Files are cached in-process on their resolved
path, size and modification time, so repeated calls return the same :class:`Dataset`, whose
arrays are therefore read-only.
"""

from __future__ import annotations

import functools
import os
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from jaxcf.data._dataset import Dataset
from jaxcf.data._idx import DataError
from jaxcf.data._lookup import DATA_DIR_ENV, check_sources, first_available, from_env, from_shared
from jaxcf.data._registry import register_dataset

Split = Literal["train", "val", "test"]
DatasetName = Literal["pneumoniamnist", "breastmnist"]
Source = Literal["env", "shared"]

SUBFOLDER = "medmnist"
"""The folder of a data directory holding the ``.npz`` files (tried before the directory)."""
DEFAULT_SOURCES: tuple[Source, ...] = ("env", "shared")
"""Sources tried, in order, when no ``data_dir`` is given."""
SPLITS: tuple[str, ...] = ("train", "val", "test")
"""The splits of every MedMNIST file, in the files' order."""
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "pneumoniamnist": ("normal", "pneumonia"),
    "breastmnist": ("malignant", "normal/benign"),
}
"""Class names by data set; label ``k`` is ``CLASS_NAMES[name][k]`` (MedMNIST's own labels)."""
SPLIT_SIZES: dict[str, dict[str, int]] = {
    "pneumoniamnist": {"train": 4_708, "val": 524, "test": 624},
    "breastmnist": {"train": 546, "val": 78, "test": 156},
}
"""Number of images each split of the official files has."""
LABEL_COUNTS: dict[str, dict[str, tuple[int, ...]]] = {
    "pneumoniamnist": {"train": (1_214, 3_494), "val": (135, 389), "test": (234, 390)},
    "breastmnist": {"train": (147, 399), "val": (21, 57), "test": (42, 114)},
}
"""Images per label (0, 1) in each split of the official files."""
IMAGE_SHAPE = (28, 28)
DOMAIN = (0.0, 1.0)
"""Pixel intensities are raw bytes / 255, so every input lies in ``[0, 1]``."""


def load_medmnist(
    split: Split = "train",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    dataset: DatasetName = "pneumoniamnist",
    sources: Sequence[Source] | None = None,
) -> Dataset:
    """Loads one split of PneumoniaMNIST or BreastMNIST.

    Args:
      split: ``"train"``, ``"val"`` or ``"test"`` (sizes in :data:`SPLIT_SIZES`).
      data_dir: a directory holding ``<dataset>.npz`` (in ``<data_dir>/medmnist/`` or
        directly). When given, only this directory is used.
      dataset: ``"pneumoniamnist"`` or ``"breastmnist"``.
      sources: the sources to try, in order, when ``data_dir`` is not given: ``"env"``
        (``$JAXCF_DATA_DIR``) and/or ``"shared"`` (:func:`~jaxcf.data.default_data_dir`).
        Default :data:`DEFAULT_SOURCES`.

    Returns:
      A :class:`Dataset` with ``float32 [N, 28, 28, 1]`` images in ``[0, 1]`` (also its
      ``domain``), ``int32 [N]`` labels in {0, 1} and the data set's :data:`CLASS_NAMES`.

    Raises:
      ValueError: an unknown split, data set or source, or both ``data_dir`` and ``sources``.
      FileNotFoundError: ``data_dir`` lacks the file, or no source has it (the message lists
        each source tried and why it failed).
      DataError: the file was found but is unreadable or is not the official one (wrong
        arrays, shapes, dtypes, sizes or label counts).
    """
    _check_choice("split", split, SPLITS)
    _check_choice("dataset", dataset, CLASS_NAMES)
    if data_dir is not None:
        if sources is not None:
            raise ValueError("pass either data_dir or sources, not both")
        return _load_file(find_medmnist_file(data_dir, dataset), dataset, split)

    sources = check_sources(sources, DEFAULT_SOURCES)
    finders = {
        "env": lambda: from_env(lambda d: find_medmnist_file(d, dataset), dataset),
        "shared": lambda: from_shared(lambda d: find_medmnist_file(d, dataset)),
    }
    path = first_available(
        f"{dataset} {split}",
        {source: finders[source] for source in sources},
        f"Pass data_dir=..., or set ${DATA_DIR_ENV} to a directory holding "
        f"{SUBFOLDER}/{dataset}.npz.",
    )
    return _load_file(path, dataset, split)


def find_medmnist_file(data_dir: str | os.PathLike[str], dataset: DatasetName) -> Path:
    """Finds ``<dataset>.npz`` in ``data_dir/medmnist/`` or ``data_dir/``.

    Raises:
      ValueError: an unknown data set.
      FileNotFoundError: ``data_dir`` is not a directory, or neither folder holds the file
        (the message names the file and the folders).
    """
    _check_choice("dataset", dataset, CLASS_NAMES)
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory")
    name = f"{dataset}.npz"
    folders = (root / SUBFOLDER, root)
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    looked_in = " and ".join(str(folder) for folder in folders)
    raise FileNotFoundError(f"no {name} in {looked_in}")


def read_medmnist_npz(
    path: str | os.PathLike[str], dataset: DatasetName
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Reads and checks an official MedMNIST ``.npz`` file (no pickles are loaded).

    Returns:
      ``{split: (images, labels)}`` for every split in :data:`SPLITS`: ``uint8 [N, 28, 28]``
      images and ``int32 [N]`` labels, ``N`` and the label counts as in the official file.

    Raises:
      DataError: the file is not a readable ``.npz``, lacks an array, or an array's dtype,
        shape, size or label counts differ from the official file's; the message starts with
        the file's path.
    """
    _check_choice("dataset", dataset, CLASS_NAMES)
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = [f"{split}_{kind}" for split in SPLITS for kind in ("images", "labels")]
            missing = [key for key in keys if key not in npz.files]
            if missing:
                raise DataError(
                    f"{path}: no {', '.join(missing)} array(s); the file holds "
                    f"{', '.join(npz.files) or 'nothing'}"
                )
            arrays = {key: npz[key] for key in keys}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from exc
    return {
        split: _check_split(
            arrays[f"{split}_images"], arrays[f"{split}_labels"], path, dataset, split
        )
        for split in SPLITS
    }


def clear_cache() -> None:
    """Forgets the arrays cached by :func:`load_medmnist` (freed once unreferenced)."""
    _dataset_cached.cache_clear()
    _read_cached.cache_clear()


def _check_choice(what: str, value: Any, choices: Any) -> None:
    """Raises ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; expected one of {tuple(choices)}")


def _check_split(
    images: np.ndarray, labels: np.ndarray, path: Path, dataset: str, split: str
) -> tuple[np.ndarray, np.ndarray]:
    """Checks one split's arrays against the official file; returns images and int32 labels."""
    n = SPLIT_SIZES[dataset][split]
    where = f"{path}: {split}_images"
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{where} are {images.dtype} {images.shape}, expected uint8 (N, 28, 28)")
    if len(images) != n:
        raise DataError(f"{where} holds {len(images)} images, expected {n} ({dataset} {split})")
    where = f"{path}: {split}_labels"
    if not np.issubdtype(labels.dtype, np.integer) or labels.shape not in {(n,), (n, 1)}:
        raise DataError(f"{where} are {labels.dtype} {labels.shape}, expected integers ({n}, 1)")
    labels = labels.reshape(n)
    num_classes = len(CLASS_NAMES[dataset])
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        raise DataError(f"{where}: label {labels[bad][0]} out of range 0..{num_classes - 1}")
    counts = tuple(np.bincount(labels, minlength=num_classes).tolist())
    expected = LABEL_COUNTS[dataset][split]
    if counts != expected:
        raise DataError(
            f"{where}: {counts} images per label, expected {expected} (the official {dataset} "
            f"{split} split)"
        )
    return images, labels.astype(np.int32)


def _load_file(path: Path, dataset: str, split: str) -> Dataset:
    """Loads (or fetches from the cache) a split from its file."""
    path = path.resolve()
    stat = path.stat()
    return _dataset_cached(str(path), (stat.st_size, stat.st_mtime_ns), dataset, split)


@functools.lru_cache(maxsize=4)
def _read_cached(
    path: str, stamp: tuple[int, int], dataset: str
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``stamp`` (size, mtime) is only part of the key: a changed file is read again."""
    del stamp
    splits = read_medmnist_npz(path, dataset)  # type: ignore[arg-type]
    for images, labels in splits.values():
        images.flags.writeable = False
        labels.flags.writeable = False
    return splits


@functools.lru_cache(maxsize=12)
def _dataset_cached(path: str, stamp: tuple[int, int], dataset: str, split: str) -> Dataset:
    """One split as a :class:`Dataset`, from the cached file (``stamp`` as there)."""
    images, labels = _read_cached(path, stamp, dataset)[split]
    floats = (images.astype(np.float32) / np.float32(255.0))[..., None]
    floats.flags.writeable = False
    return Dataset(
        inputs=floats,
        labels=labels,
        name=dataset,
        split=split,
        source=str(Path(path).parent),
        class_names=CLASS_NAMES[dataset],
        domain=DOMAIN,
    )


def _registry_loader(dataset: DatasetName):
    def load(split: str, data_dir: Path | None) -> Dataset:
        return load_medmnist(split, data_dir=data_dir, dataset=dataset)  # type: ignore[arg-type]

    return load


register_dataset(
    "pneumoniamnist",
    _registry_loader("pneumoniamnist"),
    splits=SPLITS,
    description=(
        "PneumoniaMNIST chest X-rays, normal vs pneumonia: float32 [N, 28, 28, 1] in [0, 1], "
        "2 classes (train 4,708 / val 524 / test 624)"
    ),
    replace=True,  # a reloaded module re-registers
)
register_dataset(
    "breastmnist",
    _registry_loader("breastmnist"),
    splits=SPLITS,
    description=(
        "BreastMNIST breast ultrasound, malignant vs normal/benign: float32 [N, 28, 28, 1] in "
        "[0, 1], 2 classes (train 546 / val 78 / test 156)"
    ),
    replace=True,
)
