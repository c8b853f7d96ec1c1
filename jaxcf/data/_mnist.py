"""MNIST and Fashion-MNIST as in-memory arrays, from IDX files or TensorFlow Datasets.

Both are registered in :mod:`jaxcf.data` as ``"mnist"`` and ``"fashion_mnist"``
(``load_dataset("mnist", "test")`` is ``load_mnist("test")``).

Where the data comes from:

1. an explicit ``data_dir`` argument. It must hold the files, else :class:`FileNotFoundError`
   naming what was looked for; nothing else is tried.
2. otherwise the ``sources`` in order, by default ``("env", "shared", "tfds")``:

   * ``"env"``: the directory in ``$JAXCF_DATA_DIR``. Unset or empty: skipped. Set, but the
     directory does not hold this data set's files: skipped with a :class:`UserWarning`
     (a setting that is silently ignored is worse than a noisy one).
   * ``"shared"``: ``../shared/data`` beside the checkout, see :func:`default_data_dir`.
   * ``"tfds"``: ``tfds.data_source(name, split=...)``, which needs no TensorFlow to read a
     prepared data set and downloads it on machines with internet access.

   A source that does not *have* the data is skipped and the next one tried. A source that
   has the files but whose files are broken raises :class:`~jaxcf.data.DataError` at once:
   silently replacing a corrupt copy by another one would hide the problem. When every
   source is skipped, :class:`FileNotFoundError` lists each one and why it was skipped.

A data directory holds the four IDX files either in a subfolder named after the data set
(``<dir>/mnist/t10k-images-idx3-ubyte.gz``, ``<dir>/fashion_mnist/...``; tried first) or
directly (``<dir>/t10k-images-idx3-ubyte.gz``), gzip-compressed (``.gz``, preferred when both
exist) or not. Files found directly in a folder named after the *other* data set (e.g. asking
for ``fashion_mnist`` in ``.../mnist``) are not used.

Loads from files are cached in-process on the resolved paths (and their size and
modification time), so repeated calls are cheap and return the same :class:`Dataset`, whose
arrays are therefore read-only. Loads from TFDS are not cached.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from jaxcf.data._dataset import Dataset
from jaxcf.data._idx import DataError, read_idx_images, read_idx_labels
from jaxcf.data._lookup import (
    DATA_DIR_ENV,
    SourceUnavailable,
    check_sources,
    first_available,
    from_env,
    from_shared,
)
from jaxcf.data._registry import register_dataset

Split = Literal["train", "test"]
DatasetName = Literal["mnist", "fashion_mnist"]
Source = Literal["env", "shared", "tfds"]

"""Environment variable naming a data directory, tried after an explicit ``data_dir``."""
DEFAULT_SOURCES: tuple[Source, ...] = ("env", "shared", "tfds")
"""Sources tried, in order, when no ``data_dir`` is given."""

MNIST_CLASS_NAMES: tuple[str, ...] = tuple(str(digit) for digit in range(10))
FASHION_MNIST_CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": MNIST_CLASS_NAMES,
    "fashion_mnist": FASHION_MNIST_CLASS_NAMES,
}
"""Class names by data set; label ``k`` is ``CLASS_NAMES[name][k]``."""
SPLIT_SIZES: dict[str, int] = {"train": 60_000, "test": 10_000}
"""Number of examples an IDX split must have (both data sets)."""

IMAGE_SHAPE = (28, 28)
DOMAIN = (0.0, 1.0)
"""Pixel intensities are raw bytes / 255, so every input lies in ``[0, 1]``."""
_FILE_PREFIX = {"train": "train", "test": "t10k"}


def load_mnist(
    split: Split = "train",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    dataset: DatasetName = "mnist",
    sources: Sequence[Source] | None = None,
) -> Dataset:
    """Loads one split of MNIST or Fashion-MNIST.

    Args:
      split: ``"train"`` (60,000 examples) or ``"test"`` (10,000).
      data_dir: a directory holding the IDX files (directly or in ``<data_dir>/<dataset>/``).
        When given, only this directory is used.
      dataset: ``"mnist"`` or ``"fashion_mnist"``.
      sources: the sources to try, in order, when ``data_dir`` is not given; any of
        ``"env"``, ``"shared"``, ``"tfds"``. Default :data:`DEFAULT_SOURCES`. For example
        ``sources=("tfds",)`` forces TensorFlow Datasets.

    Returns:
      A :class:`Dataset` with ``float32 [N, 28, 28, 1]`` images in ``[0, 1]`` (also its
      ``domain``) and ``int32 [N]`` labels.

    Raises:
      ValueError: an unknown split, data set or source, or both ``data_dir`` and ``sources``.
      FileNotFoundError: ``data_dir`` lacks the files, or no source has the data (the message
        lists each source tried and why it failed).
      DataError: files were found but are corrupt or do not hold the expected data.
    """
    _check_choice("split", split, SPLIT_SIZES)
    _check_choice("dataset", dataset, CLASS_NAMES)
    if data_dir is not None:
        if sources is not None:
            raise ValueError("pass either data_dir or sources, not both")
        images_path, labels_path = find_idx_files(data_dir, dataset, split)
        return _load_idx_pair(images_path, labels_path, dataset, split)

    sources = check_sources(sources, DEFAULT_SOURCES)
    return first_available(
        f"{dataset} {split}",
        {source: functools.partial(_SOURCE_LOADERS[source], dataset, split) for source in sources},
        f"Pass data_dir=..., or set ${DATA_DIR_ENV} to a directory holding the IDX files.",
    )


def idx_file_stems(split: Split) -> tuple[str, str]:
    """Returns the IDX file names, without ``.gz``, of a split: ``(images, labels)``."""
    _check_choice("split", split, SPLIT_SIZES)
    prefix = _FILE_PREFIX[split]
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def find_idx_files(
    data_dir: str | os.PathLike[str], dataset: DatasetName, split: Split
) -> tuple[Path, Path]:
    """Finds a split's image and label files in ``data_dir/<dataset>/`` or ``data_dir/``.

    Returns:
      ``(images_path, labels_path)``, both existing, in the same folder.

    Raises:
      FileNotFoundError: ``data_dir`` is not a directory, only one of the two files is
        there, or neither folder holds them; the message names the folders and files.
    """
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory")
    stems = idx_file_stems(split)
    folders = [root / dataset]
    other_named = root.name in CLASS_NAMES and root.name != dataset
    if not other_named:
        folders.append(root)
    for folder in folders:
        images, labels = (_first_existing(folder, stem) for stem in stems)
        if images and labels:
            return images, labels
        if images or labels:
            found, missing = (images, stems[1]) if images else (labels, stems[0])
            raise FileNotFoundError(f"{folder}: found {found.name} but not {missing}[.gz]")
    looked_in = " and ".join(str(folder) for folder in folders)
    note = f" ({root} itself is not used: it is named for {root.name!r})" if other_named else ""
    raise FileNotFoundError(
        f"no {dataset} {split} files in {root}: looked for {stems[0]}[.gz] and "
        f"{stems[1]}[.gz] in {looked_in}{note}"
    )


def clear_cache() -> None:
    """Forgets the arrays cached by :func:`load_mnist` (they are freed once unreferenced)."""
    _load_idx_pair_cached.cache_clear()


def _check_choice(what: str, value: Any, choices: Any) -> None:
    """Raises ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; expected one of {tuple(choices)}")


def _first_existing(folder: Path, stem: str) -> Path | None:
    """Returns ``folder/stem.gz`` or ``folder/stem``, whichever exists first, else ``None``."""
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _load_from_env(dataset: DatasetName, split: Split) -> Dataset:
    """Loads from ``$JAXCF_DATA_DIR``; unset, or set without the files: unavailable."""
    paths = from_env(lambda d: find_idx_files(d, dataset, split), f"{dataset} {split}")
    return _load_idx_pair(*paths, dataset, split)


def _load_from_shared(dataset: DatasetName, split: Split) -> Dataset:
    """Loads from :func:`default_data_dir`; missing directory or files: unavailable."""
    paths = from_shared(lambda d: find_idx_files(d, dataset, split))
    return _load_idx_pair(*paths, dataset, split)


def _load_from_tfds(dataset: DatasetName, split: Split) -> Dataset:
    """Loads through ``tfds.data_source``; any failure to get the examples: unavailable.

    TFDS's own images are ``uint8 [28, 28, 1]`` and labels ``int64`` scalars; they are
    checked and converted exactly like the IDX arrays. The number of examples is not
    checked against :data:`SPLIT_SIZES` (TFDS verifies its own data; mocks make fewer).
    """
    try:
        import tensorflow_datasets as tfds  # Imported here: slow, and only needed here.

        source = tfds.data_source(dataset, split=split)
        # One by one: `__getitems__` is not supported by `tfds.testing.mock_data`.
        examples = [source[i] for i in range(len(source))]
    except Exception as exc:  # Any failure here means "TFDS cannot provide it".
        raise SourceUnavailable(f"{type(exc).__name__}: {exc}") from exc
    where = f"tfds:{dataset}/{split}"
    if not examples:
        raise DataError(f"{where}: the split is empty")
    images = np.stack([np.asarray(example["image"]) for example in examples])
    labels = np.asarray([example["label"] for example in examples])
    if images.dtype != np.uint8 or images.shape[1:] != (*IMAGE_SHAPE, 1):
        raise DataError(
            f"{where}: images are {images.dtype} {images.shape[1:]}, expected uint8 (28, 28, 1)"
        )
    _check_labels(labels, where)
    return _make_dataset(images[..., 0], labels, dataset, split, source="tfds")


_SOURCE_LOADERS = {"env": _load_from_env, "shared": _load_from_shared, "tfds": _load_from_tfds}


def _load_idx_pair(
    images_path: Path, labels_path: Path, dataset: DatasetName, split: Split
) -> Dataset:
    """Loads (or fetches from the cache) a split from its two IDX files."""
    images_path, labels_path = images_path.resolve(), labels_path.resolve()
    stats = (images_path.stat(), labels_path.stat())
    stamp = tuple((stat.st_size, stat.st_mtime_ns) for stat in stats)
    return _load_idx_pair_cached(str(images_path), str(labels_path), stamp, dataset, split)


@functools.lru_cache(maxsize=8)
def _load_idx_pair_cached(
    images_path: str, labels_path: str, stamp: tuple[Any, ...], dataset: str, split: str
) -> Dataset:
    """Reads and checks the two files; ``stamp`` (sizes, mtimes) is only part of the key."""
    del stamp
    count = SPLIT_SIZES[split]
    images = read_idx_images(images_path, expected_count=count, expected_shape=IMAGE_SHAPE)
    labels = read_idx_labels(labels_path, expected_count=count)
    _check_labels(labels, labels_path)
    source = str(Path(images_path).parent)
    return _make_dataset(images, labels, dataset, split, source=source)


def _check_labels(labels: np.ndarray, where: str) -> None:
    """Raises :class:`DataError` unless ``labels`` are integers in ``0..9``."""
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: labels are {labels.dtype}, expected integers")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        bad = labels[(labels < 0) | (labels > 9)][0]
        raise DataError(f"{where}: label {bad} out of range 0..9")


def _make_dataset(
    images: np.ndarray, labels: np.ndarray, dataset: str, split: str, *, source: str
) -> Dataset:
    """Converts ``uint8 [N, 28, 28]`` images and integer ``[N]`` labels into a :class:`Dataset`."""
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{source}: {images.shape[0]} images but {labels.shape[0]} labels in {dataset} {split}"
        )
    floats = (images.astype(np.float32) / np.float32(255.0))[..., None]
    ints = labels.astype(np.int32)
    floats.flags.writeable = False
    ints.flags.writeable = False
    return Dataset(
        inputs=floats,
        labels=ints,
        name=dataset,
        split=split,
        source=source,
        class_names=CLASS_NAMES[dataset],
        domain=DOMAIN,
    )


def _registry_loader(dataset: DatasetName):
    def load(split: str, data_dir: Path | None) -> Dataset:
        return load_mnist(split, data_dir=data_dir, dataset=dataset)  # type: ignore[arg-type]

    return load


register_dataset(
    "mnist",
    _registry_loader("mnist"),
    splits=tuple(SPLIT_SIZES),
    description="MNIST digits: float32 [N, 28, 28, 1] in [0, 1], 10 classes",
    replace=True,  # a reloaded module re-registers
)
register_dataset(
    "fashion_mnist",
    _registry_loader("fashion_mnist"),
    splits=tuple(SPLIT_SIZES),
    description="Fashion-MNIST clothing: float32 [N, 28, 28, 1] in [0, 1], 10 classes",
    replace=True,
)
