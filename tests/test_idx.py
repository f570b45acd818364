import gzip
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnlab.data import IdxFormatError, read_idx, write_idx


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


# Hostile files (issue 10): every error names the file, memory follows the data the header admits to.


def _header(code: int, dims) -> bytes:
    return struct.pack(">HBB", 0, code, len(dims)) + struct.pack(f">{len(dims)}i", *dims)


@pytest.mark.parametrize(
    "dims, body",
    [
        ((-1, -5), b"12345"),  # NumPy would read -1 as "infer this axis"
        ((-3,), b""),
        ((65536, 65536, 65536, 65536), b""),  # the product overflows int64 to 0
        ((2**31 - 1, 2**31 - 1), b"\0" * 16),
    ],
)
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_bad_dimensions_name_the_file(tmp_path, dims, body, suffix):
    path = tmp_path / f"bad-idx{suffix}"
    raw = _header(0x08, dims) + body
    path.write_bytes(gzip.compress(raw) if suffix else raw)
    with pytest.raises(IdxFormatError) as e:
        read_idx(path)
    assert str(path) in str(e.value)


def _zeros_gz(path, header: bytes, n_zeros: int) -> None:
    """A gzip file holding `header` then `n_zeros` zero bytes, written without holding them in memory."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    with open(path, "wb") as f:
        f.write(z.compress(header))
        for _ in range(n_zeros >> 20):
            f.write(z.compress(block))
        f.write(z.flush())


def test_gzip_expanding_past_its_header_stays_small(tmp_path):
    """A 64 KB gzip declaring 5 label bytes but expanding to 64 MB: refused after reading 6 bytes of data."""
    path = tmp_path / "bomb-idx1-ubyte.gz"
    _zeros_gz(path, _header(0x08, (5,)), 64 << 20)
    assert path.stat().st_size < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(IdxFormatError, match="has trailing bytes") as e:
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(e.value)
    assert peak < 8 << 20, f"peak {peak / 2**20:.0f} MiB"


def test_gzip_declaring_more_than_it_holds_is_truncated(tmp_path):
    path = tmp_path / "short-idx3-ubyte.gz"
    _zeros_gz(path, _header(0x08, (1000, 1000, 1000)), 2 << 20)  # declares 1 GB, holds 2 MB
    tracemalloc.start()
    try:
        with pytest.raises(IdxFormatError, match=r"truncated: dimensions \(1000, 1000, 1000\)"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


def test_gzip_with_a_bad_crc_is_refused(tmp_path):
    path = tmp_path / "crc-idx1-ubyte.gz"
    write_idx(path, np.arange(5, dtype=np.uint8))
    raw = bytearray(path.read_bytes())
    raw[-8] ^= 0xFF  # the CRC-32 of the trailer
    path.write_bytes(bytes(raw))
    with pytest.raises(IdxFormatError, match="corrupt or truncated gzip"):
        read_idx(path)


def _idx_like():
    """Byte strings near the format: a header with any type code and dimensions, then some data bytes."""
    header = st.builds(
        lambda zero, code, dims: struct.pack(">HBB", zero, code, len(dims)) + struct.pack(f">{len(dims)}i", *dims),
        st.sampled_from([0, 0, 0, 1]),
        st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x07]),
        st.lists(st.one_of(st.integers(-3, 12), st.integers(-(2**31), 2**31 - 1)), max_size=4),
    )
    return st.builds(
        lambda h, body, cut: (h + body)[:cut] if cut is not None else h + body,
        header,
        st.binary(max_size=300),
        st.none() | st.integers(0, 400),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=200), _idx_like()), compress=st.booleans())
def test_any_bytes_give_an_array_or_an_idx_error(tmp_path, data, compress):
    """Property: whatever the bytes (raw or gzipped), read_idx returns an array that matches the header
    or raises IdxFormatError naming the file; never another exception, and never much memory."""
    path = tmp_path / "any-idx"
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    tracemalloc.start()
    try:
        a = read_idx(path)
    except IdxFormatError as e:
        assert str(path) in str(e)
    else:
        ndim = data[3]
        dims = struct.unpack(f">{ndim}i", data[4 : 4 + 4 * ndim])
        assert a.shape == dims and a.nbytes == len(data) - 4 - 4 * ndim
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 2 << 20
