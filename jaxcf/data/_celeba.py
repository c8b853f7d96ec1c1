"""CelebA faces (10,000 aligned images, 64x64 RGB) with 13 binary attributes, from a zip of
JPEGs and the official attribute list.

Registered in :mod:`jaxcf.data` as ``"celeba"`` (labels: *Male*, class names
``("female", "male")``) and ``"celeba_young"`` (labels: *Young*, class names
``("old", "young")``); ``load_dataset("celeba", "test")`` is ``load_celeba("test")``. Both
return a :class:`CelebADataset` carrying the 13 attributes of :data:`AIP_ATTRIBUTES` besides
the labels.

The data (Liu, Luo, Wang and Tang, "Deep Learning Face Attributes in the Wild", ICCV 2015;
https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html; **non-commercial research use only**):
aligned and cropped celebrity faces, 178 wide x 218 high, each with 40 binary attributes.
The images read here are ids 000001-010000 only, the official images or copies shrunk to
89x109 (both accepted, see :data:`IMAGE_SIZES`).

Splits, by image id (``image_ids`` says which image each row is):

* ``"train"``: ids 000001-009000 (9,000 images);
* ``"test"``: ids 009001-010000 (1,000 images), held out for evaluation.

CelebA's official partition (``list_eval_partition.txt``) puts all of ids 000001-162770 in its
*train* partition, so both splits here come from it: the official validation and test images
are not among the 10,000 available.

Preprocessing, the same at either resolution: the square of the image's width centred
vertically (rows 20..197 of a 178x218 image, 10..98 of an 89x109 one: the same region), resized
with a Lanczos filter to ``size x size`` (default 64), as bytes / 255. Inputs are ``float32
[N, size, size, 3]`` (NHWC, RGB) in ``[0, 1]`` (the ``domain``). Attributes are ``float32
[N, 13]``, 1 where the attribute file says 1 and 0 where it says -1.

Where the data comes from: an explicit ``data_dir`` only, else ``$JAXCF_DATA_DIR``, then the
shared data folder beside the checkout (:func:`~jaxcf.data.default_data_dir`; there is no
TensorFlow Datasets version). A directory holds, in a subfolder ``celeba/`` (tried first) or
directly, ``list_attr_celeba.txt`` and one zip of JPEGs named in :data:`IMAGE_ZIPS` (the first
present is used; entries ``<any folder>/NNNNNN.jpg``). As for the other loaders, a
``$JAXCF_DATA_DIR`` without the files is skipped with a warning, and files that exist but are
broken raise :class:`~jaxcf.data.DataError` naming the file rather than falling through to
another source. Decoded images and parsed attributes are cached in-process on the files'
resolved paths, sizes and modification times (and the output size), so repeated calls return
the same :class:`CelebADataset`, whose arrays are therefore read-only; ``"celeba"`` and
``"celeba_young"`` share one copy of the images.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import io
import itertools
import os
import re
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from jaxcf.data._dataset import Dataset
from jaxcf.data._idx import DataError
from jaxcf.data._lookup import DATA_DIR_ENV, check_sources, first_available, from_env, from_shared
from jaxcf.data._registry import register_dataset

Split = Literal["train", "test"]
Source = Literal["env", "shared"]

NAME = "celeba"
SUBFOLDER = "celeba"
"""The folder of a data directory holding the files (tried before the directory)."""
DEFAULT_SOURCES: tuple[Source, ...] = ("env", "shared")
"""Sources tried, in order, when no ``data_dir`` is given."""
ATTRIBUTE_FILE = "list_attr_celeba.txt"
"""CelebA's attribute list: a count, the 40 names, then one row per image (all 202,599)."""
IMAGE_ZIPS: tuple[str, ...] = ("img_align_celeba.zip", "celeba_000001-010000_89x109_jpg.zip")
"""Zips of JPEGs looked for, in order: the official 178x218 images, then ids 000001-010000
shrunk to 89x109."""
IMAGE_SIZES: tuple[tuple[int, int], ...] = ((178, 218), (89, 109))
"""The ``(width, height)`` images may have: CelebA's aligned images and their half size."""
SPLIT_IDS: dict[str, tuple[int, int]] = {"train": (1, 9_000), "test": (9_001, 10_000)}
"""First and last image id (inclusive) of each split."""
AIP_ATTRIBUTES: tuple[str, ...] = (
    "Pale_Skin",
    "Bangs",
    "Black_Hair",
    "Blond_Hair",
    "No_Beard",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Male",
    "Eyeglasses",
    "Young",
    "Mustache",
    "Bald",
    "Mouth_Slightly_Open",
)
"""The 13 attributes of the AIP paper, in its order: the columns of ``attributes``."""
LABEL_CLASS_NAMES: dict[str, tuple[str, str]] = {
    "Male": ("female", "male"),
    "Young": ("old", "young"),
}
"""Class names (label 0, label 1) by label attribute; others are ``("not <name>", "<name>")``."""
DOMAIN = (0.0, 1.0)
"""Pixel values are bytes / 255, so every input lies in ``[0, 1]``."""

_ENTRY_RE = re.compile(r"(?:^|/)(\d{6})\.jpg$")
_DECODE_THREADS = 4  # PIL releases the GIL while decoding and resizing


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class CelebADataset(Dataset):
    """A split of CelebA: a :class:`Dataset` with the attributes the labels are one of.

    Attributes (beyond :class:`Dataset`'s):
      attributes: ``float32 [N, A]`` in {0, 1}: whether each image has each attribute.
      attribute_names: the ``A`` attribute names, the columns of ``attributes``
        (:data:`AIP_ATTRIBUTES` for the registered data sets).
      image_ids: ``int32 [N]`` each image's CelebA id (``inputs[i]`` is
        ``f"{image_ids[i]:06d}.jpg"``).
    """

    attributes: np.ndarray | None = None
    attribute_names: tuple[str, ...] = ()
    image_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "attribute_names", tuple(self.attribute_names))
        n = self.inputs.shape[0]
        if self.attributes is not None:
            expected = (n, len(self.attribute_names))
            if self.attributes.shape != expected:
                raise ValueError(
                    f"attributes must be [N, len(attribute_names)] = {list(expected)}, got "
                    f"{self.attributes.shape}"
                )
            if self.attributes.dtype != np.float32:
                raise ValueError(f"attributes must be float32, got {self.attributes.dtype}")
        elif self.attribute_names:
            raise ValueError("attribute_names given without attributes")
        if self.image_ids is not None and self.image_ids.shape != (n,):
            raise ValueError(f"image_ids must be [N] = [{n}], got {self.image_ids.shape}")

    def attribute(self, name: str) -> np.ndarray:
        """``float32 [N]``: the column of ``attributes`` for ``name``.

        Raises:
          ValueError: ``name`` is not one of ``attribute_names``.
        """
        if self.attributes is None or name not in self.attribute_names:
            raise ValueError(f"no attribute {name!r}; this split has {self.attribute_names}")
        return self.attributes[:, self.attribute_names.index(name)]


def load_celeba(
    split: Split = "train",
    data_dir: str | os.PathLike[str] | None = None,
    *,
    label: str = "Male",
    size: int = 64,
    sources: Sequence[Source] | None = None,
) -> CelebADataset:
    """Loads one split of CelebA, labelled by one attribute.

    Args:
      split: ``"train"`` (ids 000001-009000) or ``"test"`` (ids 009001-010000); see
        :data:`SPLIT_IDS`.
      data_dir: a directory holding :data:`ATTRIBUTE_FILE` and a zip of :data:`IMAGE_ZIPS`
        (in ``<data_dir>/celeba/`` or directly). When given, only this directory is used.
      label: the attribute that gives the labels (1 where the image has it), one of
        :data:`AIP_ATTRIBUTES`.
      size: the side of the square output images, in pixels.
      sources: the sources to try, in order, when ``data_dir`` is not given: ``"env"``
        (``$JAXCF_DATA_DIR``) and/or ``"shared"`` (:func:`~jaxcf.data.default_data_dir`).
        Default :data:`DEFAULT_SOURCES`.

    Returns:
      A :class:`CelebADataset`: ``float32 [N, size, size, 3]`` images in ``[0, 1]`` (also its
      ``domain``), ``int32 [N]`` labels in {0, 1} (the ``label`` attribute), class names from
      :data:`LABEL_CLASS_NAMES`, ``float32 [N, 13]`` attributes (:data:`AIP_ATTRIBUTES`) and
      ``image_ids``; images in id order.

    Raises:
      ValueError: an unknown split, label or source, a size that is not a positive integer,
        or both ``data_dir`` and ``sources``.
      FileNotFoundError: ``data_dir`` lacks the files, or no source has them (the message
        lists each source tried and why it failed).
      DataError: a file was found but is broken: an attribute file without one of the 13
        attributes or without the row of an image, a malformed row, an unreadable zip or
        JPEG, an image of a size not in :data:`IMAGE_SIZES`, or a zip lacking an image of the
        split.
    """
    _check_choice("split", split, SPLIT_IDS)
    _check_choice("label", label, AIP_ATTRIBUTES)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if data_dir is not None:
        if sources is not None:
            raise ValueError("pass either data_dir or sources, not both")
        return _load_files(find_celeba_files(data_dir), split, label, size)

    sources = check_sources(sources, DEFAULT_SOURCES)
    finders = {
        "env": lambda: from_env(find_celeba_files, NAME),
        "shared": lambda: from_shared(find_celeba_files),
    }
    files = first_available(
        f"{NAME} {split}",
        {source: finders[source] for source in sources},
        f"Pass data_dir=..., or set ${DATA_DIR_ENV} to a directory holding "
        f"{SUBFOLDER}/{ATTRIBUTE_FILE} and {SUBFOLDER}/{IMAGE_ZIPS[-1]}.",
    )
    return _load_files(files, split, label, size)


def find_celeba_files(data_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Finds the attribute file and an image zip in ``data_dir/celeba/`` or ``data_dir/``.

    Returns:
      ``{"attributes": path, "images": path}``, both in one folder; the image zip is the first
      of :data:`IMAGE_ZIPS` present.

    Raises:
      FileNotFoundError: ``data_dir`` is not a directory, or neither folder holds both files
        (the message names the folders and files).
    """
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory")
    folders = [root / SUBFOLDER, root]
    for folder in folders:
        attributes = folder / ATTRIBUTE_FILE
        images = next((folder / z for z in IMAGE_ZIPS if (folder / z).is_file()), None)
        if attributes.is_file() and images is not None:
            return {"attributes": attributes, "images": images}
        if attributes.is_file():
            raise FileNotFoundError(
                f"{folder}: found {ATTRIBUTE_FILE} but no image zip ({' or '.join(IMAGE_ZIPS)})"
            )
        if images is not None:
            raise FileNotFoundError(f"{folder}: found {images.name} but not {ATTRIBUTE_FILE}")
    looked_in = " and ".join(str(folder) for folder in folders)
    raise FileNotFoundError(
        f"no {NAME} files in {root}: looked for {ATTRIBUTE_FILE} and one of "
        f"{', '.join(IMAGE_ZIPS)} in {looked_in}"
    )


def read_celeba_attributes(
    path: str | os.PathLike[str],
    image_ids: Sequence[int] | np.ndarray,
    names: Sequence[str] = AIP_ATTRIBUTES,
) -> np.ndarray:
    """Reads the attributes ``names`` of the images ``image_ids`` from a CelebA attribute file.

    The file (CRLF or LF line endings): line 1 the number of rows, line 2 the attribute names,
    then rows ``NNNNNN.jpg`` followed by one value in {-1, 1} per name. Rows are read until
    every requested id is found, so the first ids of the official file cost little.

    Returns:
      ``float32 [len(image_ids), len(names)]`` in {0, 1} (1 where the file says 1).

    Raises:
      DataError: (message starting with the path) a header without a count or without one of
        ``names``, a row with another number of fields or a value not in {-1, 1}, a repeated
        row, or no row for one of ``image_ids``.
    """
    path = Path(path)
    wanted: dict[str, list[int]] = {}  # file name -> the output rows it fills
    for k, image_id in enumerate(image_ids):
        wanted.setdefault(f"{int(image_id):06d}.jpg", []).append(k)
    out = np.empty((len(image_ids), len(names)), np.float32)
    found: set[str] = set()
    with open(path, encoding="ascii", errors="replace", newline=None) as file:
        header = list(itertools.islice(file, 2))
        if len(header) < 2 or not header[0].strip().isdigit():
            raise DataError(
                f"{path}: expected the number of rows on line 1 and the attribute names on "
                f"line 2, got {header[:1]!r}"
            )
        columns = header[1].split()
        missing = [name for name in names if name not in columns]
        if missing:
            raise DataError(
                f"{path}: line 2 lacks the attribute(s) {', '.join(missing)}; it names "
                f"{len(columns)}: {' '.join(columns) or 'none'}"
            )
        picks = [columns.index(name) for name in names]
        for number, line in enumerate(file, start=3):
            if len(found) == len(wanted):
                break
            fields = line.split()
            if not fields:
                continue
            rows = wanted.get(fields[0])
            if rows is None:
                continue
            if len(fields) != 1 + len(columns):
                raise DataError(
                    f"{path}: line {number} has {len(fields)} fields, expected "
                    f"{1 + len(columns)} (a file name, then {len(columns)} values)"
                )
            if fields[0] in found:
                raise DataError(f"{path}: line {number} repeats the row of {fields[0]}")
            values = [fields[1 + c] for c in picks]
            bad = next((v for v in values if v not in ("1", "-1")), None)
            if bad is not None:
                raise DataError(
                    f"{path}: line {number} ({fields[0]}) holds {bad!r}, expected -1 or 1"
                )
            out[rows] = [v == "1" for v in values]
            found.add(fields[0])
    if len(found) < len(wanted):
        absent = sorted(set(wanted) - found)
        more = f" and {len(absent) - 1} more" if len(absent) > 1 else ""
        raise DataError(f"{path}: no row for {absent[0]}{more}")
    return out


def read_celeba_images(
    path: str | os.PathLike[str],
    image_ids: Sequence[int] | np.ndarray | None = None,
    *,
    size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Decodes CelebA JPEGs from a zip: centre square crop, resized to ``size x size``.

    Entries are ``NNNNNN.jpg`` in any folder (other entries are ignored). Each image, of a
    ``(width, height)`` in :data:`IMAGE_SIZES`, is cropped to the square of its width centred
    vertically and resized with a Lanczos filter.

    Args:
      path: the zip file.
      image_ids: the ids to decode, in this order; ``None``: every image, in id order.
      size: the side of the output images, in pixels.

    Returns:
      ``(images, image_ids)``: ``uint8 [N, size, size, 3]`` (RGB) and ``int32 [N]``.

    Raises:
      DataError: (message starting with the path) not a readable zip, an id present twice or
        missing, an entry that is not a readable JPEG, or an image of another size.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            entries: dict[int, str] = {}
            for name in archive.namelist():
                match = _ENTRY_RE.search(name)
                if match is None:
                    continue
                image_id = int(match.group(1))
                if image_id in entries:
                    raise DataError(
                        f"{path}: {entries[image_id]} and {name} are both image {image_id}"
                    )
                entries[image_id] = name
            ids = sorted(entries) if image_ids is None else [int(i) for i in image_ids]
            absent = [i for i in ids if i not in entries]
            if absent:
                more = f" and {len(absent) - 1} more" if len(absent) > 1 else ""
                raise DataError(f"{path}: no entry {absent[0]:06d}.jpg{more}")
            blobs = [archive.read(entries[i]) for i in ids]
    except DataError:
        raise
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: not a readable zip file ({type(exc).__name__}: {exc})") from exc

    images = np.empty((len(ids), size, size, 3), np.uint8)

    def decode(k: int) -> None:
        images[k] = _square(blobs[k], size, path, entries[ids[k]])

    with concurrent.futures.ThreadPoolExecutor(min(_DECODE_THREADS, os.cpu_count() or 1)) as pool:
        list(pool.map(decode, range(len(ids))))
    return images, np.asarray(ids, np.int32)


def clear_cache() -> None:
    """Forgets the arrays cached by :func:`load_celeba` (freed once unreferenced)."""
    _dataset_cached.cache_clear()
    _images_cached.cache_clear()
    _attributes_cached.cache_clear()


def _square(blob: bytes, size: int, path: Path, entry: str) -> np.ndarray:
    """One JPEG's centre square, ``uint8 [size, size, 3]``."""
    try:
        with Image.open(io.BytesIO(blob)) as image:
            width, height = image.size
            if (width, height) not in IMAGE_SIZES:
                sizes = " or ".join(f"{w}x{h}" for w, h in IMAGE_SIZES)
                raise DataError(f"{path}: {entry} is {width}x{height}, expected {sizes}")
            top = (height - width) // 2
            # Lanczos rather than a box filter: at the 89 -> 64 ratio (1.4) a box spans little
            # more than one source pixel and aliases, while Lanczos low-passes at any ratio; on
            # ids 1-32 it also makes the 89x109 and 178x218 copies agree better (pixel
            # correlation >= 0.993 against 0.987). Its overshoot is clipped to bytes.
            square = image.convert("RGB").resize(
                (size, size), Image.Resampling.LANCZOS, box=(0, top, width, top + width)
            )
            return np.asarray(square)
    except DataError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DataError(
            f"{path}: {entry} is not a readable JPEG ({type(exc).__name__}: {exc})"
        ) from exc


def _check_choice(what: str, value: Any, choices: Any) -> None:
    """Raises ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; expected one of {tuple(choices)}")


def _stamp(path: Path) -> tuple[str, tuple[int, int]]:
    """The resolved path and (size, mtime) that key the caches."""
    path = path.resolve()
    stat = path.stat()
    return str(path), (stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _images_cached(
    path: str, stamp: tuple[int, int], first: int, last: int, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """``float32`` images and ids of ``first..last``; ``stamp`` (size, mtime) is only part of the
    key: a changed file is read again."""
    del stamp
    images, ids = read_celeba_images(path, range(first, last + 1), size=size)
    floats = images.astype(np.float32) / np.float32(255.0)
    floats.flags.writeable = False
    ids.flags.writeable = False
    return floats, ids


@functools.lru_cache(maxsize=8)
def _attributes_cached(path: str, stamp: tuple[int, int], first: int, last: int) -> np.ndarray:
    """The :data:`AIP_ATTRIBUTES` of ids ``first..last`` (``stamp`` as above)."""
    del stamp
    attributes = read_celeba_attributes(path, range(first, last + 1))
    attributes.flags.writeable = False
    return attributes


@functools.lru_cache(maxsize=8)
def _dataset_cached(
    images: tuple[str, tuple[int, int]],
    attributes: tuple[str, tuple[int, int]],
    split: str,
    first: int,
    last: int,
    label: str,
    size: int,
) -> CelebADataset:
    """One split as a :class:`CelebADataset`, from the cached arrays."""
    table = _attributes_cached(*attributes, first, last)
    inputs, ids = _images_cached(*images, first, last, size)
    labels = table[:, AIP_ATTRIBUTES.index(label)].astype(np.int32)
    labels.flags.writeable = False
    return CelebADataset(
        inputs=inputs,
        labels=labels,
        name=NAME if label == "Male" else f"{NAME}_{label.lower()}",
        split=split,
        source=str(Path(images[0]).parent),
        class_names=LABEL_CLASS_NAMES.get(label, (f"not {label}", label)),
        domain=DOMAIN,
        attributes=table,
        attribute_names=AIP_ATTRIBUTES,
        image_ids=ids,
    )


def _load_files(files: dict[str, Path], split: str, label: str, size: int) -> CelebADataset:
    """Loads (or fetches from the cache) a split from its files."""
    first, last = SPLIT_IDS[split]
    # The attributes first: they are cheap, and an attribute file's error is found before
    # seconds of decoding.
    attributes = _stamp(files["attributes"])
    _attributes_cached(*attributes, first, last)
    return _dataset_cached(_stamp(files["images"]), attributes, split, first, last, label, size)


def _registry_loader(label: str):
    def load(split: str, data_dir: Path | None) -> Dataset:
        return load_celeba(split, data_dir, label=label)  # type: ignore[arg-type]

    return load


register_dataset(
    "celeba",
    _registry_loader("Male"),
    splits=tuple(SPLIT_IDS),
    description=(
        "CelebA faces, female vs male: float32 [N, 64, 64, 3] in [0, 1], 2 classes, 13 "
        "attributes (train 9,000 / test 1,000)"
    ),
    replace=True,  # a reloaded module re-registers
)
register_dataset(
    "celeba_young",
    _registry_loader("Young"),
    splits=tuple(SPLIT_IDS),
    description=(
        "CelebA faces, old vs young: float32 [N, 64, 64, 3] in [0, 1], 2 classes, 13 "
        "attributes (train 9,000 / test 1,000)"
    ),
    replace=True,
)
