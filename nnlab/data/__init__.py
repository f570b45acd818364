"""Data: the IDX format, MNIST/Fashion-MNIST (on disk or downloaded), tensorflow-datasets sets,
synthetic sets, detection scenes, splits and normalization."""

from ._augment import Augmentation, augment
from ._checksums import ChecksumError, read_manifest, verify_checksums
from ._dataset import Dataset, make_dataset
from ._datasets import fashion_mnist, find, load, load_dataset, load_idx_folder, locate, mnist, verify_folder
from ._download import DownloadError, download
from ._idx import IdxFormatError, read_idx, write_idx
from ._normalize import Normalization, fit_normalization, fixed_normalization
from ._places import DataNotFoundError, data_root
from ._published import PUBLISHED
from ._scenes import FASHION_CLASSES, MNIST_CLASSES, Scenes, fashion_mnist_scenes, make_scenes, mnist_scenes
from ._splits import Splits, train_val_test
from ._synthetic import blobs, spirals, xor
from ._tfds import load_tfds

__all__ = [
    "Augmentation",
    "ChecksumError",
    "DataNotFoundError",
    "Dataset",
    "DownloadError",
    "FASHION_CLASSES",
    "IdxFormatError",
    "MNIST_CLASSES",
    "Normalization",
    "PUBLISHED",
    "Scenes",
    "Splits",
    "augment",
    "blobs",
    "data_root",
    "download",
    "fashion_mnist",
    "fashion_mnist_scenes",
    "find",
    "fit_normalization",
    "fixed_normalization",
    "load",
    "load_dataset",
    "load_idx_folder",
    "load_tfds",
    "locate",
    "make_dataset",
    "make_scenes",
    "mnist",
    "mnist_scenes",
    "read_idx",
    "read_manifest",
    "spirals",
    "train_val_test",
    "verify_checksums",
    "verify_folder",
    "write_idx",
    "xor",
]
