"""UCI Adult (census income) as mixed-type rows and as their 85-dimensional encoding.

Registered as ``"adult"`` (splits ``"train"`` = ``adult.data``, 32,561 rows, and ``"test"`` =
``adult.test``, 16,281 rows): ``load_dataset("adult", split)`` gives ``float32 [N, 85]``
encodings (:data:`ADULT_TRANSFORM_DIM`) from the :class:`~jaxcf.tabular.TabularTransform`
fitted on the train split, ``int32`` labels (income ``>50K`` = 1) and ``domain=None``.

Preprocessing follows alibi's ``fetch_adult``, which the conditional-generator paper (Van
Looveren et al. 2021) used: ``fnlwgt`` and ``education-num`` are dropped, leaving 12 features
(:data:`FEATURES`), 4 numeric (age, capital gain, capital loss, hours per week; all integers)
and 8 categorical, four of which are grouped: education into 7 levels, marital status into 4,
occupation into 8 groups, country into regions (:data:`GROUPS`).

**Missing values.** Workclass, occupation and country have ``'?'`` cells (2,399 train rows,
1,221 test rows). Like alibi, ``'?'`` is kept as a category of its own, so no row is dropped
and the categorical one-hots have 9 + 7 + 4 + 9 + 6 + 5 + 2 + 11 = 53 dimensions (country has 11
because alibi leaves ``Yugoslavia`` ungrouped). With ``K = 7`` Gaussian modes per numeric column
(:data:`N_MODES`; alpha plus a 7-way mode one-hot = 8 dimensions each), the encoding has
``53 + 4 x 8 = 85`` dimensions, the paper's width. Dropping the ``'?'`` rows instead (30,162
train and 15,060 test rows left) would remove three ``'?'`` categories and ``Never-worked``
(all its rows lack an occupation): 49 one-hot dimensions, 85 again with ``K = 8``. We keep
them because alibi, whose preprocessing the paper used, does, and because a loader that
silently loses 7% of the rows is a worse default.

Where the files come from: an explicit ``data_dir`` only; else ``$JAXCF_DATA_DIR`` (skipped
with a warning when it lacks the files), then the shared data folder beside the checkout
(:func:`jaxcf.data.default_data_dir`). In each directory ``<dir>/adult/`` is tried before
``<dir>/``. There is no TFDS source. Parsed tables, the fitted transform and the encoded
splits are cached in-process on the files' paths, sizes and modification times; the arrays
are read-only.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np

from jaxcf.data._dataset import Dataset
from jaxcf.data._idx import DataError
from jaxcf.data._lookup import DATA_DIR_ENV, first_available, from_env, from_shared
from jaxcf.data._registry import register_dataset
from jaxcf.tabular import Column, Constraints, Schema, TabularTransform

FEATURES: tuple[str, ...] = (
    "Age",
    "Workclass",
    "Education",
    "Marital Status",
    "Occupation",
    "Relationship",
    "Race",
    "Sex",
    "Capital Gain",
    "Capital Loss",
    "Hours per week",
    "Country",
)
"""The 12 features, in encoding order (alibi's names and order)."""
NUMERIC_FEATURES: tuple[str, ...] = ("Age", "Capital Gain", "Capital Loss", "Hours per week")
CLASS_NAMES: tuple[str, ...] = ("<=50K", ">50K")
SPLIT_FILES: dict[str, str] = {"train": "adult.data", "test": "adult.test"}
SPLIT_SIZES: dict[str, int] = {"train": 32_561, "test": 16_281}
"""Rows per split ('?' rows included)."""
N_MODES = 7
"""Gaussian modes per numeric column; with the 53 one-hot dimensions this gives 85."""
ADULT_TRANSFORM_DIM = 85
ADULT_CONSTRAINTS = Constraints(immutable=("Race", "Sex"), increasing=("Age",))
"""The paper's actionability constraints: race and sex never change, age never decreases."""
FIT_SEED = 0

# The raw file's 15 fields, in order; ``None`` marks the two alibi drops and the label.
_RAW_FIELDS: tuple[str | None, ...] = (
    "Age",
    "Workclass",
    None,  # fnlwgt
    "Education",
    None,  # education-num
    "Marital Status",
    "Occupation",
    "Relationship",
    "Race",
    "Sex",
    "Capital Gain",
    "Capital Loss",
    "Hours per week",
    "Country",
    None,  # income
)


def _same(*values: str) -> dict[str, str]:
    return {v: v for v in values}


GROUPS: dict[str, dict[str, str]] = {
    "Workclass": _same(
        "?",
        "Federal-gov",
        "Local-gov",
        "Never-worked",
        "Private",
        "Self-emp-inc",
        "Self-emp-not-inc",
        "State-gov",
        "Without-pay",
    ),
    "Education": {
        **dict.fromkeys(
            ("Preschool", "1st-4th", "5th-6th", "7th-8th", "9th", "10th", "11th", "12th"),
            "Dropout",
        ),
        "HS-grad": "High School grad",
        "Some-college": "High School grad",
        "Assoc-acdm": "Associates",
        "Assoc-voc": "Associates",
        "Bachelors": "Bachelors",
        "Masters": "Masters",
        "Prof-school": "Prof-School",
        "Doctorate": "Doctorate",
    },
    "Marital Status": {
        "Never-married": "Never-Married",
        "Married-civ-spouse": "Married",
        "Married-AF-spouse": "Married",
        "Married-spouse-absent": "Separated",
        "Separated": "Separated",
        "Divorced": "Separated",
        "Widowed": "Widowed",
    },
    "Occupation": {
        "?": "?",
        "Adm-clerical": "Admin",
        "Armed-Forces": "Military",
        **dict.fromkeys(
            (
                "Craft-repair",
                "Farming-fishing",
                "Handlers-cleaners",
                "Machine-op-inspct",
                "Transport-moving",
            ),
            "Blue-Collar",
        ),
        "Exec-managerial": "White-Collar",
        "Other-service": "Service",
        "Priv-house-serv": "Service",
        "Prof-specialty": "Professional",
        "Protective-serv": "Other",
        "Tech-support": "Other",
        "Sales": "Sales",
    },
    "Relationship": _same(
        "Husband", "Not-in-family", "Other-relative", "Own-child", "Unmarried", "Wife"
    ),
    "Race": _same("Amer-Indian-Eskimo", "Asian-Pac-Islander", "Black", "Other", "White"),
    "Sex": _same("Female", "Male"),
    "Country": {
        "?": "?",
        "United-States": "United-States",
        **dict.fromkeys(
            ("Canada", "England", "India", "Ireland", "Scotland"), "British-Commonwealth"
        ),
        **dict.fromkeys(("China", "Hong", "Taiwan"), "China"),
        **dict.fromkeys(("France", "Germany", "Holand-Netherlands", "Italy"), "Euro_1"),
        **dict.fromkeys(("Greece", "Hungary", "Poland", "Portugal", "South"), "Euro_2"),
        **dict.fromkeys(
            (
                "Dominican-Republic",
                "Guatemala",
                "Haiti",
                "Honduras",
                "Jamaica",
                "Mexico",
                "Nicaragua",
                "Outlying-US(Guam-USVI-etc)",
                "Puerto-Rico",
                "Trinadad&Tobago",
            ),
            "Latin-America",
        ),
        **dict.fromkeys(("Columbia", "Ecuador", "El-Salvador", "Peru"), "South-America"),
        **dict.fromkeys(("Cambodia", "Laos", "Philippines", "Thailand", "Vietnam"), "SE-Asia"),
        **dict.fromkeys(("Cuba", "Iran", "Japan"), "Other"),
        "Yugoslavia": "Yugoslavia",  # alibi's map has no entry, so it stays a region of its own
    },
}
"""Raw value -> category, per categorical feature (alibi's grouping; identity where alibi
keeps the raw values). A raw value missing here is a :class:`DataError`."""

ADULT_SCHEMA = Schema(
    tuple(
        Column.numeric(name, integer=True)
        if name in NUMERIC_FEATURES
        # Sorted, as alibi's LabelEncoder orders them ('?' first).
        else Column.categorical(name, sorted(set(GROUPS[name].values())))
        for name in FEATURES
    )
)


def load_adult_table(
    split: str = "train", data_dir: str | os.PathLike[str] | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One split of Adult as readable rows.

    Returns:
      ``(table, labels)``: ``table`` maps each of :data:`FEATURES` to an ``[N]`` array
      (categorical: object arrays of ``str``; numeric: int64), ``labels`` is ``int32 [N]``
      (1 = income >50K). Arrays are read-only (shared with the cache).

    Raises:
      ValueError: an unknown split.
      FileNotFoundError: no source has the file (the message lists where it looked).
      DataError: the file is malformed (message names the file and line).
    """
    path = _find(split, data_dir)
    table, labels = _read_cached(*_key(path), split)
    return dict(table), labels


def adult_transform(data_dir: str | os.PathLike[str] | None = None) -> TabularTransform:
    """The :class:`~jaxcf.tabular.TabularTransform` fitted on the train split (85 dims;
    ``N_MODES`` modes per numeric column, seed :data:`FIT_SEED`), cached."""
    return _transform_cached(*_key(_find("train", data_dir)))


def load_adult(split: str = "train", data_dir: str | os.PathLike[str] | None = None) -> Dataset:
    """One split of Adult as a :class:`Dataset` of ``float32 [N, 85]`` encodings (the train
    split's transform), ``int32`` labels, ``class_names`` :data:`CLASS_NAMES`, ``domain``
    None."""
    path = _find(split, data_dir)
    train = path if split == "train" else _find("train", data_dir)
    return _dataset_cached(*_key(path), *_key(train), split)


def find_adult_file(data_dir: str | os.PathLike[str], split: str) -> Path:
    """The split's file in ``data_dir/adult/`` or ``data_dir/``.

    Raises:
      ValueError: an unknown split. FileNotFoundError: neither folder holds the file.
    """
    _check_split(split)
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory")
    name = SPLIT_FILES[split]
    for folder in (root / "adult", root):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"no {name} in {root / 'adult'} or {root}")


def clear_cache() -> None:
    """Forgets cached tables, transforms and data sets."""
    for cached in (_read_cached, _transform_cached, _dataset_cached):
        cached.cache_clear()


# ---------------------------------------------------------------------------------------------


def _check_split(split: Any) -> None:
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown split {split!r}; expected one of {tuple(SPLIT_FILES)}")


def _find(split: str, data_dir: str | os.PathLike[str] | None) -> Path:
    """The split's file by the project's lookup order (see the module docstring)."""
    _check_split(split)
    if data_dir is not None:
        return find_adult_file(data_dir, split)
    return first_available(
        f"adult {split}",
        {
            "env": lambda: from_env(lambda d: find_adult_file(d, split), f"adult {split}"),
            "shared": lambda: from_shared(lambda d: find_adult_file(d, split)),
        },
        f"Pass data_dir=..., or set ${DATA_DIR_ENV} to a directory holding adult/.",
    )


def _key(path: Path) -> tuple[str, tuple[int, int]]:
    path = path.resolve()
    stat = path.stat()
    return str(path), (stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read_cached(path: str, stamp: Any, split: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    del stamp  # part of the cache key only
    table, labels = parse_adult(Path(path).read_text(encoding="utf-8"), path)
    if len(labels) != SPLIT_SIZES[split]:
        raise DataError(f"{path}: {len(labels)} records, expected {SPLIT_SIZES[split]} ({split})")
    for values in (*table.values(), labels):
        values.flags.writeable = False
    return table, labels


@functools.lru_cache(maxsize=2)
def _transform_cached(path: str, stamp: Any) -> TabularTransform:
    table, _ = _read_cached(path, stamp, "train")
    transform = TabularTransform.fit(ADULT_SCHEMA, table, n_modes=N_MODES, seed=FIT_SEED)
    if transform.dim != ADULT_TRANSFORM_DIM:  # the schema and N_MODES fix it; a guard
        raise AssertionError(f"adult encoding has {transform.dim} dims, not 85")
    return transform


@functools.lru_cache(maxsize=4)
def _dataset_cached(path: str, stamp: Any, train: str, train_stamp: Any, split: str) -> Dataset:
    table, labels = _read_cached(path, stamp, split)
    inputs = _transform_cached(train, train_stamp).encode(table)
    inputs.flags.writeable = False
    return Dataset(
        inputs=inputs,
        labels=labels,
        name="adult",
        split=split,
        source=str(Path(path).parent),
        class_names=CLASS_NAMES,
        domain=None,
    )


def parse_adult(text: str, where: str = "adult") -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Parses the text of ``adult.data`` or ``adult.test`` into ``(table, labels)``.

    Lines starting with ``'|'`` (``adult.test``'s first line) and blank lines are skipped;
    fields are separated by ``", "``; labels may carry a trailing dot (``adult.test``).

    Raises:
      DataError: a record without 15 fields, an unknown label or raw category, a non-integer
        numeric field; the message names ``where`` and the line number.
    """
    columns: dict[str, list] = {name: [] for name in FEATURES}
    labels = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("|"):
            continue
        fields = line.split(", ")
        if len(fields) != len(_RAW_FIELDS):
            raise DataError(
                f"{where}:{number}: {len(fields)} fields, expected {len(_RAW_FIELDS)}: {line!r}"
            )
        label = fields[-1].rstrip(".")
        if label not in CLASS_NAMES:
            raise DataError(f"{where}:{number}: unknown label {fields[-1]!r}")
        labels.append(CLASS_NAMES.index(label))
        for name, value in zip(_RAW_FIELDS, fields, strict=True):
            if name is None:
                continue
            if name in NUMERIC_FEATURES:
                try:
                    columns[name].append(int(value))
                except ValueError:
                    raise DataError(
                        f"{where}:{number}: {name} is {value!r}, expected an integer"
                    ) from None
            else:
                try:
                    columns[name].append(GROUPS[name][value])
                except KeyError:
                    raise DataError(f"{where}:{number}: unknown {name} {value!r}") from None
    if not labels:
        raise DataError(f"{where}: no records")
    table = {
        name: np.asarray(values, np.int64 if name in NUMERIC_FEATURES else object)
        for name, values in columns.items()
    }
    return table, np.asarray(labels, np.int32)


def _registry_loader(split: str, data_dir: Path | None) -> Dataset:
    return load_adult(split, data_dir)


register_dataset(
    "adult",
    _registry_loader,
    splits=tuple(SPLIT_FILES),
    description="UCI Adult income: float32 [N, 85] mixed-type encoding, 2 classes",
    replace=True,  # a reloaded module re-registers
)
