"""Data sets by name, and their loaders: MNIST and Fashion-MNIST (IDX files or TFDS), ECG5000
beats (UCR files), UCI Adult (the raw files, encoded by :mod:`jaxcf.tabular`), the
PneumoniaMNIST and BreastMNIST images of MedMNIST (the official ``.npz`` files) and 10,000
CelebA faces at 64x64 with 13 attributes, labelled male or young (a zip of JPEGs and the
official attribute list).

``load_dataset(name, split, data_dir=None)`` loads any registered data set as a :class:`Dataset`
(inputs, labels, class names, value domain); ``dataset_names()`` lists them and
``register_dataset(name, loader)`` adds one. Importing this package registers every data set
it ships.

Every problem with the contents of a data file raises :class:`DataError` (a ``ValueError``)
naming the file; data that cannot be found raises ``FileNotFoundError``.
"""

from jaxcf.data._adult import (
    ADULT_CONSTRAINTS,
    ADULT_SCHEMA,
    adult_transform,
    load_adult,
    load_adult_table,
)
from jaxcf.data._celeba import (
    AIP_ATTRIBUTES,
    CelebADataset,
    find_celeba_files,
    load_celeba,
    read_celeba_attributes,
    read_celeba_images,
)
from jaxcf.data._dataset import Dataset
from jaxcf.data._ecg5000 import ECG5000Dataset, Standardization, load_ecg5000
from jaxcf.data._idx import DataError, read_idx_images, read_idx_labels
from jaxcf.data._lookup import DATA_DIR_ENV, default_data_dir
from jaxcf.data._medmnist import find_medmnist_file, load_medmnist, read_medmnist_npz
from jaxcf.data._mnist import (
    CLASS_NAMES,
    DEFAULT_SOURCES,
    FASHION_MNIST_CLASS_NAMES,
    MNIST_CLASS_NAMES,
    SPLIT_SIZES,
    find_idx_files,
    load_mnist,
)
from jaxcf.data._readers import (
    IMAGE_SUFFIXES,
    DatasetReader,
    ImageFolder,
    NpyFolder,
    RowReader,
    TFDSSplit,
)
from jaxcf.data._registry import (
    DatasetSpec,
    dataset_names,
    dataset_spec,
    load_dataset,
    register_dataset,
    unregister_dataset,
)
from jaxcf.data._tables import TableFile, read_table, table_schema, typed_table

__all__ = [
    "ADULT_CONSTRAINTS",
    "ADULT_SCHEMA",
    "AIP_ATTRIBUTES",
    "CLASS_NAMES",
    "DATA_DIR_ENV",
    "DEFAULT_SOURCES",
    "FASHION_MNIST_CLASS_NAMES",
    "IMAGE_SUFFIXES",
    "MNIST_CLASS_NAMES",
    "SPLIT_SIZES",
    "CelebADataset",
    "DataError",
    "Dataset",
    "DatasetReader",
    "DatasetSpec",
    "ECG5000Dataset",
    "ImageFolder",
    "NpyFolder",
    "RowReader",
    "Standardization",
    "TFDSSplit",
    "TableFile",
    "adult_transform",
    "dataset_names",
    "dataset_spec",
    "default_data_dir",
    "find_celeba_files",
    "find_idx_files",
    "find_medmnist_file",
    "load_adult",
    "load_adult_table",
    "load_celeba",
    "load_dataset",
    "load_ecg5000",
    "load_medmnist",
    "load_mnist",
    "read_celeba_attributes",
    "read_celeba_images",
    "read_idx_images",
    "read_idx_labels",
    "read_medmnist_npz",
    "read_table",
    "register_dataset",
    "table_schema",
    "typed_table",
    "unregister_dataset",
]
