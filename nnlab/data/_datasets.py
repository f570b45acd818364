"""MNIST and Fashion-MNIST from folders of IDX files, downloaded when no folder has them.

Where a set called `name` is looked for: with an explicit `data_dir`, only in `data_dir`
and `data_dir/<name>/` (a folder that does not hold it is an error, never a fallback);
otherwise in `$NNLAB_DATA_DIR/<name>/` (or `~/.cache/nnlab/<name>/` when that variable is
unset), then `/usr/share/datasets/<name>/` (Debian's `dataset-fashion-mnist`), and then it
is downloaded into the first of those (`download`). A folder is used when it holds the
four standard IDX files (`train-images-idx3-ubyte[.gz]`, ...); where it has a
`SHA256SUMS`, the files are checked against it before reading.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..report import file_sha256
from ._checksums import MANIFEST, ChecksumError, read_manifest, verify_checksums
from ._dataset import Dataset
from ._download import download
from ._idx import read_idx
from ._places import IDX_FILES, DataNotFoundError, holds_set, idx_file, search_folders
from ._published import PUBLISHED
from ._tfds import load_tfds


def _labels(y: np.ndarray, path: Path, num_classes: int) -> np.ndarray:
    """`y` as int32 class labels, refusing non-integer values (a float 3.7 is not label 3)."""
    if y.ndim != 1:
        raise ValueError(f"{path}: expected labels of shape [n], got shape {y.shape}")
    if y.dtype.kind == "f" and y.size:
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if bad.size:
            raise ValueError(f"{path}: expected integer class labels, got {str(y[bad[0]])} at index {bad[0]}")
    if y.size and (y.min() < 0 or y.max() > num_classes - 1):
        raise ValueError(f"{path}: expected labels in [0, {num_classes - 1}], got values in [{y.min()}, {y.max()}]")
    return y.astype(np.int32)


def _split(px: Path, py: Path, name: str) -> Dataset:
    """The images of `px` (x: [n, h, w, 1] float32 in [0, 1]) with the labels of `py`."""
    x = read_idx(px)
    if x.ndim != 3:
        raise ValueError(f"{px}: expected images of shape [n, height, width], got shape {x.shape}")
    labels = _labels(read_idx(py), py, 10)
    if x.shape[0] != labels.shape[0]:
        raise ValueError(f"{px} holds {x.shape[0]} images but {py} holds {labels.shape[0]} labels; they must agree")
    return Dataset((x.astype(np.float32) / np.float32(255.0))[..., None], labels, 10, name)


def load_idx_folder(folder: str | os.PathLike, *, name: str = "data", verify: bool = True) -> tuple[Dataset, Dataset]:
    """Reads the four standard IDX files in `folder` as (train, test) data sets.

    Images come back as x: [n, 28, 28, 1] float32 in [0, 1], labels as y: [n] int32. With
    `verify`, the folder's `SHA256SUMS` (when it has one) is read strictly and each file it
    lists is checked before reading.
    """
    folder = Path(folder)
    paths = {k: idx_file(folder, stem) for k, stem in IDX_FILES.items()}
    missing = [IDX_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise DataNotFoundError(f"{folder}: missing {', '.join(missing)} (raw or .gz)")
    found = {k: p for k, p in paths.items() if p is not None}
    if verify:
        verify_checksums(folder, list(found.values()), read_manifest(folder))
    train, test = (_split(found[f"{s}_x"], found[f"{s}_y"], f"{name}-{s}") for s in ("train", "test"))
    return train, test


def find(name: str, data_dir: str | os.PathLike | None = None) -> Path | None:
    """The first folder that holds the four IDX files of `name` (see the module's search order), or None."""
    if name not in PUBLISHED:
        raise ValueError(f"name: expected one of {sorted(PUBLISHED)}, got {name!r}")
    return next((folder for folder in search_folders(name, data_dir) if holds_set(folder)), None)


def locate(
    name: str, data_dir: str | os.PathLike | None = None, *, download_missing: bool = True, mirror: str | None = None
) -> Path:
    """The folder holding `name`: found on disk, else (without `data_dir`) downloaded.

    An explicit `data_dir` that does not hold the set raises `DataNotFoundError`.
    """
    folder = find(name, data_dir)
    if folder is not None:
        return folder
    looked = " or ".join(str(p) for p in search_folders(name, data_dir))
    stems = ", ".join(f"{s}[.gz]" for s in IDX_FILES.values())
    if data_dir is not None:
        raise DataNotFoundError(
            f"{name}: data_dir {data_dir} does not hold the data: looked for {stems} in {looked}; "
            f"`nnlab data download {name} --data-dir {data_dir}` fetches it there"
        )
    if not download_missing:
        raise DataNotFoundError(
            f"{name}: not found: looked for {stems} in {looked}; `nnlab data download {name}` fetches it"
        )
    return download(name, mirror=mirror)


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    verify: bool = True,
    download: bool = True,
    mirror: str | None = None,
) -> tuple[Dataset, Dataset]:
    """(train, test) for `name` in {'mnist', 'fashion-mnist'}: found on disk, else downloaded.

    `download=False` never touches the network; `mirror` is a base URL tried first (see `download`).
    """
    folder = locate(name, data_dir, download_missing=download, mirror=mirror)
    return load_idx_folder(folder, name=name, verify=verify)


def verify_folder(name: str, data_dir: str | os.PathLike | None = None) -> list[tuple[Path, str]]:
    """Checks the files of `name` where nnlab finds them; returns [(file, what it was checked against)].

    Each file is checked against its folder's `SHA256SUMS` when listed there, else against
    the published SHA-256; a raw (uncompressed) file with neither is reported as unchecked.
    Raises `ChecksumError` naming every file that fails, `DataNotFoundError` when no folder holds the set.
    """
    folder = locate(name, data_dir, download_missing=False)
    recorded = read_manifest(folder)
    published = {f.name: f.sha256 for f in PUBLISHED[name].files}
    rows, bad = [], []
    for stem in IDX_FILES.values():
        path = idx_file(folder, stem)
        if path is None:  # removed since `locate` found the folder complete
            raise DataNotFoundError(f"{folder}: missing {stem} (raw or .gz)")
        got = file_sha256(path)
        if path.name in recorded:
            expected, against = recorded[path.name], f"{folder / MANIFEST}"
        elif path.name in published:
            expected, against = published[path.name], "the published SHA-256"
        else:
            rows.append((path, "not checked: no SHA-256 known for it"))
            continue
        if got != expected:
            bad.append(f"{path}: SHA-256 {got}, expected {expected} ({against})")
            continue
        differs = path.name in published and got != published[path.name]
        rows.append((path, f"ok ({against}{'; differs from the published file' if differs else ''})"))
    if bad:
        raise ChecksumError("; ".join(bad))
    return rows


def mnist(
    data_dir: str | os.PathLike | None = None, *, verify: bool = True, download: bool = True
) -> tuple[Dataset, Dataset]:
    """MNIST digits as (train [60000], test [10000]); x: [n, 28, 28, 1] float32 in [0, 1]."""
    return load_dataset("mnist", data_dir, verify=verify, download=download)


def fashion_mnist(
    data_dir: str | os.PathLike | None = None, *, verify: bool = True, download: bool = True
) -> tuple[Dataset, Dataset]:
    """Fashion-MNIST as (train [60000], test [10000]); same layout as `mnist`."""
    return load_dataset("fashion-mnist", data_dir, verify=verify, download=download)


def load(
    name: str,
    split: str = "train",
    *,
    source: str = "idx",
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    mirror: str | None = None,
) -> Dataset:
    """One split of a data set as a `Dataset` (images x: [n, height, width, channels] float32 in [0, 1]).

    source='idx': 'mnist' or 'fashion-mnist' from IDX files (found on disk or downloaded, see
    `load_dataset`), split 'train' or 'test'. source='tfds': any image-classification set of
    tensorflow-datasets that is prepared in `data_dir` (tfds's default folder when None),
    any tfds split ('train', 'test[:10%]', ...), read without TensorFlow (`load_tfds`).
    """
    if source == "tfds":
        return load_tfds(name, split, data_dir=data_dir)
    if source != "idx":
        raise ValueError(f"source: expected 'idx' or 'tfds', got {source!r}")
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test' for IDX files, got {split!r}")
    train, test = load_dataset(name, data_dir, download=download, mirror=mirror)
    return train if split == "train" else test
