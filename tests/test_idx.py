import gzip

import numpy as np
import pytest

from nnlab import IdxFormatError, read_idx, write_idx


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_roundtrip(tmp_path, dtype, suffix):
    a = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, a)
    b = read_idx(path)
    assert b.dtype == np.dtype(dtype) and b.shape == (2, 3, 4)
    np.testing.assert_array_equal(a, b)


def test_header_bytes_by_hand(tmp_path):
    raw = bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 7, 8, 9])
    (tmp_path / "l").write_bytes(raw)
    np.testing.assert_array_equal(read_idx(tmp_path / "l"), [7, 8, 9])


def _labels(tmp_path, n=5):
    path = tmp_path / "labels-idx1-ubyte"
    write_idx(path, np.arange(n, dtype=np.uint8))
    return path


@pytest.mark.parametrize("cut, message", [(-1, "truncated"), (6, "truncated header"), (2, "4-byte IDX magic")])
def test_truncated(tmp_path, cut, message):
    path = _labels(tmp_path)
    raw = path.read_bytes()
    path.write_bytes(raw[:cut])
    with pytest.raises(IdxFormatError, match=message) as e:
        read_idx(path)
    assert str(path) in str(e.value)


def test_trailing_bytes(tmp_path):
    path = _labels(tmp_path)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(IdxFormatError, match="trailing bytes"):
        read_idx(path)


@pytest.mark.parametrize("magic", [b"\x01\x00\x08\x01", b"\x00\x00\x07\x01", b"PK\x03\x04"])
def test_wrong_magic(tmp_path, magic):
    path = _labels(tmp_path)
    path.write_bytes(magic + path.read_bytes()[4:])
    with pytest.raises(IdxFormatError, match="wrong magic number"):
        read_idx(path)


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"\0\0\x08\x01\0\0\0\x03abc")[:-6])
    with pytest.raises(IdxFormatError, match="corrupt or truncated gzip"):
        read_idx(path)


def test_write_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(TypeError, match="IDX dtypes"):
        write_idx(tmp_path / "x", np.zeros(3, np.uint16))
