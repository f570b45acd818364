"""The IDX file format of the MNIST files: a 4-byte magic number, big-endian int32
dimensions, then the values in big-endian order; optionally gzip-compressed.

A file is read as a stream: the header comes first, and no more data is read than the
header declares (plus one byte, to detect trailing data), so a small gzip file that
expands to gigabytes costs no more memory than its header admits to.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import sys
import zlib
from typing import Protocol

import numpy as np

# IDX type code -> big-endian NumPy dtype.
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES: dict[np.dtype, int] = {dt.newbyteorder("="): code for code, dt in _DTYPES.items()}
_CHUNK = 1 << 20
# Decompression errors of a corrupt or truncated gzip stream.
_GZIP_ERRORS = (EOFError, OSError, zlib.error)


class IdxFormatError(ValueError):
    """An IDX file is truncated, corrupt or not an IDX file at all."""


class _Readable(Protocol):
    """A binary stream: a raw file or a gzip.GzipFile."""

    def read(self, size: int, /) -> bytes: ...


def _read_at_most(f: _Readable, n: int) -> bytearray:
    """Up to `n` bytes of `f`, read in chunks so memory follows the data that really arrives."""
    out = bytearray()
    while len(out) < n:
        chunk = f.read(min(_CHUNK, n - len(out)))
        if not chunk:
            break
        out += chunk
    return out


def _parse(f: _Readable, name: str, size: int | None) -> np.ndarray:
    """Reads one IDX stream; `size` is the stream's length when known (raw files), else None."""
    head = _read_at_most(f, 4)
    if len(head) < 4:
        raise IdxFormatError(f"{name}: expected a 4-byte IDX magic number, got a file of {len(head)} bytes")
    zero, code, ndim = struct.unpack(">HBB", head)
    if zero != 0 or code not in _DTYPES:
        raise IdxFormatError(
            f"{name}: wrong magic number 0x{bytes(head).hex()}, expected 0x0000 then a type code "
            f"in {{{', '.join(hex(c) for c in _DTYPES)}}} and the number of dimensions"
        )
    if ndim == 0:
        raise IdxFormatError(f"{name}: expected at least one dimension, got 0")
    dim_bytes = _read_at_most(f, 4 * ndim)
    if len(dim_bytes) < 4 * ndim:
        raise IdxFormatError(f"{name}: truncated header, expected {4 + 4 * ndim} bytes, got {4 + len(dim_bytes)}")
    dims = struct.unpack(f">{ndim}i", dim_bytes)
    if any(d < 0 for d in dims):
        raise IdxFormatError(f"{name}: expected non-negative dimensions, got {dims}")
    if math.prod(max(d, 1) for d in dims) > sys.maxsize // 16:  # NumPy refuses such shapes even when one is 0
        raise IdxFormatError(f"{name}: expected dimensions NumPy can hold, got {dims}")
    dtype = _DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    header = 4 + 4 * ndim
    if size is not None and size - header != expected:
        got = size - header
        what = "truncated" if got < expected else "has trailing bytes"
        raise IdxFormatError(f"{name}: {what}: dimensions {dims} of {dtype.name} need {expected} data bytes, got {got}")
    data = _read_at_most(f, expected + 1)
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        got = f"{len(data)}" if len(data) < expected else "more"
        raise IdxFormatError(f"{name}: {what}: dimensions {dims} of {dtype.name} need {expected} data bytes, got {got}")
    return np.frombuffer(data, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (raw or gzip) into a native-endian NumPy array.

    Checks the magic number, the type code, the number of dimensions (non-negative) and that
    the data length is exactly the product of the dimensions; any mismatch, and any corrupt
    gzip stream, raises `IdxFormatError` naming the file and what is wrong. A gzip file is
    decompressed as a stream and never beyond the size its header declares.
    """
    name = os.fspath(path)
    with open(path, "rb") as raw:
        if raw.read(2) != b"\x1f\x8b":
            raw.seek(0)
            return _parse(raw, name, os.fstat(raw.fileno()).st_size)
        raw.seek(0)
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                return _parse(f, name, None)
        except _GZIP_ERRORS as e:
            raise IdxFormatError(f"{name}: corrupt or truncated gzip data ({e})") from None


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
