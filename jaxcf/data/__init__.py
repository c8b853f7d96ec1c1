"""Data loaders: MNIST and Fashion-MNIST (IDX files or TensorFlow Datasets).

Every problem with the contents of a data file raises :class:`DataError` (a ``ValueError``)
naming the file; data that cannot be found raises ``FileNotFoundError``.
"""

from jaxcf.data.idx import DataError, read_idx_images, read_idx_labels
from jaxcf.data.mnist import (
    CLASS_NAMES,
    DATA_DIR_ENV,
    DEFAULT_SOURCES,
    FASHION_MNIST_CLASS_NAMES,
    MNIST_CLASS_NAMES,
    SPLIT_SIZES,
    Dataset,
    default_data_dir,
    find_idx_files,
    load_mnist,
)

__all__ = [
    "CLASS_NAMES",
    "DATA_DIR_ENV",
    "DEFAULT_SOURCES",
    "FASHION_MNIST_CLASS_NAMES",
    "MNIST_CLASS_NAMES",
    "SPLIT_SIZES",
    "DataError",
    "Dataset",
    "default_data_dir",
    "find_idx_files",
    "load_mnist",
    "read_idx_images",
    "read_idx_labels",
]
