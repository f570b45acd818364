import hashlib
import re

import numpy as np
import pytest

import nnlab
from nnlab.data import ChecksumError, DataNotFoundError, write_idx

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
    monkeypatch.delenv("NNLAB_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    make_folder(tmp_path / "home" / ".cache" / "nnlab" / "mnist", n_train=5)
    assert nnlab.mnist()[0].n == 5
    monkeypatch.setattr(nnlab.data._places, "SYSTEM_DIR", tmp_path / "system")
    make_folder(tmp_path / "system" / "fashion-mnist", n_train=7)
    assert nnlab.fashion_mnist()[0].n == 7


def test_explicit_data_dir_without_the_data_is_an_error(tmp_path, monkeypatch):
    """Issue 10: `--data-dir /nonexistent` used to fall back to NNLAB_DATA_DIR and train."""
    make_folder(tmp_path / "env" / "mnist")
    monkeypatch.setenv("NNLAB_DATA_DIR", str(tmp_path / "env"))
    for given in [tmp_path / "nonexistent", tmp_path / "env" / "other"]:
        with pytest.raises(DataNotFoundError, match=f"data_dir {given} does not hold the data") as e:
            nnlab.mnist(given)
        assert "nnlab data download mnist --data-dir" in str(e.value)


def test_not_found_without_download_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("NNLAB_DATA_DIR", str(tmp_path / "nothing"))
    monkeypatch.setattr(nnlab.data._places, "SYSTEM_DIR", tmp_path / "system")
    with pytest.raises(DataNotFoundError) as e:
        nnlab.fashion_mnist(download=False)
    msg = str(e.value)
    for place in ["nothing/fashion-mnist", "system/fashion-mnist", "nnlab data download fashion-mnist"]:
        assert place in msg


def _manifest_case(folder, text: bytes):
    (folder / "SHA256SUMS").write_bytes(text)
    with pytest.raises(ChecksumError) as e:
        nnlab.data.load_idx_folder(folder)
    assert str(folder / "SHA256SUMS") in str(e.value)
    return str(e.value)


def test_manifest_dot_slash_names_are_checked(tmp_path):
    """Issue 10: an entry written `./name` was skipped, so a wrong hash passed."""
    folder = make_folder(tmp_path)
    msg = _manifest_case(folder, f"{'0' * 64}  ./{NAMES[3]}\n".encode())
    assert f"{NAMES[3]}: SHA-256 mismatch, expected {'0' * 64}" in msg
    msg = _manifest_case(folder, f"{'0' * 64} *./{NAMES[3]}\n".encode())  # sha256sum's binary mode
    good = hashlib.sha256((folder / NAMES[3]).read_bytes()).hexdigest()
    (folder / "SHA256SUMS").write_text(f"{good}  ./{NAMES[3]}\n\n{good.upper()} *{NAMES[3]}\n")
    assert nnlab.data.load_idx_folder(folder)[1].n == 4


@pytest.mark.parametrize(
    "text, message",
    [
        (b"not a checksum line\n", r"line 1: expected '<64 hex digits>  <file name>', got 'not a checksum line'"),
        (f"{'0' * 63}  {NAMES[3]}\n".encode(), "line 1: expected '<64 hex digits>"),
        (f"{'a' * 64}  ../{NAMES[3]}\n".encode(), r"line 1: expected a file name in the manifest's folder, got '../"),
        (f"{'a' * 64}  {NAMES[3]}\n{'b' * 64}  {NAMES[3]}\n".encode(), "line 2: .* is listed twice"),
        (b"\xff\xfe\x00garbage", "expected a UTF-8 text manifest"),
        (f"{'a' * 64}  missing-file.gz\n".encode(), r"lists missing-file.gz, which is not in"),
    ],
)
def test_unreadable_manifests_are_errors_naming_the_manifest(tmp_path, text, message):
    """Issue 10: garbage lines and listed-but-absent files were skipped, a non-UTF-8 manifest crashed."""
    msg = _manifest_case(make_folder(tmp_path), text)
    assert re.search(message, msg), msg


def test_float_labels_are_not_truncated(tmp_path):
    """Issue 10: a float label file holding 3.7 was silently read as label 3."""
    folder = make_folder(tmp_path)
    write_idx(folder / NAMES[3], np.array([0.0, 3.7, 1.0, 2.0], np.float32))
    with pytest.raises(ValueError, match=f"{NAMES[3]}: expected integer class labels, got 3.7 at index 1"):
        nnlab.data.load_idx_folder(folder)
    write_idx(folder / NAMES[3], np.array([0.0, 3.0, 1.0, 2.0], np.float64))
    assert nnlab.data.load_idx_folder(folder)[1].y.tolist() == [0, 3, 1, 2]


def test_unknown_name():
    with pytest.raises(ValueError, match="name: expected one of"):
        nnlab.data.load_dataset("cifar")
    with pytest.raises(ValueError, match="source: expected 'idx' or 'tfds'"):
        nnlab.data.load("mnist", source="keras")


def test_real_mnist(mnist_data):
    train, test = mnist_data
    assert (train.n, test.n) == (60_000, 10_000)
    assert np.bincount(test.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_make_dataset_checks():
    with pytest.raises(ValueError, match="x: expected a non-empty batch"):
        nnlab.data.make_dataset(np.zeros((0, 2)), np.zeros(0, np.int32), num_classes=2)
    with pytest.raises(ValueError, match=r"expected 3 labels \(one per sample of x\), got 2"):
        nnlab.data.make_dataset(np.zeros((3, 2)), np.zeros(2, np.int32), num_classes=2)
