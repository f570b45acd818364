import hashlib
import sys
import types

import numpy as np
import pytest

import nnlab
from nnlab import ChecksumError, DataNotFoundError, write_idx

NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def make_folder(folder, n_train=6, n_test=4, n_train_labels=None):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    write_idx(folder / f"{NAMES[0]}.gz", rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8))
    write_idx(folder / f"{NAMES[1]}.gz", (np.arange(n_train_labels or n_train) % 10).astype(np.uint8))
    write_idx(folder / NAMES[2], rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8))
    write_idx(folder / NAMES[3], (np.arange(n_test) % 10).astype(np.uint8))
    return folder


def test_load_folder_scales_and_shapes(tmp_path):
    train, test = nnlab.data.load_idx_folder(make_folder(tmp_path))
    assert train.x.shape == (6, 28, 28, 1) and train.x.dtype == np.float32
    assert 0.0 <= train.x.min() and train.x.max() <= 1.0
    assert test.y.tolist() == [0, 1, 2, 3] and train.num_classes == 10


def test_image_and_label_counts_disagree(tmp_path):
    make_folder(tmp_path, n_train=6, n_train_labels=5)
    with pytest.raises(ValueError, match="holds 6 images but .* holds 5 labels"):
        nnlab.data.load_idx_folder(tmp_path)


def test_checksum_mismatch_names_file(tmp_path):
    folder = make_folder(tmp_path)
    good = hashlib.sha256((folder / NAMES[3]).read_bytes()).hexdigest()
    (folder / "SHA256SUMS").write_text(f"{good}  {NAMES[3]}\n{'0' * 64}  {NAMES[0]}.gz\n")
    with pytest.raises(ChecksumError, match=f"{NAMES[0]}.gz: SHA-256 mismatch, expected 0000"):
        nnlab.data.load_idx_folder(folder)
    nnlab.data.load_idx_folder(folder, verify=False)


def test_checksum_match_passes(tmp_path):
    folder = make_folder(tmp_path)
    lines = [f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}" for n in [f"{NAMES[0]}.gz", NAMES[2]]]
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    assert nnlab.data.load_idx_folder(folder)[0].n == 6


def test_search_order(tmp_path, monkeypatch):
    make_folder(tmp_path / "env" / "mnist", n_train=3)
    make_folder(tmp_path / "explicit", n_train=2)
    monkeypatch.setenv("NNLAB_DATA_DIR", str(tmp_path / "env"))
    assert nnlab.mnist()[0].n == 3
    assert nnlab.mnist(tmp_path / "explicit")[0].n == 2
    make_folder(tmp_path / "parent" / "mnist", n_train=4)
    assert nnlab.mnist(tmp_path / "parent")[0].n == 4


def test_not_found_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("NNLAB_DATA_DIR", str(tmp_path / "nothing"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(nnlab.data._datasets, "SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(DataNotFoundError) as e:
        nnlab.fashion_mnist(tmp_path / "given")
    msg = str(e.value)
    for place in ["given", "nothing/fashion-mnist", ".cache/nnlab/fashion-mnist", "system/fashion-mnist",
                  "tensorflow-datasets", "NNLAB_DATA_DIR"]:
        assert place in msg


def test_tfds_fallback(tmp_path, monkeypatch):
    """With no local files, a tfds that has the set prepared provides it (a stand-in module here)."""
    monkeypatch.setenv("NNLAB_DATA_DIR", str(tmp_path / "nothing"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(nnlab.data._datasets, "SYSTEM_DIR", tmp_path / "system")
    calls = []

    def data_source(name, *, try_gcs):
        calls.append((name, try_gcs))
        rec = lambda i: {"image": np.full((28, 28, 1), i, np.uint8), "label": i % 10}  # noqa: E731
        return {"train": [rec(i) for i in range(5)], "test": [rec(i) for i in range(3)]}

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", types.SimpleNamespace(data_source=data_source))
    train, test = nnlab.data.load_dataset("mnist", tmp_path / "missing")
    assert calls == [("mnist", False)]
    assert train.x.shape == (5, 28, 28, 1) and test.y.tolist() == [0, 1, 2]
    np.testing.assert_allclose(train.x[4], 4 / 255)


def test_unknown_name():
    with pytest.raises(ValueError, match="name: expected one of"):
        nnlab.data.load_dataset("cifar")


def test_real_mnist(mnist_data):
    train, test = mnist_data
    assert (train.n, test.n) == (60_000, 10_000)
    assert np.bincount(test.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_make_dataset_checks():
    with pytest.raises(ValueError, match="x: expected a non-empty batch"):
        nnlab.data.make_dataset(np.zeros((0, 2)), np.zeros(0, np.int32), num_classes=2)
    with pytest.raises(ValueError, match=r"expected 3 labels \(one per sample of x\), got 2"):
        nnlab.data.make_dataset(np.zeros((3, 2)), np.zeros(2, np.int32), num_classes=2)
