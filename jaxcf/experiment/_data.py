"""Where an experiment's queries come from, and how they reach the runner a chunk at a time.

A :class:`DataSpec` names a source and a split: a registered data set by name (``"mnist"``),
or a user's data: :class:`ImageFiles` (a folder of images, one sub-folder per class),
:class:`TFDS` (a TensorFlow Datasets split, read through its random-access source),
:class:`NpyFiles` (a directory of ``.npy`` files) or :class:`TableFile` (a CSV or Parquet table
with declared columns and constraints). Each opens as a :class:`~jaxcf.data.RowReader` per
split: the queries' split, and the training split a density is fitted on.

The queries are the first ``queries`` rows of a seeded permutation of the split. They are never
all read at once: :class:`QueryRows` is a runner source that reads each chunk's rows from the
reader when the runner asks for them, with the targets (small) in memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from jaxcf.core import validation
from jaxcf.data import (
    DatasetReader,
    ImageFolder,
    NpyFolder,
    RowReader,
    TFDSSplit,
    load_dataset,
    read_table,
    table_schema,
)
from jaxcf.data import (
    TableFile as TableReader,
)
from jaxcf.tabular import Constraints


def _path(value: Any, name: str, owner: str) -> str:
    if not isinstance(value, str | os.PathLike) or not str(value):
        raise ValueError(f"{owner}.{name} must be a path, got {value!r}")
    return str(value)


@dataclasses.dataclass(frozen=True)
class ImageFiles:
    """A folder of image files, one sub-folder per class (named after it), e.g.
    ``<path>/<split>/cat/1.png``.

    Attributes:
      path: the folder holding one folder per split (``train/``, ``test/``).
      image_size: ``(H, W)`` the model takes; images are resized to it.
      channels: 1 (grey) or 3 (RGB).
      class_names: the classes in the model's label order (default: sorted folder names).
    """

    path: str
    image_size: tuple[int, int]
    channels: int = 3
    class_names: tuple[str, ...] | None = None

    def __post_init__(self):
        object.__setattr__(self, "path", _path(self.path, "path", "ImageFiles"))
        validation.one_of(self, "channels", (1, 3))
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise ValueError(f"ImageFiles.image_size must be (H, W), got {self.image_size!r}")
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))

    def open(self, split: str) -> RowReader:
        return ImageFolder(
            Path(self.path) / split, self.image_size, self.channels, self.class_names
        )


@dataclasses.dataclass(frozen=True)
class TFDS:
    """A TensorFlow Datasets data set, read through ``tfds.data_source`` (no TensorFlow needed
    to read a prepared data set; it downloads on machines with internet).

    Attributes:
      name: the TFDS name (``"mnist"``, ``"cifar10"``, ...).
      data_dir: where TFDS keeps its data (``None``: its default).
      image_key, label_key: the input and class features.
    """

    name: str
    data_dir: str | None = None
    image_key: str = "image"
    label_key: str = "label"

    def open(self, split: str) -> RowReader:
        return TFDSSplit(self.name, split, self.data_dir, self.image_key, self.label_key)


@dataclasses.dataclass(frozen=True)
class NpyFiles:
    """A directory with one folder per split, each holding ``x.npy`` (``[N, ...]`` inputs) and
    ``labels.npy`` (``[N]`` classes), e.g. ``<path>/test/x.npy``.

    Attributes:
      path: the directory.
      domain: the box the inputs lie in, or ``None`` (unbounded).
      class_names: one name per class, if known.
    """

    path: str
    domain: tuple[float, float] | None = None
    class_names: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "path", _path(self.path, "path", "NpyFiles"))

    def open(self, split: str) -> RowReader:
        return NpyFolder(Path(self.path) / split, self.domain, self.class_names)


@dataclasses.dataclass(frozen=True)
class TableFile:
    """A table (CSV with a header line, or Parquet) per split, ``<path>/<split>.csv``, its
    features declared by kind and encoded with a transform fitted on the training split.

    Attributes:
      path: the folder holding ``train.csv`` and ``test.csv`` (or ``.parquet``).
      label_column: the column holding each row's class.
      categorical, numeric: the feature columns by kind (encoding order: categorical first).
      integer: numeric columns holding integers.
      label_classes: the label values in the model's class order (default: sorted).
      immutable: columns a counterfactual must keep.
      increasing: numeric columns a counterfactual may only increase.
      fixed: columns the user keeps fixed in this experiment (counted like immutable ones).
    """

    path: str
    label_column: str
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    integer: tuple[str, ...] = ()
    label_classes: tuple[str, ...] | None = None
    immutable: tuple[str, ...] = ()
    increasing: tuple[str, ...] = ()
    fixed: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "path", _path(self.path, "path", "TableFile"))
        for name in ("categorical", "numeric", "integer", "immutable", "increasing", "fixed"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise ValueError(f"TableFile.{name} must be a tuple of column names, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if not self.categorical and not self.numeric:
            raise ValueError("TableFile declares no feature columns (categorical, numeric)")

    def file(self, split: str) -> Path:
        """``<path>/<split>.csv`` or ``.parquet``."""
        for suffix in (".csv", ".parquet"):
            candidate = Path(self.path) / f"{split}{suffix}"
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"no {split}.csv or {split}.parquet in {self.path}")

    def open(self, split: str) -> TableReader:
        train = self.file("train")
        schema = table_schema(
            read_table(train),
            categorical=self.categorical,
            numeric=self.numeric,
            integer=self.integer,
        )
        self.constraints.check(schema)
        for name in self.fixed:
            schema.index(name)  # an unknown column raises, naming the schema's
        return TableReader(
            self.file(split),
            schema,
            self.label_column,
            label_classes=self.label_classes,
            fit_path=train,
        )

    @property
    def constraints(self) -> Constraints:
        return Constraints(immutable=self.immutable, increasing=self.increasing)


Source = str | ImageFiles | TFDS | NpyFiles | TableFile


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """The queries: the first ``queries`` rows of a seeded permutation of a split.

    Attributes:
      source: a registered data set's name (``jaxcf.dataset_names()``), or a user's data
        (:class:`ImageFiles`, :class:`TFDS`, :class:`NpyFiles`, :class:`TableFile`).
      split: the split explained.
      train_split: the split a density is fitted on, when a method needs one.
      queries: how many (``None``: the whole split).
      seed: seeds the permutation the queries are drawn from.
      train_rows: how many rows of the training split a density is fitted on (a seeded draw;
        ``None``: all of them).
    """

    source: Source
    split: str = "test"
    train_split: str = "train"
    queries: int | None = 100
    seed: int = 0
    train_rows: int | None = None

    def __post_init__(self):
        if isinstance(self.source, str):
            if not self.source:
                raise ValueError("DataSpec.source must name a data set")
        elif not isinstance(self.source, ImageFiles | TFDS | NpyFiles | TableFile):
            raise TypeError(
                "DataSpec.source must be a registered data set's name or ImageFiles, TFDS, "
                f"NpyFiles or TableFile, got {type(self.source).__name__}"
            )
        for name in ("queries", "train_rows"):
            if getattr(self, name) is not None:
                validation.at_least(self, 1, name)
        validation.at_least(self, 0, "seed")

    @property
    def name(self) -> str:
        """A short name of the source for reports."""
        if isinstance(self.source, str):
            return self.source
        return getattr(self.source, "name", None) or Path(self.source.path).name

    def open(self, split: str | None = None) -> RowReader:
        """A reader of ``split`` (default: the queries' split)."""
        split = split or self.split
        if isinstance(self.source, str):
            return DatasetReader(load_dataset(self.source, split))
        return self.source.open(split)

    def rows(self, reader: RowReader) -> np.ndarray:
        """The query rows of ``reader``: ``int64 [n]`` indices."""
        n = len(reader) if self.queries is None else min(self.queries, len(reader))
        return np.random.default_rng(self.seed).permutation(len(reader))[:n]

    def training_rows(self, reader: RowReader) -> np.ndarray:
        """The rows of the training split's ``reader`` that models are fitted on, in order."""
        if self.train_rows is None or self.train_rows >= len(reader):
            return np.arange(len(reader))
        return np.sort(np.random.default_rng(self.seed).permutation(len(reader))[: self.train_rows])


def blocks(reader: RowReader, rows: np.ndarray, size: int = 512) -> Iterator[np.ndarray]:
    """The inputs of ``rows`` a block of ``size`` at a time (``float32 [<= size, ...]``)."""
    for start in range(0, len(rows), size):
        yield reader.read(rows[start : start + size])[0]


class QueryRows:
    """A runner source (:class:`~jaxcf.runner.QuerySource`) over a reader's rows: ``x`` read
    from the reader when the runner asks for a chunk, ``target`` and ``group`` in memory.

    Args:
      reader: the data.
      rows: ``[M]`` the reader's row of each query (repeated when a query has several
        targets).
      target: ``[M]`` class indices, ``[M, C]`` distributions or ``[M]`` values.
      group: ``[M]`` int group ids (default 0).
      source_class: ``[M]`` the classifier's predicted class of each query, for reports
        (``None``: not known).
    """

    def __init__(
        self,
        reader: RowReader,
        rows: np.ndarray,
        target: np.ndarray,
        group: np.ndarray | None = None,
        source_class: np.ndarray | None = None,
    ):
        self.reader = reader
        self.source_class = source_class
        self.rows = np.asarray(rows, np.int64)
        self.target = np.asarray(target)
        self.group = np.zeros(len(self.rows), np.int32) if group is None else np.asarray(group)
        if not (len(self.rows) == len(self.target) == len(self.group)) or not len(self.rows):
            raise ValueError(
                f"rows, target and group must have one entry per query (and some), got "
                f"{len(self.rows)}, {len(self.target)}, {len(self.group)}"
            )

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def columns(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        return {
            "x": (tuple(self.reader.input_shape), np.dtype(np.float32)),
            "target": (tuple(self.target.shape[1:]), self.target.dtype),
            "group": ((), self.group.dtype),
        }

    def read(self, start: int, stop: int) -> dict[str, np.ndarray]:
        if not 0 <= start < stop <= len(self):
            raise IndexError(f"rows [{start}, {stop}) outside a source of {len(self)} rows")
        x, _ = self.reader.read(self.rows[start:stop])
        return {"x": x, "target": self.target[start:stop], "group": self.group[start:stop]}

    def identity(self) -> dict[str, Any]:
        h = hashlib.sha256()
        for a in (self.rows, self.target, self.group):
            h.update(f"{a.dtype}:{a.shape}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return {"kind": "query_rows", "data": self.reader.identity(), "sha256": h.hexdigest()}
