"""ECG5000 heartbeats as a binary task (normal vs abnormal), from the UCR archive's TSV files.

Registered in :mod:`jaxcf.data` as ``"ecg5000"`` (``load_dataset("ecg5000", "test")``
is ``load_ecg5000("test")``).

The data: 5,000 beats of one patient (record chf07 of the BIDMC Congestive Heart Failure
Database), each resampled to 140 points and z-normalised per beat by the archive. The archive
labels them 1..5; as in Van Looveren et al. (2021, "Conditional Generative Models for
Counterfactual Explanations") class 1 is *normal* (label 0) and classes 2..5, different
abnormal beats, are merged into *abnormal* (label 1).

Splits, reversed from the archive's: the paper trains on 4,500 beats and evaluates on 500, the
archive's split is 500 (``ECG5000_TRAIN.tsv``) / 4,500 (``ECG5000_TEST.tsv``). Here

* ``"train"`` is the archive's **TEST** file: 4,500 beats (2,627 normal, 1,873 abnormal);
* ``"test"`` is the archive's **TRAIN** file: 500 beats (292 normal, 208 abnormal).

The archive's files are sorted by class (all normal beats first), so the first ``n`` beats of
either would be one class: each split comes in a fixed random order instead (the permutation
of ``numpy.random.default_rng(ORDER_SEED)``, the same on every load), so that ``inputs[:n]``
or ``TrainConfig.train_examples`` take a representative sample. ``archive_rows`` says which
line of its file each beat was (``inputs[i]`` is line ``archive_rows[i] + 1``) and
``archive_labels`` its class 1..5.

Inputs are ``float32 [N, 140, 1]`` (``[N, T, C]``: time, one channel), standardised with one
mean and one standard deviation over every value of the ``"train"`` split (both splits use
the training statistics, so no information flows from the test split). Since the archive
already z-normalised each beat, this is nearly the identity (mean ~1e-11, std 0.99642: the
archive divides by the sample std, we by the population one) but keeps the contract that
model inputs have zero mean and unit variance over the training set whatever files are used.
The split returned (an :class:`ECG5000Dataset`) carries its :class:`Standardization`, so
``dataset.standardization.invert(x)`` gives values in the archive's units. ``domain`` is
``None``: standardised values are unbounded.

Where the data comes from: an explicit ``data_dir`` only, else ``$JAXCF_DATA_DIR``, then the
shared data folder beside the checkout (:func:`~jaxcf.data.default_data_dir`; there is no
TensorFlow Datasets version). A directory holds ``ECG5000_TRAIN.tsv`` and ``ECG5000_TEST.tsv``
(tab separated, one beat per line: the label, then 140 values) in a subfolder ``ecg5000/``
(tried first) or directly. Both files are needed for either split: the statistics come from the
training split. As for MNIST, a ``$JAXCF_DATA_DIR`` without the files is skipped with a
warning, and files that exist but are broken raise :class:`~jaxcf.data.DataError` rather than
falling through to another source. Parsed files are cached in-process on their resolved paths,
sizes and modification times; the cached arrays are read-only.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from jaxcf.data._dataset import Dataset
from jaxcf.data._idx import DataError
from jaxcf.data._lookup import DATA_DIR_ENV, check_sources, first_available, from_env, from_shared
from jaxcf.data._registry import register_dataset

Split = Literal["train", "test"]
Source = Literal["env", "shared"]

NAME = "ecg5000"
DEFAULT_SOURCES: tuple[Source, ...] = ("env", "shared")
"""Sources tried, in order, when no ``data_dir`` is given."""
CLASS_NAMES: tuple[str, ...] = ("normal", "abnormal")
"""Label 0 is the archive's class 1; label 1 its classes 2..5."""
ARCHIVE_CLASSES: tuple[int, ...] = (1, 2, 3, 4, 5)
"""The labels the archive's files may hold."""
SERIES_LENGTH = 140
"""Values per beat (the files' columns after the label)."""
ARCHIVE_FILES: dict[str, str] = {"train": "ECG5000_TEST.tsv", "test": "ECG5000_TRAIN.tsv"}
"""The archive file each split is read from (reversed on purpose, see the module docstring)."""
SPLIT_SIZES: dict[str, int] = {"train": 4_500, "test": 500}
"""Number of beats each split's file must hold."""
ORDER_SEED = 0
"""Seed of the fixed permutation each split's beats come in (the files are sorted by class)."""


@dataclasses.dataclass(frozen=True)
class Standardization:
    """The affine map from the archive's values to model inputs: ``(raw - mean) / std``.

    Attributes:
      mean: mean of every value of the training split (archive units).
      std: their population standard deviation (> 0, archive units).
    """

    mean: float
    std: float

    def apply(self, raw: Any) -> Any:
        """Archive values -> model inputs (any array, any shape)."""
        return (raw - self.mean) / self.std

    def invert(self, x: Any) -> Any:
        """Model inputs -> archive values (any array, any shape)."""
        return x * self.std + self.mean


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class ECG5000Dataset(Dataset):
    """A split of ECG5000: a :class:`Dataset` with what the binary task leaves out.

    Attributes (beyond :class:`Dataset`'s):
      standardization: the map the inputs went through (the training split's statistics);
        ``standardization.invert(inputs)`` gives the archive's values.
      archive_labels: ``int32 [N]`` each beat's class in the archive, 1..5 (``labels`` is
        ``archive_labels != 1``).
      archive_rows: ``int32 [N]`` each beat's 0-based line in its archive file.
    """

    standardization: Standardization = Standardization(0.0, 1.0)
    archive_labels: np.ndarray | None = None
    archive_rows: np.ndarray | None = None


def load_ecg5000(
    split: Split = "train",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    sources: Sequence[Source] | None = None,
) -> ECG5000Dataset:
    """Loads one split of ECG5000 as normal (0) vs abnormal (1) beats.

    Args:
      split: ``"train"`` (4,500 beats, the archive's TEST file) or ``"test"`` (500 beats, the
        archive's TRAIN file).
      data_dir: a directory holding both TSV files (directly or in ``<data_dir>/ecg5000/``).
        When given, only this directory is used.
      sources: the sources to try, in order, when ``data_dir`` is not given: ``"env"``
        (``$JAXCF_DATA_DIR``) and/or ``"shared"`` (:func:`~jaxcf.data.default_data_dir`).
        Default :data:`DEFAULT_SOURCES`.

    Returns:
      An :class:`ECG5000Dataset`: ``float32 [N, 140, 1]`` inputs standardised with the
      training split's mean and std (its ``standardization``), ``int32 [N]`` labels in {0, 1},
      class names ``("normal", "abnormal")``, ``domain=None``, beats in the fixed order of
      :data:`ORDER_SEED` (``archive_rows`` maps them back to the file).

    Raises:
      ValueError: an unknown split or source, or both ``data_dir`` and ``sources``.
      FileNotFoundError: ``data_dir`` lacks the files, or no source has them (the message
        lists each source tried and why it failed).
      DataError: a file was found but is malformed: wrong number of columns or rows, a value
        that is not a finite number, or a label outside 1..5.
    """
    _check_choice("split", split, SPLIT_SIZES)
    if data_dir is not None:
        if sources is not None:
            raise ValueError("pass either data_dir or sources, not both")
        return _load_files(find_ecg5000_files(data_dir), split)

    sources = check_sources(sources, DEFAULT_SOURCES)
    files = first_available(
        f"{NAME} {split}",
        {source: _SOURCE_FINDERS[source] for source in sources},
        f"Pass data_dir=..., or set ${DATA_DIR_ENV} to a directory holding "
        f"{NAME}/{ARCHIVE_FILES['train']} and {NAME}/{ARCHIVE_FILES['test']}.",
    )
    return _load_files(files, split)


def ecg5000_standardization(
    *, data_dir: str | os.PathLike[str] | None = None, sources: Sequence[Source] | None = None
) -> Standardization:
    """The training split's :class:`Standardization` (what every split's inputs went through)."""
    return load_ecg5000("train", data_dir=data_dir, sources=sources).standardization


def find_ecg5000_files(data_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Finds both TSV files in ``data_dir/ecg5000/`` or ``data_dir/``.

    Returns:
      ``{"train": path, "test": path}`` (see :data:`ARCHIVE_FILES`), both in one folder.

    Raises:
      FileNotFoundError: ``data_dir`` is not a directory, or neither folder holds both files
        (the message names the folders and files).
    """
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory")
    folders = [root / NAME, root]
    for folder in folders:
        paths = {split: folder / name for split, name in ARCHIVE_FILES.items()}
        present = [p for p in paths.values() if p.is_file()]
        if len(present) == len(paths):
            return paths
        if present:
            missing = next(p.name for p in paths.values() if not p.is_file())
            # Both files are needed for either split: the statistics come from the training one.
            raise FileNotFoundError(f"{folder}: found {present[0].name} but not {missing}")
    looked_in = " and ".join(str(folder) for folder in folders)
    raise FileNotFoundError(
        f"no {NAME} files in {root}: looked for {' and '.join(ARCHIVE_FILES.values())} "
        f"in {looked_in}"
    )


def read_ucr_tsv(
    path: str | os.PathLike[str], *, expected_count: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Reads a UCR-2018 TSV file of ECG5000: one beat per line, the label then 140 values.

    Returns:
      ``(values, labels)``: ``float64 [N, 140]`` and the archive's ``int32 [N]`` labels (1..5).

    Raises:
      DataError: (message starting with the path) an empty file, a line with another number of
        fields, a field that is not a number, a non-finite value, a label that is not one of
        1..5, or not ``expected_count`` lines.
    """
    path = Path(path)
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise DataError(f"{path}: the file is empty")
    rows = [line.rstrip("\r\n").split("\t") for line in lines]
    for number, row in enumerate(rows, start=1):
        if len(row) != 1 + SERIES_LENGTH:
            raise DataError(
                f"{path}: line {number} has {len(row)} tab-separated fields, expected "
                f"{1 + SERIES_LENGTH} (a label, then {SERIES_LENGTH} values)"
            )
    try:
        table = np.array(rows, dtype=np.float64)
    except ValueError:
        number, field = _first_non_number(rows)
        raise DataError(f"{path}: line {number} holds {field!r}, which is not a number") from None
    bad = ~np.isfinite(table)
    if bad.any():
        number, column = (int(i) for i in np.argwhere(bad)[0])
        raise DataError(
            f"{path}: line {number + 1}, column {column + 1} is {table[number, column]}, "
            "expected a finite number"
        )
    raw_labels = table[:, 0]
    known = np.isin(raw_labels, ARCHIVE_CLASSES)
    if not known.all():
        number = int(np.argmin(known))
        raise DataError(
            f"{path}: line {number + 1} has label {raw_labels[number]:g}, expected one of "
            f"{', '.join(map(str, ARCHIVE_CLASSES))}"
        )
    if expected_count is not None and len(table) != expected_count:
        raise DataError(f"{path}: {len(table)} beats, expected {expected_count}")
    return table[:, 1:], raw_labels.astype(np.int32)


def clear_cache() -> None:
    """Forgets the arrays cached by :func:`load_ecg5000`."""
    _read_cached.cache_clear()


def _first_non_number(rows: list[list[str]]) -> tuple[int, str]:
    """``(line number, field)`` of the first field ``float`` refuses (only called after
    ``np.array`` refused one)."""
    for number, row in enumerate(rows, start=1):
        for field in row:
            try:
                float(field)
            except ValueError:
                return number, field
    raise AssertionError("no field refused")  # pragma: no cover: numpy refused one


def _check_choice(what: str, value: Any, choices: Any) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; expected one of {tuple(choices)}")


_SOURCE_FINDERS = {
    "env": lambda: from_env(find_ecg5000_files, NAME),
    "shared": lambda: from_shared(find_ecg5000_files),
}


def _read(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads (or fetches from the cache) one split's file."""
    path = path.resolve()
    stat = path.stat()
    return _read_cached(str(path), (stat.st_size, stat.st_mtime_ns), split)


@functools.lru_cache(maxsize=4)
def _read_cached(path: str, stamp: tuple[int, int], split: str) -> tuple[np.ndarray, np.ndarray]:
    """``stamp`` (size, mtime) is only part of the key: a changed file is read again."""
    del stamp
    values, labels = read_ucr_tsv(path, expected_count=SPLIT_SIZES[split])
    values.flags.writeable = False
    labels.flags.writeable = False
    return values, labels


def _load_files(paths: dict[str, Path], split: str) -> ECG5000Dataset:
    """Builds a split from its file, standardised with the training file's statistics."""
    train_values, _ = _read(paths["train"], "train")
    mean, std = float(train_values.mean()), float(train_values.std())
    if not std > 0:
        raise DataError(f"{paths['train']}: every value is {mean}; cannot standardise")
    standardization = Standardization(mean=mean, std=std)
    values, archive_labels = _read(paths[split], split)
    # The files are sorted by class: a fixed shuffle makes every prefix a fair sample.
    rows = np.random.default_rng(ORDER_SEED).permutation(len(values)).astype(np.int32)
    inputs = standardization.apply(values[rows]).astype(np.float32)[..., None]
    archive_labels = archive_labels[rows]
    labels = (archive_labels != 1).astype(np.int32)  # class 1 is normal, 2..5 abnormal beats
    for array in (inputs, labels, archive_labels, rows):
        array.flags.writeable = False
    return ECG5000Dataset(
        inputs=inputs,
        labels=labels,
        name=NAME,
        split=split,
        source=str(paths[split].resolve().parent),
        class_names=CLASS_NAMES,
        domain=None,
        standardization=standardization,
        archive_labels=archive_labels,
        archive_rows=rows,
    )


def _registry_loader(split: str, data_dir: Path | None) -> Dataset:
    return load_ecg5000(split, data_dir=data_dir)  # type: ignore[arg-type]


register_dataset(
    NAME,
    _registry_loader,
    splits=tuple(SPLIT_SIZES),
    description=(
        "ECG5000 heartbeats, normal vs abnormal: float32 [N, 140, 1] standardised with the "
        "training split's mean and std, 2 classes (train 4,500 / test 500)"
    ),
    replace=True,  # a reloaded module re-registers
)
