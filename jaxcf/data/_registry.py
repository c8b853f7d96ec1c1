"""A registry of data sets by name, so that configs and entry points name their data.

Each data-set module registers a loader when :mod:`jaxcf.data` is imported::

    register_dataset("mnist", _load, splits=("train", "test"), description="...")

and everything else loads through the registry::

    train = load_dataset("mnist", "train")          # -> Dataset
    dataset_names()                                 # ("fashion_mnist", "mnist", ...)

A loader is called as ``loader(split, data_dir)`` and returns a :class:`~jaxcf.data.Dataset`.
``data_dir`` is ``None`` unless the caller gave one; loaders then follow the project's lookup
order: an explicit ``data_dir`` only, else ``$JAXCF_DATA_DIR``, then ``../shared/data`` beside
the checkout, then TensorFlow Datasets (where the data set has a TFDS version). A loader never
copies data into the repository.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from pathlib import Path

from jaxcf.data._dataset import Dataset

Loader = Callable[[str, Path | None], Dataset]
"""``loader(split, data_dir) -> Dataset``."""

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A registered data set.

    Attributes:
      name: registry name (lower case letters, digits and ``_``).
      loader: ``loader(split, data_dir) -> Dataset``.
      splits: the split names the loader accepts.
      description: one line for listings.
    """

    name: str
    loader: Loader
    splits: tuple[str, ...]
    description: str = ""


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(
    name: str,
    loader: Loader,
    *,
    splits: tuple[str, ...] = ("train", "test"),
    description: str = "",
    replace: bool = False,
) -> DatasetSpec:
    """Registers ``loader`` under ``name`` and returns its :class:`DatasetSpec`.

    Raises:
      ValueError: a bad name or no splits, or ``name`` is taken and ``replace`` is False.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"data-set names use lower-case letters, digits and '_' (a letter or digit first), "
            f"got {name!r}"
        )
    if not callable(loader):
        raise TypeError(f"loader for {name!r} is not callable: {loader!r}")
    splits = tuple(splits)
    if not splits or not all(isinstance(s, str) and s for s in splits):
        raise ValueError(f"splits of {name!r} must be non-empty strings, got {splits!r}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"data set {name!r} is already registered; pass replace=True to replace")
    spec = DatasetSpec(name=name, loader=loader, splits=splits, description=description)
    _REGISTRY[name] = spec
    return spec


def unregister_dataset(name: str) -> None:
    """Removes ``name`` from the registry (for tests and plugins); unknown names raise."""
    dataset_spec(name)
    del _REGISTRY[name]


def dataset_names() -> tuple[str, ...]:
    """The registered data-set names, sorted."""
    return tuple(sorted(_REGISTRY))


def dataset_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` registered under ``name``.

    Raises:
      ValueError: ``name`` is not registered (the message lists the registered names).
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown data set {name!r}; registered: {', '.join(dataset_names()) or 'none'}"
        ) from None


def load_dataset(
    name: str, split: str = "train", data_dir: str | os.PathLike[str] | None = None
) -> Dataset:
    """Loads one split of a registered data set.

    Args:
      name: a registered name, see :func:`dataset_names`.
      split: one of the data set's splits (``dataset_spec(name).splits``).
      data_dir: a directory holding the data set's files; when given, only it is used.

    Returns:
      The :class:`~jaxcf.data.Dataset` the loader built.

    Raises:
      ValueError: an unknown name or split.
      FileNotFoundError: no source has the data (the loader's message says where it looked).
      DataError: files were found but are broken.
    """
    spec = dataset_spec(name)
    if split not in spec.splits:
        raise ValueError(f"unknown split {split!r} of {name!r}; expected one of {spec.splits}")
    dataset = spec.loader(split, None if data_dir is None else Path(data_dir))
    if not isinstance(dataset, Dataset):
        raise TypeError(
            f"the loader of {name!r} returned {type(dataset).__name__}, expected a Dataset"
        )
    return dataset
