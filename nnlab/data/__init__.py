"""Data: the IDX format, MNIST/Fashion-MNIST, synthetic sets, detection scenes, splits and normalization."""

from ._augment import Augmentation, augment
from ._dataset import Dataset, make_dataset
from ._datasets import ChecksumError, DataNotFoundError, fashion_mnist, load_dataset, load_idx_folder, mnist, verify_checksums
from ._idx import IdxFormatError, read_idx, write_idx
from ._normalize import Normalization, fit_normalization, fixed_normalization
from ._scenes import FASHION_CLASSES, MNIST_CLASSES, Scenes, fashion_mnist_scenes, make_scenes, mnist_scenes
from ._splits import Splits, train_val_test
from ._synthetic import blobs, spirals, xor

__all__ = [
    "Augmentation", "ChecksumError", "DataNotFoundError", "Dataset", "FASHION_CLASSES", "IdxFormatError",
    "MNIST_CLASSES", "Normalization", "Scenes", "Splits",
    "augment", "blobs", "fashion_mnist", "fashion_mnist_scenes", "fit_normalization", "fixed_normalization",
    "load_dataset", "load_idx_folder", "make_dataset", "make_scenes", "mnist", "mnist_scenes", "read_idx", "spirals",
    "train_val_test", "verify_checksums", "write_idx", "xor",
]
