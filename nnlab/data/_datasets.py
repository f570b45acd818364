"""MNIST and Fashion-MNIST from local IDX folders, or tensorflow-datasets as a fallback.

Search order for a data set called `name`: the `data_dir` argument, then
`$NNLAB_DATA_DIR/<name>/`, `~/.cache/nnlab/<name>/`, `/usr/share/datasets/<name>/`
(where Debian's `dataset-fashion-mnist` installs), then tensorflow-datasets when it is
installed and has the data prepared. A folder is used when it holds the four standard
IDX files (`train-images-idx3-ubyte[.gz]`, ...). Where a folder has a `SHA256SUMS`
manifest, each file listed there is checked against it before reading.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..report import file_sha256
from ._dataset import Dataset
from ._idx import read_idx

_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
SYSTEM_DIR = Path("/usr/share/datasets")  # where Debian's dataset packages install
_TFDS_NAMES = {"mnist": "mnist", "fashion-mnist": "fashion_mnist"}


class DataNotFoundError(FileNotFoundError):
    """No source could provide a data set; the message lists where nnlab looked."""


class ChecksumError(ValueError):
    """A local data file's SHA-256 differs from the one its manifest records."""


def _candidates(name: str, data_dir) -> list[Path]:
    out = []
    if data_dir is not None:
        out += [Path(data_dir), Path(data_dir) / name]
    if os.environ.get("NNLAB_DATA_DIR"):
        out.append(Path(os.environ["NNLAB_DATA_DIR"]) / name)
    out.append(Path.home() / ".cache" / "nnlab" / name)
    out.append(SYSTEM_DIR / name)
    return out


def _find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _manifest(folder: Path) -> dict[str, str]:
    path = folder / "SHA256SUMS"
    if not path.is_file():
        return {}
    sums = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def verify_checksums(folder: str | os.PathLike, files: list[str | os.PathLike], known: dict[str, str]) -> None:
    """Raises `ChecksumError` for the first file whose SHA-256 differs from `known[file name]`."""
    for f in map(Path, files):
        expected = known.get(f.name)
        if expected is not None and (got := file_sha256(f)) != expected:
            raise ChecksumError(
                f"{f}: SHA-256 mismatch, expected {expected} (from {Path(folder) / 'SHA256SUMS'}), "
                f"got {got}; the file is corrupt or was replaced: fetch it again"
            )


def _images(a: np.ndarray, path: Path) -> np.ndarray:
    if a.ndim != 3:
        raise ValueError(f"{path}: expected images of shape [n, height, width], got shape {a.shape}")
    return (a.astype(np.float32) / np.float32(255.0))[..., None]


def _pair(x: np.ndarray, y: np.ndarray, px: Path, py: Path, name: str) -> Dataset:
    if y.ndim != 1:
        raise ValueError(f"{py}: expected labels of shape [n], got shape {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{px} holds {x.shape[0]} images but {py} holds {y.shape[0]} labels; they must agree")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise ValueError(f"{py}: expected labels in [0, 9], got values in [{y.min()}, {y.max()}]")
    return Dataset(x, y.astype(np.int32), 10, name)


def load_idx_folder(folder: str | os.PathLike, *, name: str = "data", verify: bool = True) -> tuple[Dataset, Dataset]:
    """Reads the four standard IDX files in `folder` as (train, test) data sets.

    Images come back as x: [n, 28, 28, 1] float32 in [0, 1], labels as y: [n] int32.
    """
    folder = Path(folder)
    paths = {k: _find_file(folder, stem) for k, stem in _FILES.items()}
    missing = [_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise DataNotFoundError(f"{folder}: missing {', '.join(missing)} (raw or .gz)")
    if verify:
        verify_checksums(folder, list(paths.values()), _manifest(folder))
    arrays = {k: read_idx(p) for k, p in paths.items()}
    train = _pair(_images(arrays["train_x"], paths["train_x"]), arrays["train_y"], paths["train_x"], paths["train_y"], f"{name}-train")
    test = _pair(_images(arrays["test_x"], paths["test_x"]), arrays["test_y"], paths["test_x"], paths["test_y"], f"{name}-test")
    return train, test


def _from_tfds(name: str) -> tuple[Dataset, Dataset] | None:
    try:
        import tensorflow_datasets as tfds  # optional extra
    except ImportError:
        return None
    try:
        source = tfds.data_source(_TFDS_NAMES[name], try_gcs=False)
        splits = []
        for split in ("train", "test"):
            records = source[split]
            x = np.stack([np.asarray(r["image"]) for r in records])
            y = np.asarray([int(r["label"]) for r in records])
            splits.append(_pair(_images(x.reshape(x.shape[:3]), Path(f"tfds:{name}/{split}")), y,
                                Path(f"tfds:{name}/{split}/image"), Path(f"tfds:{name}/{split}/label"), f"{name}-{split}"))
        return splits[0], splits[1]
    except Exception:  # tfds raises many kinds of errors when a set is not prepared
        return None


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *, verify: bool = True) -> tuple[Dataset, Dataset]:
    """(train, test) for `name` in {'mnist', 'fashion-mnist'}, from the first source that has it."""
    if name not in _TFDS_NAMES:
        raise ValueError(f"name: expected one of {sorted(_TFDS_NAMES)}, got {name!r}")
    looked = []
    for folder in _candidates(name, data_dir):
        if all(_find_file(folder, stem) for stem in _FILES.values()):
            return load_idx_folder(folder, name=name, verify=verify)
        looked.append(str(folder))
    found = _from_tfds(name)
    if found is not None:
        return found
    raise DataNotFoundError(
        f"{name}: no source has the data. Looked for the four IDX files "
        f"({', '.join(_FILES.values())}, raw or .gz) in: {'; '.join(looked)}; "
        f"and in tensorflow-datasets (not installed, or '{_TFDS_NAMES[name]}' not prepared). "
        f"Put the files in one of those folders, set NNLAB_DATA_DIR to a folder holding '{name}/', "
        f"or pass data_dir / --data-dir."
    )


def mnist(data_dir: str | os.PathLike | None = None, *, verify: bool = True) -> tuple[Dataset, Dataset]:
    """MNIST digits as (train [60000], test [10000]); x: [n, 28, 28, 1] float32 in [0, 1]."""
    return load_dataset("mnist", data_dir, verify=verify)


def fashion_mnist(data_dir: str | os.PathLike | None = None, *, verify: bool = True) -> tuple[Dataset, Dataset]:
    """Fashion-MNIST as (train [60000], test [10000]); same layout as `mnist`."""
    return load_dataset("fashion-mnist", data_dir, verify=verify)
