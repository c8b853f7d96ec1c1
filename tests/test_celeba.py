"""Tests for the CelebA loader (jaxcf.data): the real files' splits, attributes and crop,
and, on small files written in ``tmp_path``, the crop geometry, the lookup and every error.

Real-data tests read ../shared/data beside the checkout (or $JAXCF_DATA_DIR if set when the
tests start) and are skipped where those files are absent. The small-file tests shrink the
splits (``SPLIT_IDS``) to a few ids, so they run anywhere in well under a second.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import jaxcf.data._celeba as celeba_module
import jaxcf.data._lookup as lookup_module
from jaxcf.data import (
    AIP_ATTRIBUTES,
    DATA_DIR_ENV,
    CelebADataset,
    DataError,
    dataset_spec,
    default_data_dir,
    find_celeba_files,
    load_celeba,
    load_dataset,
    read_celeba_attributes,
    read_celeba_images,
)

REAL_DATA_DIR = Path(os.environ.get(DATA_DIR_ENV) or default_data_dir())
SMALL_ZIP = "celeba_000001-010000_89x109_jpg.zip"
ORIGINAL_ZIP = "celeba_000001-000032_original_178x218_jpg.zip"

# Read off list_attr_celeba.txt by hand, in AIP_ATTRIBUTES order (Pale_Skin, Bangs, Black_Hair,
# Blond_Hair, No_Beard, Brown_Hair, Bushy_Eyebrows, Male, Eyeglasses, Young, Mustache, Bald,
# Mouth_Slightly_Open); 1 where the file says 1, 0 where it says -1.
KNOWN_ROWS = {
    1: [0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 1],  # Male -1, Young 1
    2: [0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 1],
    9_001: [0, 0, 1, 0, 1, 0, 1, 1, 0, 1, 0, 0, 1],  # Male 1
    10_000: [0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 1],
}

# Small files: a header with the 13 attributes (and two others) in another order than
# AIP_ATTRIBUTES, and splits of ids 1-6 and 7-8.
FAKE_COLUMNS = ("Smiling", *reversed(AIP_ATTRIBUTES), "Wavy_Hair")
FAKE_SPLITS = {"train": (1, 6), "test": (7, 8)}
FAKE_IDS = range(1, 9)


@pytest.fixture(autouse=True)
def _no_data_dir_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with $JAXCF_DATA_DIR unset."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)


@pytest.fixture
def small_splits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Splits of ids 1-6 ("train") and 7-8 ("test"), for the small files."""
    monkeypatch.setattr(celeba_module, "SPLIT_IDS", FAKE_SPLITS)


def _real_folder() -> Path:
    folder = REAL_DATA_DIR / "celeba"
    if not (folder / SMALL_ZIP).is_file() or not (folder / "list_attr_celeba.txt").is_file():
        pytest.skip(f"no CelebA files in {folder}")
    return folder


# ----------------------------------------------------------------------------- file makers


def _fake_value(image_id: int, column: int) -> int:
    """The attribute file's value (-1 or 1) of the small files' ``column`` for ``image_id``."""
    return 1 if (image_id + column) % 3 == 0 else -1


def _expected_attributes(ids) -> np.ndarray:
    """What the loader should make of the small attribute file: ``float32 [N, 13]``."""
    columns = [FAKE_COLUMNS.index(name) for name in AIP_ATTRIBUTES]
    return np.array([[_fake_value(i, c) == 1 for c in columns] for i in ids], np.float32)


def _write_attributes(path: Path, ids=FAKE_IDS, columns=FAKE_COLUMNS, edit=None) -> Path:
    """A CelebA-style attribute file (CRLF, values padded like the original's); ``edit(lines)``
    may change the lines before they are written."""
    lines = [str(len(ids)), " ".join(columns) + " "]
    for i in ids:
        values = [f"{_fake_value(i, c):2d}" for c in range(len(columns))]
        lines.append(f"{i:06d}.jpg " + " ".join(values))
    if edit is not None:
        lines = edit(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return path


def _jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _face(image_id: int, width: int = 89, height: int = 109) -> np.ndarray:
    """``uint8 [height, width, 3]``: the centre square a grey of ``20 * image_id``, the rows
    above it red and below it blue (both cropped away)."""
    image = np.full((height, width, 3), 20 * image_id, np.uint8)
    top = (height - width) // 2
    image[:top] = (255, 0, 0)
    image[top + width :] = (0, 0, 255)
    return image


def _write_images(path: Path, entries: dict[str, bytes] | None = None) -> Path:
    """A zip of ``celebA/NNNNNN.jpg`` entries (default: :func:`_face` of ids 1-8)."""
    if entries is None:
        entries = {f"celebA/{i:06d}.jpg": _jpeg(_face(i)) for i in FAKE_IDS}
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def _write_celeba(folder: Path, **images) -> dict[str, Path]:
    """Both files, well formed, in ``folder``."""
    return {
        "attributes": _write_attributes(folder / "list_attr_celeba.txt"),
        "images": _write_images(folder / SMALL_ZIP, **images),
    }


# ----------------------------------------------------------------------------- real data


def test_real_splits_shapes_and_attributes() -> None:
    folder = _real_folder()
    for split, n, first in (("train", 9_000, 1), ("test", 1_000, 9_001)):
        data = load_dataset("celeba", split, data_dir=REAL_DATA_DIR)
        assert isinstance(data, CelebADataset)
        assert (data.name, data.split, len(data)) == ("celeba", split, n)
        assert data.inputs.shape == (n, 64, 64, 3) and data.inputs.dtype == np.float32
        assert data.inputs.min() == 0.0 and data.inputs.max() == 1.0
        assert 0.3 < float(data.inputs.mean()) < 0.6
        assert data.domain == (0.0, 1.0) and data.class_names == ("female", "male")
        assert data.attribute_names == AIP_ATTRIBUTES
        assert data.attributes.shape == (n, 13) and data.attributes.dtype == np.float32
        assert set(np.unique(data.attributes)) == {0.0, 1.0}
        np.testing.assert_array_equal(data.image_ids, np.arange(first, first + n))
        assert data.labels.dtype == np.int32
        np.testing.assert_array_equal(data.labels, data.attribute("Male"))
        assert Path(data.source) == folder.resolve()
        for image_id, row in KNOWN_ROWS.items():
            if first <= image_id < first + n:
                np.testing.assert_array_equal(data.attributes[image_id - first], row)

        young = load_dataset("celeba_young", split, data_dir=REAL_DATA_DIR)
        assert (young.name, young.class_names) == ("celeba_young", ("old", "young"))
        assert young.inputs is data.inputs  # one decoded copy, shared
        np.testing.assert_array_equal(young.labels, data.attribute("Young"))
        assert load_celeba(split, REAL_DATA_DIR, label="Young") is young  # cached
        with pytest.raises(ValueError, match="read-only"):
            data.inputs[0, 0, 0, 0] = 0.5
    # Male is a minority and Young a majority of ids 1-9000, as in all of CelebA.
    train = load_celeba("train", REAL_DATA_DIR)
    assert 0.38 < train.labels.mean() < 0.46
    assert 0.74 < train.attribute("Young").mean() < 0.82


def test_real_attributes_against_the_file() -> None:
    folder = _real_folder()
    path = folder / "list_attr_celeba.txt"
    ids = [1, 2, 9_001, 10_000]
    np.testing.assert_array_equal(read_celeba_attributes(path, ids), [KNOWN_ROWS[i] for i in ids])
    # Any attributes and ids, in any order, repeated or not.
    got = read_celeba_attributes(path, [9_001, 1, 1], ["Young", "Male"])
    np.testing.assert_array_equal(got, [[1, 1], [1, 0], [1, 0]])


def test_small_crop_agrees_with_the_original_resolution() -> None:
    folder = _real_folder()
    if not (folder / ORIGINAL_ZIP).is_file():
        pytest.skip(f"no {ORIGINAL_ZIP} in {folder}")
    original, ids = read_celeba_images(folder / ORIGINAL_ZIP)
    small, small_ids = read_celeba_images(folder / SMALL_ZIP, range(1, 33))
    np.testing.assert_array_equal(ids, np.arange(1, 33))
    np.testing.assert_array_equal(small_ids, ids)
    assert original.shape == small.shape == (32, 64, 64, 3) and original.dtype == np.uint8
    a = original.reshape(32, -1).astype(np.float64)
    b = small.reshape(32, -1).astype(np.float64)
    correlation = np.corrcoef(a, b)[:32, 32:]  # [original i, small j]
    assert np.diag(correlation).min() > 0.95
    off_diagonal = correlation[~np.eye(32, dtype=bool)]
    assert np.median(off_diagonal) < 0.5  # a different face does not agree
    assert np.abs(a - b).mean() < 0.05 * 255


def test_loader_reads_original_resolution_zip(tmp_path: Path, small_splits: None) -> None:
    """The 32 official 178x218 JPEGs as ``img_align_celeba.zip``, preferred over the 89x109 zip
    when both are present."""
    folder = _real_folder()
    if not (folder / ORIGINAL_ZIP).is_file():
        pytest.skip(f"no {ORIGINAL_ZIP} in {folder}")
    target = tmp_path / "celeba"
    target.mkdir()
    lines = (folder / "list_attr_celeba.txt").read_bytes().split(b"\r\n")[:34]
    (target / "list_attr_celeba.txt").write_bytes(b"\r\n".join(lines) + b"\r\n")
    (target / "img_align_celeba.zip").write_bytes((folder / ORIGINAL_ZIP).read_bytes())
    _write_images(target / SMALL_ZIP)  # fake faces: must not be used
    assert find_celeba_files(tmp_path)["images"].name == "img_align_celeba.zip"
    data = load_celeba("train", tmp_path, size=32)
    assert data.inputs.shape == (6, 32, 32, 3)
    np.testing.assert_array_equal(data.attributes[:2], [KNOWN_ROWS[1], KNOWN_ROWS[2]])
    expected, _ = read_celeba_images(folder / ORIGINAL_ZIP, range(1, 7), size=32)
    np.testing.assert_array_equal(data.inputs, expected / np.float32(255))


# ----------------------------------------------------------------------------- small files


def test_small_files_split_order_and_crop(tmp_path: Path, small_splits: None) -> None:
    _write_celeba(tmp_path)
    for split, ids in (("train", range(1, 7)), ("test", range(7, 9))):
        data = load_celeba(split, tmp_path, label="Young")
        assert data.inputs.shape == (len(ids), 64, 64, 3)
        np.testing.assert_array_equal(data.image_ids, list(ids))
        np.testing.assert_array_equal(data.attributes, _expected_attributes(ids))
        np.testing.assert_array_equal(data.labels, data.attribute("Young"))
        assert data.source == str(tmp_path.resolve())
        # The red and blue bands above and below the square are cropped away: each image is
        # its grey, up to JPEG and a little filter bleed at the top and bottom rows.
        grey = np.array([20 * i / 255 for i in ids], np.float32)[:, None, None, None]
        np.testing.assert_allclose(
            data.inputs[:, 2:-2], np.broadcast_to(grey, (len(ids), 60, 64, 3)), atol=0.02
        )
        assert np.abs(data.inputs - grey).mean() < 0.01


def test_original_size_is_cropped_alike(tmp_path: Path) -> None:
    path = _write_images(
        tmp_path / "a.zip",
        {"img_align_celeba/000005.jpg": _jpeg(_face(5, 178, 218)), "x/000001.jpg": _jpeg(_face(1))},
    )
    images, ids = read_celeba_images(path, size=16)
    np.testing.assert_array_equal(ids, [1, 5])
    assert images.shape == (2, 16, 16, 3)
    np.testing.assert_allclose(images[:, 1:-1].mean(axis=(1, 2, 3)), [20, 100], atol=2)


def test_cached_read_only_and_reread_when_changed(tmp_path: Path, small_splits: None) -> None:
    files = _write_celeba(tmp_path)
    first = load_celeba("test", tmp_path)
    assert load_celeba("test", tmp_path) is first
    assert load_dataset("celeba", "test", data_dir=tmp_path) is first
    for array in (first.inputs, first.labels, first.attributes, first.image_ids):
        assert not array.flags.writeable
    assert load_celeba("test", tmp_path, size=8).inputs.shape == (2, 8, 8, 3)
    _write_images(files["images"], {f"celebA/{i:06d}.jpg": _jpeg(_face(1)) for i in FAKE_IDS})
    os.utime(files["images"], ns=(1, 1))  # a new modification time whatever the clock's grain
    again = load_celeba("test", tmp_path)
    assert again is not first
    np.testing.assert_allclose(again.inputs[:, 8:-8].mean(), 20 / 255, atol=0.01)


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_splits: None) -> None:
    shared = tmp_path / "shared_data"
    monkeypatch.setattr(lookup_module, "default_data_dir", lambda: shared)
    _write_celeba(shared / "celeba")
    assert load_celeba("test").source == str((shared / "celeba").resolve())
    _write_celeba(tmp_path / "env")  # directly, no celeba/ subfolder
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    assert load_dataset("celeba_young", "test").source == str((tmp_path / "env").resolve())
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "empty"))
    with pytest.warns(UserWarning, match="empty does not hold celeba"):
        assert load_celeba("test").source == str((shared / "celeba").resolve())
    assert dataset_spec("celeba").splits == dataset_spec("celeba_young").splits == ("train", "test")


def test_missing_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="no such directory"):
        load_celeba("test", tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="looked for list_attr_celeba.txt and one of"):
        load_celeba("test", tmp_path)
    attributes = _write_attributes(tmp_path / "celeba" / "list_attr_celeba.txt")
    with pytest.raises(FileNotFoundError, match="found list_attr_celeba.txt but no image zip"):
        load_celeba("test", tmp_path)
    attributes.unlink()
    _write_images(tmp_path / "celeba" / SMALL_ZIP)
    with pytest.raises(FileNotFoundError, match=f"found {SMALL_ZIP} but not list_attr_celeba"):
        load_celeba("test", tmp_path)
    # No source has them: each is listed.
    monkeypatch.setattr(lookup_module, "default_data_dir", lambda: tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("celeba", "train")
    message = str(info.value)
    assert "could not load celeba train from any source" in message
    assert "- env: $JAXCF_DATA_DIR is not set" in message
    assert "celeba/list_attr_celeba.txt" in message.splitlines()[-1]


def _lacks(name: str):
    def edit(lines: list[str]) -> list[str]:
        return [lines[0], lines[1].replace(f"{name} ", ""), *lines[2:]]

    return edit


def _set_line(number: int, text: str):
    def edit(lines: list[str]) -> list[str]:
        return [*lines[: number - 1], text, *lines[number:]]

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_lacks("Mouth_Slightly_Open"), r"line 2 lacks the attribute\(s\) Mouth_Slightly_Open; "),
        (lambda lines: lines[:9], r"no row for 000008.jpg"),
        (lambda lines: lines[:2] + lines[3:], r"no row for 000001.jpg"),
        (_set_line(9, "000007.jpg 1 -1"), r"line 9 has 3 fields, expected 16"),
        (_set_line(9, "000007.jpg" + " 0" * 15), r"line 9 \(000007.jpg\) holds '0', expected -1"),
        (lambda lines: [*lines[:9], *lines[8:]], r"line 10 repeats the row of 000007.jpg"),
        (lambda lines: ["202599"], r"expected the number of rows on line 1"),
    ],
    ids=["no-attribute", "no-row-last", "no-row-first", "fields", "value", "repeat", "no-names"],
)
def test_broken_attribute_file(tmp_path: Path, small_splits: None, edit, message: str) -> None:
    files = _write_celeba(tmp_path)
    _write_attributes(files["attributes"], edit=edit)
    split = "train" if "000001" in message else "test"
    with pytest.raises(DataError, match=re.escape(str(files["attributes"])) + ": " + message):
        load_celeba(split, tmp_path)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (
            {"celebA/000007.jpg": _jpeg(_face(7)), "celebA/000008.jpg": _jpeg(_face(8, 100, 100))},
            r"celebA/000008.jpg is 100x100, expected 178x218 or 89x109",
        ),
        (
            {"celebA/000007.jpg": _jpeg(_face(7)), "celebA/000008.jpg": b"not a jpeg"},
            r"celebA/000008.jpg is not a readable JPEG \(UnidentifiedImageError",
        ),
        (
            {"celebA/000007.jpg": _jpeg(_face(7)), "celebA/000008.jpg": _jpeg(_face(8))[:300]},
            r"celebA/000008.jpg is not a readable JPEG",
        ),
        ({"celebA/000007.jpg": _jpeg(_face(7))}, r"no entry 000008.jpg"),
        (
            {"a/000007.jpg": b"", "b/000007.jpg": b"", "c/000008.jpg": b""},
            r"a/000007.jpg and b/000007.jpg are both image 7",
        ),
    ],
    ids=["size", "not-jpeg", "truncated", "missing", "twice"],
)
def test_broken_image_zip(tmp_path: Path, small_splits: None, entries: dict, message: str) -> None:
    files = _write_celeba(tmp_path, entries=entries)
    with pytest.raises(DataError, match=re.escape(str(files["images"])) + ": " + message):
        load_celeba("test", tmp_path)


def test_unreadable_zip(tmp_path: Path, small_splits: None) -> None:
    files = _write_celeba(tmp_path)
    files["images"].write_bytes(b"not a zip" * 100)
    with pytest.raises(DataError, match=re.escape(str(files["images"])) + ": not a readable zip"):
        load_dataset("celeba", "train", data_dir=tmp_path)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown split 'val'"):
        load_celeba("val")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown label 'Smiling'"):
        load_celeba("test", label="Smiling")
    for size in (0, 64.0, True):
        with pytest.raises(ValueError, match="size must be a positive integer"):
            load_celeba("test", size=size)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="either data_dir or sources"):
        load_celeba("test", tmp_path, sources=("env",))
    with pytest.raises(ValueError, match="unknown source 'tfds'"):
        load_celeba("test", sources=("tfds",))  # type: ignore[arg-type]


def test_dataset_record_checks_attributes() -> None:
    inputs = np.zeros((3, 4, 4, 3), np.float32)
    labels = np.zeros(3, np.int32)
    common = dict(inputs=inputs, labels=labels, name="c", split="test", source="here")
    data = CelebADataset(
        **common, attributes=np.ones((3, 2), np.float32), attribute_names=["a", "b"]
    )
    assert data.attribute_names == ("a", "b")
    np.testing.assert_array_equal(data.attribute("b"), [1, 1, 1])
    with pytest.raises(ValueError, match="no attribute 'c'"):
        data.attribute("c")
    with pytest.raises(ValueError, match=r"attributes must be \[N, len\(attribute_names\)\]"):
        CelebADataset(**common, attributes=np.ones((3, 3), np.float32), attribute_names=("a", "b"))
    with pytest.raises(ValueError, match="attributes must be float32"):
        CelebADataset(**common, attributes=np.ones((3, 1), np.int32), attribute_names=("a",))
    with pytest.raises(ValueError, match="attribute_names given without attributes"):
        CelebADataset(**common, attribute_names=("a",))
    with pytest.raises(ValueError, match=r"image_ids must be \[N\] = \[3\]"):
        CelebADataset(**common, image_ids=np.arange(2))
