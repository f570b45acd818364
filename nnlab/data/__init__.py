"""Data: the IDX format, MNIST/Fashion-MNIST, synthetic sets, splits and normalization."""

from ._augment import Augmentation, augment
from ._dataset import Dataset, make_dataset
from ._datasets import ChecksumError, DataNotFoundError, fashion_mnist, load_dataset, load_idx_folder, mnist, verify_checksums
from ._idx import IdxFormatError, read_idx, write_idx
from ._normalize import Normalization, fit_normalization, fixed_normalization
from ._splits import Splits, train_val_test
from ._synthetic import blobs, spirals, xor

__all__ = [
    "Augmentation", "ChecksumError", "DataNotFoundError", "Dataset", "IdxFormatError", "Normalization", "Splits",
    "augment", "blobs", "fashion_mnist", "fit_normalization", "fixed_normalization", "load_dataset",
    "load_idx_folder", "make_dataset", "mnist", "read_idx", "spirals", "train_val_test",
    "verify_checksums", "write_idx", "xor",
]
