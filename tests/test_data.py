"""Tests for jaxcf.data: the registry, the IDX reader, the MNIST/Fashion-MNIST loader and its
search order.

Real-data tests read ../shared/data beside the checkout (or $JAXCF_DATA_DIR if set when the
tests start) and are skipped where those files are absent. Everything else builds its files in
``tmp_path`` and points the loader at them, so it runs anywhere.
"""

from __future__ import annotations

import gzip
import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

import jaxcf.data._ecg5000 as ecg_module
import jaxcf.data._lookup as lookup_module
from jaxcf.data import (
    DATA_DIR_ENV,
    FASHION_MNIST_CLASS_NAMES,
    MNIST_CLASS_NAMES,
    DataError,
    Dataset,
    ECG5000Dataset,
    Standardization,
    dataset_names,
    dataset_spec,
    default_data_dir,
    find_idx_files,
    find_medmnist_file,
    load_dataset,
    load_ecg5000,
    load_medmnist,
    load_mnist,
    read_idx_images,
    read_idx_labels,
    register_dataset,
    unregister_dataset,
)

REAL_DATA_DIR = Path(os.environ.get(DATA_DIR_ENV) or default_data_dir())

# From ../shared/data/{mnist,fashion_mnist}/README.md ("Parsed contents").
README_FACTS = {
    ("mnist", "train"): ([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949], 33.318),
    ("mnist", "test"): ([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009], 33.791),
    ("fashion_mnist", "train"): ([6000] * 10, 72.940),
    ("fashion_mnist", "test"): ([1000] * 10, 73.147),
}
TEST_COUNT = 10_000
TEST_STEMS = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(autouse=True)
def _no_data_dir_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with $JAXCF_DATA_DIR unset."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)


@pytest.fixture
def shared_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Points the "shared" source (../shared/data beside the checkout) at an empty tmp dir."""
    folder = tmp_path / "shared_data"
    folder.mkdir()
    monkeypatch.setattr(lookup_module, "default_data_dir", lambda: folder)
    return folder


def _has_real(dataset: str, split: str) -> bool:
    try:
        find_idx_files(REAL_DATA_DIR, dataset, split)
    except FileNotFoundError:
        return False
    return True


# ----------------------------------------------------------------------------- file makers


def _idx(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    """An IDX file's bytes: big-endian magic and dimension sizes, then the payload."""
    return struct.pack(f">{1 + len(dims)}I", magic, *dims) + payload


def _write(path: Path, data: bytes) -> Path:
    """Writes ``data``, gzip-compressed when ``path`` ends in ``.gz``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, compresslevel=1) if path.suffix == ".gz" else data)
    return path


def _write_test_split(
    folder: Path,
    *,
    pixel: int = 7,
    gz: bool = False,
    count: int = TEST_COUNT,
    labels: np.ndarray | None = None,
) -> tuple[Path, Path]:
    """Writes a well-formed "test" split: ``count`` images all of value ``pixel``."""
    suffix = ".gz" if gz else ""
    if labels is None:
        labels = np.arange(count, dtype=np.uint8) % 10
    images = _write(
        folder / f"{TEST_STEMS[0]}{suffix}",
        _idx(2051, (count, 28, 28), bytes([pixel]) * (count * 28 * 28)),
    )
    label_file = _write(folder / f"{TEST_STEMS[1]}{suffix}", _idx(2049, (count,), labels.tobytes()))
    return images, label_file


def _pixel(dataset: Dataset) -> float:
    """The (constant) value of a fake split's images, as a raw byte."""
    return float(dataset.images[0, 0, 0, 0] * 255)


# ----------------------------------------------------------------------------- real data


@pytest.mark.parametrize(("dataset", "split"), list(README_FACTS))
def test_real_data_matches_readme(dataset: str, split: str) -> None:
    if not _has_real(dataset, split):
        pytest.skip(f"no {dataset} {split} files in {REAL_DATA_DIR}")
    counts, mean_byte = README_FACTS[dataset, split]
    data = load_mnist(split, data_dir=REAL_DATA_DIR, dataset=dataset)
    n = sum(counts)
    assert data.images.shape == (n, 28, 28, 1)
    assert data.images.dtype == np.float32
    assert data.labels.shape == (n,)
    assert data.labels.dtype == np.int32
    assert data.images.min() == 0.0
    assert data.images.max() == 1.0
    assert np.bincount(data.labels, minlength=10).tolist() == counts
    assert float(data.images.mean()) * 255 == pytest.approx(mean_byte, abs=1e-3)
    assert (data.name, data.split, len(data)) == (dataset, split, n)
    assert Path(data.source).name == dataset
    expected_names = FASHION_MNIST_CLASS_NAMES if dataset == "fashion_mnist" else MNIST_CLASS_NAMES
    assert data.class_names == expected_names
    assert len(data.class_names) == 10


def test_fashion_class_names_follow_readme() -> None:
    assert FASHION_MNIST_CLASS_NAMES[0] == "T-shirt/top"
    assert FASHION_MNIST_CLASS_NAMES[9] == "Ankle boot"
    assert MNIST_CLASS_NAMES == tuple("0123456789")


def test_default_resolution_reads_shared_data_beside_checkout() -> None:
    shared = default_data_dir()
    assert shared.parts[-2:] == ("shared", "data")
    if not _has_real("mnist", "test") or REAL_DATA_DIR != shared:
        pytest.skip(f"no MNIST files in {shared}")
    data = load_mnist("test")
    assert Path(data.source) == (shared / "mnist").resolve()


def test_loads_are_cached_and_read_only(tmp_path: Path) -> None:
    _write_test_split(tmp_path)
    first = load_mnist("test", data_dir=tmp_path)
    assert load_mnist("test", data_dir=tmp_path) is first
    with pytest.raises(ValueError, match="read-only"):
        first.images[0, 0, 0, 0] = 0.5
    with pytest.raises(ValueError, match="read-only"):
        first.labels[0] = 3
    # A file that changes on disk is read again.
    _write_test_split(tmp_path, pixel=9)
    assert _pixel(load_mnist("test", data_dir=tmp_path)) == pytest.approx(9)


# ----------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("subfolder", [False, True], ids=["direct", "subfolder"])
@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_layouts_and_compression(tmp_path: Path, subfolder: bool, gz: bool) -> None:
    folder = tmp_path / "fashion_mnist" if subfolder else tmp_path
    labels = (np.arange(TEST_COUNT) * 7 % 10).astype(np.uint8)
    _write_test_split(folder, pixel=51, gz=gz, labels=labels)
    data = load_mnist("test", data_dir=tmp_path, dataset="fashion_mnist")
    assert Path(data.source) == folder.resolve()
    assert data.images.shape == (TEST_COUNT, 28, 28, 1)
    np.testing.assert_array_equal(data.images, np.float32(51 / 255))
    np.testing.assert_array_equal(data.labels, labels.astype(np.int32))
    assert data.class_names == FASHION_MNIST_CLASS_NAMES


def test_folder_named_for_the_other_dataset_is_not_used(tmp_path: Path) -> None:
    _write_test_split(tmp_path / "mnist")
    with pytest.raises(FileNotFoundError, match="named for 'mnist'"):
        load_mnist("test", data_dir=tmp_path / "mnist", dataset="fashion_mnist")


def test_only_one_of_the_two_files_present(tmp_path: Path) -> None:
    images, labels = _write_test_split(tmp_path)
    labels.unlink()
    with pytest.raises(FileNotFoundError, match=f"found {images.name} but not {TEST_STEMS[1]}"):
        load_mnist("test", data_dir=tmp_path)


# ----------------------------------------------------------------------------- search order
#
# Semantics: an explicit data_dir is the only place looked at. Otherwise $JAXCF_DATA_DIR, then
# ../shared/data, then TFDS; a source *without* the files is skipped (an env dir without them
# also warns), a source *with broken* files raises DataError at once.


def test_explicit_dir_beats_env_and_shared(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_test_split(shared_dir / "mnist", pixel=3)
    _write_test_split(tmp_path / "env" / "mnist", pixel=1)
    _write_test_split(tmp_path / "explicit", pixel=2)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    data = load_mnist("test", data_dir=tmp_path / "explicit")
    assert data.source == str((tmp_path / "explicit").resolve())
    assert _pixel(data) == pytest.approx(2)


def test_env_beats_shared(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_test_split(shared_dir / "mnist", pixel=3)
    _write_test_split(tmp_path / "env" / "mnist", pixel=1, gz=True)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    data = load_mnist("test")
    assert data.source == str((tmp_path / "env" / "mnist").resolve())
    assert _pixel(data) == pytest.approx(1)


def test_shared_used_when_env_unset(shared_dir: Path) -> None:
    _write_test_split(shared_dir / "mnist", pixel=3)
    data = load_mnist("test")
    assert data.source == str((shared_dir / "mnist").resolve())
    assert _pixel(data) == pytest.approx(3)


def test_env_without_files_falls_through_with_warning(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_test_split(shared_dir / "mnist", pixel=3)
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "empty"))
    with pytest.warns(UserWarning, match=rf"\${DATA_DIR_ENV}=.*empty does not hold mnist test"):
        data = load_mnist("test")
    assert _pixel(data) == pytest.approx(3)


def test_broken_env_files_raise_instead_of_falling_through(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_test_split(shared_dir / "mnist", pixel=3)
    _write_test_split(tmp_path / "env", count=TEST_COUNT - 1)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    with pytest.raises(
        DataError, match=f"{TEST_STEMS[0]}: header says 9999 images, expected 10000"
    ):
        load_mnist("test")


def test_explicit_dir_without_files_does_not_fall_through(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_test_split(shared_dir / "mnist")
    _write_test_split(tmp_path / "env")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=f"looked for {TEST_STEMS[0]}") as info:
        load_mnist("test", data_dir=tmp_path / "empty")
    assert TEST_STEMS[1] in str(info.value)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        load_mnist("test", data_dir=tmp_path / "missing")


def test_all_sources_failing_lists_each_reason(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args, **kwargs):
        raise RuntimeError("no internet here")

    monkeypatch.setattr(tfds, "data_source", offline)
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "empty"))
    with pytest.warns(UserWarning), pytest.raises(FileNotFoundError) as info:
        load_mnist("test", dataset="fashion_mnist")
    message = str(info.value)
    assert "could not load fashion_mnist test from any source" in message
    assert re.search(r"- env: \$JAXCF_DATA_DIR=.*empty: no fashion_mnist test files", message)
    assert re.search(
        r"- shared: .*no fashion_mnist test files in .*shared_data: looked for", message
    )
    assert "- tfds: RuntimeError: no internet here" in message


def test_sources_argument_selects_and_orders(shared_dir: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_mnist("test", sources=("shared", "env"))
    message = str(info.value)
    assert message.index("- shared:") < message.index("- env: $JAXCF_DATA_DIR is not set")
    assert "tfds" not in message


@pytest.mark.parametrize(
    "kwargs",
    [
        {"split": "validation"},
        {"dataset": "kmnist"},
        {"sources": "tfds"},
        {"sources": ()},
        {"sources": ("web",)},
        {"sources": ("tfds",), "data_dir": "."},
    ],
)
def test_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        load_mnist(**kwargs)


# ----------------------------------------------------------------------------- TFDS


def test_tfds_source_with_mock_data() -> None:
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        data = load_mnist("train", sources=("tfds",))
        raw = tfds.data_source("mnist", split="train")
        raw_images = np.stack([raw[i]["image"] for i in range(len(raw))])
        raw_labels = np.array([raw[i]["label"] for i in range(len(raw))])
    assert raw_images.dtype == np.uint8
    assert raw_images.shape == (6, 28, 28, 1)
    assert data.source == "tfds"
    assert (data.name, data.split, len(data)) == ("mnist", "train", 6)
    assert data.images.dtype == np.float32
    assert data.images.shape == (6, 28, 28, 1)
    assert data.labels.dtype == np.int32
    np.testing.assert_array_equal(data.images, raw_images.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(data.labels, raw_labels)
    assert 0.0 <= data.images.min() <= data.images.max() <= 1.0
    assert data.class_names == MNIST_CLASS_NAMES


def test_falls_through_to_tfds(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "empty"))
    with (
        tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE),
        pytest.warns(UserWarning),
    ):
        data = load_mnist("test", dataset="fashion_mnist")
    assert data.source == "tfds"
    assert data.images.shape == (3, 28, 28, 1)
    assert data.class_names == FASHION_MNIST_CLASS_NAMES


# ----------------------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path: Path, suffix: str) -> None:
    pixels = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    images = _write(tmp_path / f"im{suffix}", _idx(2051, (3, 28, 28), pixels.tobytes()))
    labels = _write(tmp_path / f"lb{suffix}", _idx(2049, (3,), bytes([4, 0, 9])))
    out = read_idx_images(images, expected_count=3)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, pixels)
    np.testing.assert_array_equal(read_idx_labels(labels, expected_count=3), [4, 0, 9])
    other = _write(tmp_path / "small", _idx(2051, (2, 5, 4), bytes(40)))
    assert read_idx_images(other, expected_shape=None).shape == (2, 5, 4)


def _images_error(path: Path, data: bytes, **kwargs) -> str:
    _write(path, data)
    with pytest.raises(DataError) as info:
        read_idx_images(path, **kwargs)
    assert str(info.value).startswith(f"{path}: ")
    return str(info.value)


def test_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    message = _images_error(path, _idx(2049, (10,), bytes(10)))
    assert message.startswith(
        f"{path}: bad magic number 2049, expected 2051 (an IDX image file); this is an IDX label"
    )
    labels = _write(tmp_path / "labels", _idx(1234, (28, 28, 28), bytes(8)))
    with pytest.raises(
        DataError, match="labels: bad magic number 1234, expected 2049 .an IDX label"
    ):
        read_idx_labels(labels)


def test_truncated_payload(tmp_path: Path) -> None:
    message = _images_error(tmp_path / "im.gz", _idx(2051, (10_000, 28, 28), bytes(123)))
    assert message.endswith(
        "truncated: header says 10000 images of 28x28 = 7840000 bytes, found 123"
    )
    labels = _write(tmp_path / "lb", _idx(2049, (10,), bytes(9)))
    with pytest.raises(
        DataError, match=r"lb: truncated: header says 10 labels = 10 bytes, found 9"
    ):
        read_idx_labels(labels)


def test_extra_bytes(tmp_path: Path) -> None:
    message = _images_error(tmp_path / "im", _idx(2051, (1, 28, 28), bytes(784 + 5)))
    assert "5 extra bytes: header says 1 images of 28x28 = 784 bytes, found 789" in message


def test_truncated_header(tmp_path: Path) -> None:
    assert "truncated header" in _images_error(tmp_path / "im", struct.pack(">II", 2051, 1))
    assert "found 0 bytes" in _images_error(tmp_path / "empty", b"")


def test_wrong_count_and_image_size(tmp_path: Path) -> None:
    data = _idx(2051, (5, 28, 28), bytes(5 * 784))
    message = _images_error(tmp_path / "im", data, expected_count=10_000)
    assert message.endswith("header says 5 images, expected 10000")
    big = _idx(2051, (1, 32, 32), bytes(1024))
    message = _images_error(tmp_path / "big", big)
    assert message.endswith("header says images of 32x32 pixels, expected 28x28")
    labels = _write(tmp_path / "lb", _idx(2049, (3,), bytes(3)))
    with pytest.raises(DataError, match="lb: header says 3 labels, expected 4"):
        read_idx_labels(labels, expected_count=4)


@pytest.mark.parametrize("damage", ["truncate", "flip", "not_gzip"])
def test_corrupt_gzip(tmp_path: Path, damage: str) -> None:
    payload = np.random.default_rng(0).integers(0, 256, 784 * 20, dtype=np.uint8).tobytes()
    good = gzip.compress(_idx(2051, (20, 28, 28), payload))
    if damage == "truncate":
        bad = good[: len(good) // 2]
    elif damage == "flip":
        middle = len(good) // 2
        bad = (
            good[:middle]
            + bytes(b ^ 0xFF for b in good[middle : middle + 16])
            + good[middle + 16 :]
        )
    else:
        bad = _idx(2051, (20, 28, 28), payload)  # Uncompressed bytes under a .gz name.
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(bad)
    expected = "not a gzip stream" if damage == "not_gzip" else "corrupt gzip stream"
    with pytest.raises(DataError, match=re.escape(f"{path}: {expected}")):
        read_idx_images(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz"):
        read_idx_labels(tmp_path / "t10k-labels-idx1-ubyte.gz")


def test_label_out_of_range_in_split(tmp_path: Path) -> None:
    labels = np.zeros(TEST_COUNT, dtype=np.uint8)
    labels[17] = 10
    _write_test_split(tmp_path, labels=labels)
    with pytest.raises(DataError, match=f"{TEST_STEMS[1]}: label 10 out of range 0..9"):
        load_mnist("test", data_dir=tmp_path)


def test_data_error_is_value_error() -> None:
    assert issubclass(DataError, ValueError)


# ----------------------------------------------------------------------------- registry


def test_mnist_and_fashion_mnist_are_registered(tmp_path: Path) -> None:
    assert {"mnist", "fashion_mnist"} <= set(dataset_names())
    assert dataset_names() == tuple(sorted(dataset_names()))
    assert dataset_spec("mnist").splits == ("train", "test")
    _write_test_split(tmp_path / "fashion_mnist", pixel=51)
    data = load_dataset("fashion_mnist", "test", data_dir=tmp_path)
    assert isinstance(data, Dataset)
    assert data.images is data.inputs
    assert data.input_shape == (28, 28, 1)
    assert data.domain == (0.0, 1.0)
    assert data.num_classes == 10 and data.class_names == FASHION_MNIST_CLASS_NAMES
    assert data.source == str((tmp_path / "fashion_mnist").resolve())
    assert load_dataset("fashion_mnist", "test", data_dir=str(tmp_path)) is data  # cached
    assert "input_shape=(28, 28, 1)" in repr(data)


def test_registry_follows_the_lookup_order(shared_dir: Path) -> None:
    _write_test_split(shared_dir / "mnist", pixel=3)
    assert _pixel(load_dataset("mnist", "test")) == pytest.approx(3)


def test_unknown_names_and_splits_are_value_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown data set 'kmnist'; registered: .*mnist"):
        load_dataset("kmnist", "test")
    with pytest.raises(ValueError, match=r"unknown split 'validation' of 'mnist'"):
        load_dataset("mnist", "validation")


def test_register_a_data_set() -> None:
    inputs = np.linspace(-3.0, 3.0, 12, dtype=np.float32).reshape(4, 3)
    calls = []

    def loader(split: str, data_dir: Path | None) -> Dataset:
        calls.append((split, data_dir))
        return Dataset(inputs=inputs, labels=None, name="toy", split=split, source="memory")

    register_dataset("toy", loader, splits=("all",), description="4 rows of 3 features")
    try:
        assert "toy" in dataset_names()
        data = load_dataset("toy", "all", data_dir="somewhere")
        assert calls == [("all", Path("somewhere"))]
        assert data.labels is None and data.domain is None  # unbounded tabular features
        assert (data.input_shape, data.num_classes, len(data)) == ((3,), 0, 4)
        with pytest.raises(ValueError, match="already registered"):
            register_dataset("toy", loader)
        register_dataset("toy", lambda split, data_dir: "not a dataset", replace=True)
        with pytest.raises(TypeError, match="returned str"):
            load_dataset("toy", "train")
    finally:
        unregister_dataset("toy")
    assert "toy" not in dataset_names()
    with pytest.raises(ValueError, match="unknown data set"):
        unregister_dataset("toy")


@pytest.mark.parametrize(
    ("name", "splits"), [("Bad-Name", ("train",)), ("", ("train",)), ("ok", ())]
)
def test_register_rejects_bad_names_and_splits(name: str, splits: tuple) -> None:
    with pytest.raises(ValueError):
        register_dataset(name, lambda split, data_dir: None, splits=splits)


def test_dataset_record_checks_its_arrays() -> None:
    x = np.zeros((5, 2), np.float32)
    with pytest.raises(ValueError, match=r"labels must be \[N\] = \[5\]"):
        Dataset(inputs=x, labels=np.zeros(4, np.int32), name="t", split="s", source="m")
    with pytest.raises(ValueError, match="integers"):
        Dataset(inputs=x, labels=np.zeros(5, np.float32), name="t", split="s", source="m")
    with pytest.raises(ValueError, match="low < high"):
        Dataset(inputs=x, labels=None, name="t", split="s", source="m", domain=(1.0, 0.0))
    with pytest.raises(ValueError, match=r"\[N, ...\]"):
        Dataset(inputs=np.zeros(5), labels=None, name="t", split="s", source="m")
    data = Dataset(inputs=x, labels=None, name="t", split="s", source="m", domain=(-1, 1))
    assert data.domain == (-1.0, 1.0) and isinstance(data.domain[0], float)


# ----------------------------------------------------------------------------- ECG5000
#
# The archive's files are swapped on purpose: split "train" reads ECG5000_TEST.tsv (4,500
# beats), "test" reads ECG5000_TRAIN.tsv (500), as the paper trained on 4,500 beats.

ECG_SIZES = {"train": 4500, "test": 500}
# From the data folder's ecg5000/README.md ("Parsed contents"): archive classes 1..5 per file.
ECG_README_COUNTS = {"train": [2627, 1590, 86, 175, 22], "test": [292, 177, 10, 19, 2]}


@pytest.fixture
def ecg_shared_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Points the ECG loader's "shared" source at an empty tmp dir."""
    folder = tmp_path / "shared_data"
    folder.mkdir()
    monkeypatch.setattr(lookup_module, "default_data_dir", lambda: folder)
    return folder


def _ecg_tables(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Fake archive contents per split: labels 1..5 sorted as in the archive (a fifth each)
    and values whose mean (3 in "train", -1 in "test") and spread (2, 0.5) make the
    standardisation visible."""
    rng = np.random.default_rng(seed)
    tables = {}
    for split, (loc, scale) in {"train": (3.0, 2.0), "test": (-1.0, 0.5)}.items():
        n = ECG_SIZES[split]
        labels = np.repeat(np.arange(1, 6), n // 5)
        tables[split] = (labels, rng.normal(loc, scale, (n, ecg_module.SERIES_LENGTH)))
    return tables


def _write_ecg(
    folder: Path, tables: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
) -> dict[str, Path]:
    """Writes both archive files (UCR-2018 TSV) into ``folder``; returns the path per split."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, (labels, values) in (tables or _ecg_tables()).items():
        path = folder / ecg_module.ARCHIVE_FILES[split]
        table = np.column_stack([labels, values])
        np.savetxt(path, table, fmt=["%d"] + ["%.8g"] * values.shape[1], delimiter="\t")
        paths[split] = path
    return paths


def _edit_line(path: Path, number: int, edit) -> None:
    """Replaces line ``number`` (1-based) of ``path`` by ``edit(fields)`` joined by tabs;
    ``edit`` returning ``None`` deletes the line."""
    lines = path.read_text().splitlines()
    fields = edit(lines[number - 1].split("\t"))
    if fields is None:
        del lines[number - 1]
    else:
        lines[number - 1] = "\t".join(fields)
    path.write_text("\n".join(lines) + "\n")


def test_ecg5000_real_data_matches_readme() -> None:
    try:
        ecg_module.find_ecg5000_files(REAL_DATA_DIR)
    except FileNotFoundError:
        pytest.skip(f"no ecg5000 files in {REAL_DATA_DIR}")
    for split, n in ECG_SIZES.items():
        data = load_dataset("ecg5000", split, data_dir=REAL_DATA_DIR)
        assert (data.name, data.split, len(data)) == ("ecg5000", split, n)
        assert data.inputs.shape == (n, 140, 1) and data.inputs.dtype == np.float32
        assert data.labels.dtype == np.int32
        counts = ECG_README_COUNTS[split]
        assert np.bincount(data.labels).tolist() == [counts[0], sum(counts[1:])]
        assert data.class_names == ("normal", "abnormal") and data.domain is None
        assert Path(data.source).name == "ecg5000"
        # The archive z-normalised every beat (sample std), hence mean ~0 and std sqrt(139/140).
        assert data.standardization.mean == pytest.approx(0.0, abs=1e-9)
        assert data.standardization.std == pytest.approx(0.99642217, abs=1e-8)
        assert np.bincount(data.archive_labels).tolist() == [0, *counts]
    train = load_dataset("ecg5000", "train", data_dir=REAL_DATA_DIR)
    assert float(train.inputs.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(train.inputs.std()) == pytest.approx(1.0, abs=1e-5)
    # The files are sorted by class; the loader's fixed order mixes them from the start.
    assert 0.3 < train.labels[:100].mean() < 0.6


def test_ecg5000_splits_standardised_with_train_statistics(tmp_path: Path) -> None:
    tables = _ecg_tables()
    _write_ecg(tmp_path / "ecg5000", tables)
    train = load_ecg5000("train", data_dir=tmp_path)
    test = load_dataset("ecg5000", "test", data_dir=tmp_path)
    assert isinstance(test, ECG5000Dataset)
    assert (len(train), len(test)) == (4500, 500)
    assert train.input_shape == test.input_shape == (140, 1)
    assert train.source == str((tmp_path / "ecg5000").resolve())
    for data in (train, test):
        # A fixed permutation of the file's lines (sorted by class there), mixed from the start.
        rows = data.archive_rows
        assert sorted(rows.tolist()) == list(range(len(data)))
        np.testing.assert_array_equal(
            rows, load_ecg5000(data.split, data_dir=tmp_path).archive_rows
        )
        assert 0 < data.labels[:50].sum() < 50
        # Archive class 1 -> 0 (normal), 2..5 -> 1 (abnormal).
        archive_labels = tables[data.split][0][rows]
        np.testing.assert_array_equal(data.archive_labels, archive_labels)
        np.testing.assert_array_equal(data.labels, (archive_labels != 1).astype(np.int32))
        assert np.bincount(data.labels).tolist() == [len(data) // 5, len(data) * 4 // 5]
    # One mean and one std over every training value, applied to both splits.
    train_raw, test_raw = tables["train"][1], tables["test"][1][test.archive_rows]
    stats = train.standardization
    assert test.standardization == stats and isinstance(stats, Standardization)
    # The files hold 8 significant digits, hence approx.
    assert stats.mean == pytest.approx(train_raw.mean(), rel=1e-8)
    assert stats.std == pytest.approx(train_raw.std(), rel=1e-8)
    assert stats.mean == pytest.approx(3.0, abs=0.01) and stats.std == pytest.approx(2.0, rel=0.01)
    assert float(train.inputs.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(train.inputs.std()) == pytest.approx(1.0, abs=1e-5)
    expected = ((test_raw - stats.mean) / stats.std).astype(np.float32)[..., None]
    np.testing.assert_allclose(test.inputs, expected, rtol=1e-6, atol=1e-6)
    assert float(test.inputs.mean()) == pytest.approx(-2.0, abs=0.01)  # not its own statistics
    np.testing.assert_allclose(stats.invert(test.inputs[..., 0]), test_raw, rtol=1e-5, atol=1e-5)
    assert ecg_module.ecg5000_standardization(data_dir=tmp_path) == stats
    with pytest.raises(ValueError, match="read-only"):
        test.inputs[0, 0, 0] = 1.0


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f[:-1], r"line 7 has 140 tab-separated fields, expected 141"),
        (lambda f: [*f, "0.5"], r"line 7 has 142 tab-separated fields, expected 141"),
        (lambda f: [f[0], "nan", *f[2:]], r"line 7, column 2 is nan, expected a finite number"),
        (lambda f: [*f[:-1], "-inf"], r"line 7, column 141 is -inf, expected a finite number"),
        (lambda f: [f[0], "abc", *f[2:]], r"line 7 holds 'abc', which is not a number"),
        (lambda f: ["6", *f[1:]], r"line 7 has label 6, expected one of 1, 2, 3, 4, 5"),
        (lambda f: ["0", *f[1:]], r"line 7 has label 0, expected one of"),
        (lambda f: ["1.5", *f[1:]], r"line 7 has label 1.5, expected one of"),
        (lambda f: None, r"499 beats, expected 500"),
    ],
    ids=["short", "long", "nan", "inf", "text", "label6", "label0", "label1.5", "rows"],
)
def test_ecg5000_malformed_file_raises(tmp_path: Path, edit, message: str) -> None:
    paths = _write_ecg(tmp_path)
    _edit_line(paths["test"], 7, edit)
    with pytest.raises(DataError, match=re.escape(str(paths["test"])) + ": " + message):
        load_ecg5000("test", data_dir=tmp_path)
    load_ecg5000("train", data_dir=tmp_path)  # the other file is fine


def test_ecg5000_broken_train_file_breaks_both_splits(tmp_path: Path) -> None:
    """Either split standardises with the training file, so either needs it intact."""
    paths = _write_ecg(tmp_path)
    _edit_line(paths["train"], 4500, lambda f: [f[0], "inf", *f[2:]])
    for split in ("train", "test"):
        with pytest.raises(DataError, match="ECG5000_TEST.tsv: line 4500, column 2 is inf"):
            load_ecg5000(split, data_dir=tmp_path)
    paths["test"].write_text("")
    with pytest.raises(DataError, match="ECG5000_TRAIN.tsv: the file is empty"):
        ecg_module.read_ucr_tsv(paths["test"])


def test_ecg5000_lookup_order(
    tmp_path: Path, ecg_shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = _write_ecg(ecg_shared_dir / "ecg5000")
    assert load_ecg5000("test").source == str(shared["test"].parent.resolve())
    _write_ecg(tmp_path / "env")  # directly, no ecg5000/ subfolder
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    assert load_dataset("ecg5000", "test").source == str((tmp_path / "env").resolve())
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "empty"))
    with pytest.warns(UserWarning, match=r"empty does not hold ecg5000"):
        assert load_ecg5000("test").source == str(shared["test"].parent.resolve())
    with pytest.raises(FileNotFoundError, match="looked for ECG5000_TEST.tsv and ECG5000_TRAIN"):
        load_ecg5000("test", data_dir=tmp_path / "empty")  # explicit: nothing else is tried
    shared["train"].unlink()  # the training file is needed for either split
    with pytest.warns(UserWarning), pytest.raises(FileNotFoundError) as info:
        load_ecg5000("test")
    message = str(info.value)
    assert "could not load ecg5000 test from any source" in message
    assert "found ECG5000_TRAIN.tsv but not ECG5000_TEST.tsv" in message
    with pytest.raises(ValueError, match="unknown split"):
        load_ecg5000("validation")
    assert dataset_spec("ecg5000").splits == ("train", "test")


# ----------------------------------------------------------------------------- MedMNIST
#
# PneumoniaMNIST and BreastMNIST: the official MedMNIST v2 28x28 .npz files, three splits each.
# The real-data tests read <data dir>/medmnist/; the rest write small BreastMNIST-shaped files
# (780 images) into tmp_path.

# From the data folder's medmnist/README.md ("Parsed contents"): images per label (0, 1).
MEDMNIST_README_COUNTS = {
    "pneumoniamnist": {"train": [1214, 3494], "val": [135, 389], "test": [234, 390]},
    "breastmnist": {"train": [147, 399], "val": [21, 57], "test": [42, 114]},
}
MEDMNIST_CLASS_NAMES = {
    "pneumoniamnist": ("normal", "pneumonia"),
    "breastmnist": ("malignant", "normal/benign"),
}
MEDMNIST_PIXELS = {"train": 10, "val": 20, "test": 30}


def _medmnist_arrays(dataset: str = "breastmnist") -> dict[str, np.ndarray]:
    """Official-shaped arrays: split images all of value MEDMNIST_PIXELS[split] except one 0
    and one 255 pixel, labels with the README's counts (sorted)."""
    arrays = {}
    for split, counts in MEDMNIST_README_COUNTS[dataset].items():
        images = np.full((sum(counts), 28, 28), MEDMNIST_PIXELS[split], np.uint8)
        images[0, 0, :2] = (0, 255)
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = np.repeat([0, 1], counts).astype(np.uint8)[:, None]
    return arrays


def _write_medmnist(folder: Path, arrays: dict[str, np.ndarray] | None = None) -> Path:
    """Writes ``folder/breastmnist.npz`` (compressed, as upstream) and returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "breastmnist.npz"
    np.savez_compressed(path, **(_medmnist_arrays() if arrays is None else arrays))
    return path


def _has_real_medmnist(dataset: str) -> bool:
    try:
        find_medmnist_file(REAL_DATA_DIR, dataset)
    except FileNotFoundError:
        return False
    return True


@pytest.mark.parametrize("dataset", list(MEDMNIST_README_COUNTS))
def test_medmnist_real_data_matches_readme(dataset: str) -> None:
    if not _has_real_medmnist(dataset):
        pytest.skip(f"no {dataset}.npz in {REAL_DATA_DIR}")
    for split, counts in MEDMNIST_README_COUNTS[dataset].items():
        data = load_dataset(dataset, split, data_dir=REAL_DATA_DIR)
        n = sum(counts)
        assert (data.name, data.split, len(data)) == (dataset, split, n)
        assert data.inputs.shape == (n, 28, 28, 1) and data.inputs.dtype == np.float32
        assert data.labels.shape == (n,) and data.labels.dtype == np.int32
        assert 0.0 <= data.inputs.min() and data.inputs.max() <= 1.0
        assert data.inputs.max() > 0.99  # bytes / 255, not raw bytes or [-1, 1]
        np.testing.assert_array_equal(data.inputs * 255, np.round(data.inputs * 255))
        assert np.bincount(data.labels).tolist() == counts
        assert data.class_names == MEDMNIST_CLASS_NAMES[dataset] and data.num_classes == 2
        assert data.domain == (0.0, 1.0)
        assert Path(data.source).name == "medmnist"
        assert load_medmnist(split, data_dir=REAL_DATA_DIR, dataset=dataset) is data  # cached


def test_medmnist_default_lookup_reads_shared_data() -> None:
    if not _has_real_medmnist("pneumoniamnist") or REAL_DATA_DIR != default_data_dir():
        pytest.skip(f"no pneumoniamnist.npz in {default_data_dir()}")
    data = load_dataset("pneumoniamnist", "val")
    assert Path(data.source) == (default_data_dir() / "medmnist").resolve()
    assert np.bincount(data.labels).tolist() == MEDMNIST_README_COUNTS["pneumoniamnist"]["val"]


def test_medmnist_is_registered() -> None:
    assert {"pneumoniamnist", "breastmnist"} <= set(dataset_names())
    for name in ("pneumoniamnist", "breastmnist"):
        spec = dataset_spec(name)
        assert spec.splits == ("train", "val", "test")
        assert "float32 [N, 28, 28, 1] in [0, 1], 2 classes" in spec.description
    assert "train 4,708 / val 524 / test 624" in dataset_spec("pneumoniamnist").description


def test_medmnist_loads_splits_from_a_file(tmp_path: Path) -> None:
    path = _write_medmnist(tmp_path / "medmnist")
    for split, counts in MEDMNIST_README_COUNTS["breastmnist"].items():
        data = load_dataset("breastmnist", split, data_dir=tmp_path)
        assert isinstance(data, Dataset) and data.images is data.inputs
        assert data.inputs.shape == (sum(counts), 28, 28, 1) and data.inputs.dtype == np.float32
        assert data.labels.dtype == np.int32
        assert np.bincount(data.labels).tolist() == counts
        assert data.inputs[1, 5, 5, 0] == np.float32(MEDMNIST_PIXELS[split]) / np.float32(255)
        assert (data.inputs.min(), data.inputs.max()) == (0.0, 1.0)
        assert data.source == str(path.parent.resolve())
        assert data.class_names == ("malignant", "normal/benign") and data.domain == (0.0, 1.0)
        # Cached on the file: the same record, with read-only arrays.
        assert load_medmnist(split, data_dir=str(tmp_path), dataset="breastmnist") is data
        with pytest.raises(ValueError, match="read-only"):
            data.inputs[0, 0, 0, 0] = 0.5
        with pytest.raises(ValueError, match="read-only"):
            data.labels[0] = 1
    # Directly in the data directory works too; medmnist/ is tried first.
    direct = _write_medmnist(tmp_path / "direct")
    assert load_medmnist("val", data_dir=direct.parent, dataset="breastmnist").source == str(
        direct.parent.resolve()
    )


def test_medmnist_lookup_order(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = _write_medmnist(shared_dir / "medmnist")
    assert load_dataset("breastmnist", "test").source == str(shared.parent.resolve())
    env = _write_medmnist(tmp_path / "env" / "medmnist")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    assert load_dataset("breastmnist", "test").source == str(env.parent.resolve())
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "empty"))
    with pytest.warns(UserWarning, match="empty does not hold breastmnist"):
        assert load_medmnist("test", dataset="breastmnist").source == str(shared.parent.resolve())
    assert load_medmnist("test", dataset="breastmnist", sources=("shared",)).split == "test"


def test_medmnist_missing_data_is_a_clear_error(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=re.escape(f"{missing}: no such directory")):
        load_dataset("pneumoniamnist", "train", data_dir=missing)
    # An explicit directory without the file: nothing else is tried, even a shared copy.
    _write_medmnist(shared_dir / "medmnist")
    with pytest.raises(FileNotFoundError, match="no breastmnist.npz in .*medmnist and "):
        load_medmnist("train", data_dir=tmp_path, dataset="breastmnist")
    # No source has it: each source and why, then what to do.
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    with pytest.warns(UserWarning), pytest.raises(FileNotFoundError) as info:
        load_dataset("pneumoniamnist", "train")
    message = str(info.value)
    assert "could not load pneumoniamnist train from any source" in message
    assert f"- env: ${DATA_DIR_ENV}={tmp_path}: no pneumoniamnist.npz in" in message
    assert "- shared: the shared data folder beside the checkout: no pneumoniamnist.npz" in message
    assert "medmnist/pneumoniamnist.npz" in message.splitlines()[-1]


def test_medmnist_unknown_split_dataset_or_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown split 'validation' of 'pneumoniamnist'"):
        load_dataset("pneumoniamnist", "validation")
    with pytest.raises(ValueError, match=r"unknown split 'valid'; expected one of \('train', "):
        load_medmnist("valid")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown dataset 'dermamnist'"):
        load_medmnist("train", dataset="dermamnist")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown source 'tfds'"):
        load_medmnist("train", sources=("tfds",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="either data_dir or sources"):
        load_medmnist("train", data_dir=tmp_path, sources=("env",))


def _medmnist_edit(key: str, edit):
    arrays = _medmnist_arrays()
    arrays[key] = edit(arrays[key])
    return arrays


def _without(key: str) -> dict[str, np.ndarray]:
    arrays = _medmnist_arrays()
    del arrays[key]
    return arrays


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            _medmnist_edit("val_images", lambda a: a[:-1]),
            r"val_images holds 77 images, expected 78 \(breastmnist val\)",
        ),
        (
            _medmnist_edit("test_labels", lambda a: np.where(a == 0, 1, a)),
            r"test_labels: \(0, 156\) images per label, expected \(42, 114\)",
        ),
        (
            _medmnist_edit("train_images", lambda a: a.astype(np.float32)),
            r"train_images are float32 \(546, 28, 28\), expected uint8 \(N, 28, 28\)",
        ),
        (
            _medmnist_edit("train_images", lambda a: a[:, :27]),
            r"train_images are uint8 \(546, 27, 28\), expected uint8",
        ),
        (
            _medmnist_edit("val_labels", lambda a: a[:-1]),
            r"val_labels are uint8 \(77, 1\), expected integers \(78, 1\)",
        ),
        (_medmnist_edit("val_labels", lambda a: a + 1), "val_labels: label 2 out of range 0..1"),
        (_without("test_labels"), "no test_labels array"),
    ],
    ids=["count", "label-counts", "dtype", "image-size", "labels-count", "label2", "missing"],
)
def test_medmnist_wrong_file_raises(tmp_path: Path, arrays, message: str) -> None:
    path = _write_medmnist(tmp_path / "medmnist", arrays)
    # The whole file is checked, whichever split is asked for.
    for split in ("train", "val", "test"):
        with pytest.raises(DataError, match=re.escape(str(path)) + ": " + message):
            load_medmnist(split, data_dir=tmp_path, dataset="breastmnist")


@pytest.mark.parametrize("damage", ["truncated", "not-npz"])
def test_medmnist_unreadable_file_raises(tmp_path: Path, damage: str) -> None:
    path = _write_medmnist(tmp_path / "medmnist")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not a zip" * 100)
    with pytest.raises(DataError, match=re.escape(str(path)) + ": not a readable .npz file"):
        load_dataset("breastmnist", "train", data_dir=tmp_path)
    assert issubclass(DataError, ValueError)
