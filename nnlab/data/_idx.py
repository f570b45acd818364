"""The IDX file format of the MNIST files: a 4-byte magic number, big-endian int32
dimensions, then the values in big-endian order; optionally gzip-compressed."""

from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

# IDX type code -> big-endian NumPy dtype.
_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in _DTYPES.items()}


class IdxFormatError(ValueError):
    """An IDX file is truncated, corrupt or not an IDX file at all."""


def _read_bytes(path: str | os.PathLike) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        raise IdxFormatError(f"{os.fspath(path)}: corrupt or truncated gzip data ({e})") from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (raw or gzip) into a native-endian NumPy array.

    Checks the magic number, the type code, the number of dimensions and that the data
    length is exactly the product of the dimensions; any mismatch raises `IdxFormatError`
    naming the file and what is wrong.
    """
    name = os.fspath(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IdxFormatError(f"{name}: expected a 4-byte IDX magic number, got a file of {len(data)} bytes")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _DTYPES:
        raise IdxFormatError(
            f"{name}: wrong magic number 0x{data[:4].hex()}, expected 0x0000 then a type code "
            f"in {{{', '.join(hex(c) for c in _DTYPES)}}} and the number of dimensions"
        )
    if ndim == 0:
        raise IdxFormatError(f"{name}: expected at least one dimension, got 0")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxFormatError(f"{name}: truncated header, expected {header} bytes, got {len(data)}")
    dims = struct.unpack(f">{ndim}i", data[4:header])
    dtype = _DTYPES[code]
    expected = int(np.prod(dims)) * dtype.itemsize
    got = len(data) - header
    if got != expected:
        what = "truncated" if got < expected else "has trailing bytes"
        raise IdxFormatError(
            f"{name}: {what}: dimensions {dims} of {dtype.name} need {expected} data bytes, got {got}"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool | None = None) -> None:
    """Writes `array` as an IDX file; gzip-compressed when `compress` (default: path ends in .gz)."""
    a = np.asarray(array)
    native = a.dtype.newbyteorder("=")
    if native not in _CODES:
        raise TypeError(f"array: expected one of the IDX dtypes {sorted(str(d) for d in _CODES)}, got {a.dtype}")
    body = struct.pack(">HBB", 0, _CODES[native], a.ndim) + struct.pack(f">{a.ndim}i", *a.shape)
    body += a.astype(native.newbyteorder(">")).tobytes()
    if compress is None:
        compress = os.fspath(path).endswith(".gz")
    with open(path, "wb") as f:
        f.write(gzip.compress(body, mtime=0) if compress else body)
