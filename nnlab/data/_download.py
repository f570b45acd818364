"""Downloads of MNIST and Fashion-MNIST from public mirrors, checked against published SHA-256.

Each file is streamed into `<folder>/.<file>.part` and renamed into place only once its
SHA-256 matches; a response cut midway is resumed with an HTTP Range request; 5xx answers,
timeouts and broken connections are retried with exponential backoff; a 4xx answer or a
wrong file moves on to the next mirror. A lock file (`fcntl.flock`) lets one process at a
time download into a folder: another one waits, then finds the files there. The folder's
`SHA256SUMS` records the hash each file was checked against.

A mirror the user names (`mirror=` / `$NNLAB_DATA_MIRROR`) is tried first. It is laid out
like the cache (`<base>/<name>/<file>`) and may bring its own `<base>/<name>/SHA256SUMS`,
which is then used for its files instead of the published hashes (for a copy of a set that
was rebuilt, not copied). `$NNLAB_OFFLINE=1` skips the public mirrors.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import os
import socket
import sys
import time
import urllib.error
import urllib.request
import urllib.response
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from ..report import file_sha256
from ._checksums import MANIFEST, ChecksumError, decode_manifest, write_manifest
from ._places import DataNotFoundError, data_root, search_folders
from ._published import PUBLISHED

_CHUNK = 1 << 16
_RETRY_STATUS = (408, 429)
_SCHEMES = ("http://", "https://", "file://")
_MAX_MANIFEST = 1 << 20


class DownloadError(DataNotFoundError):
    """No mirror delivered a file; the message lists each URL tried and why it failed."""


class _Failure(Exception):
    """One URL failed; `retry` says whether trying it again may help, `wrong_file` whether it sent bad bytes,
    `missing` whether the server says it has no such file."""

    def __init__(self, reason: str, *, retry: bool = False, wrong_file: bool = False, missing: bool = False):
        super().__init__(reason)
        self.retry, self.wrong_file, self.missing = retry, wrong_file, missing


class _Source(NamedTuple):
    """Where one file may come from: its URL, the SHA-256 it must have and where that hash comes from."""

    url: str
    sha256: str
    size: int | None
    checked_against: str


class _Bar:
    """A one-line byte counter on stderr, shown only on a terminal."""

    def __init__(self, label: str, total: int | None, enabled: bool | None):
        self.label, self.total = label, total
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.last = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < 0.1:
            return
        self.last = now
        if self.total:
            bar = "#" * (20 * done // self.total)
            sys.stderr.write(f"\r{self.label} [{bar:<20}] {done / 1e6:.1f}/{self.total / 1e6:.1f} MB ")
        else:
            sys.stderr.write(f"\r{self.label} {done / 1e6:.1f} MB ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.last:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def offline() -> bool:
    """Whether `$NNLAB_OFFLINE` asks nnlab never to contact the public mirrors."""
    return os.environ.get("NNLAB_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def _open(url: str, *, start: int, timeout: float) -> http.client.HTTPResponse | urllib.response.addinfourl:
    """The response to GET `url` from byte `start` on; raises `_Failure`."""
    headers = {"User-Agent": "nnlab"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        raise _Failure(
            f"HTTP {e.code} {e.reason}", retry=e.code >= 500 or e.code in _RETRY_STATUS, missing=e.code == 404
        ) from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, (TimeoutError, ConnectionResetError)):
            raise _Failure(_describe(e.reason, timeout), retry=True) from None
        raise _Failure(
            str(getattr(e.reason, "strerror", None) or e.reason), missing=isinstance(e.reason, FileNotFoundError)
        ) from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as e:
        raise _Failure(_describe(e, timeout), retry=True) from None


def _describe(e: BaseException, timeout: float) -> str:
    if isinstance(e, (TimeoutError, socket.timeout)):
        return f"timed out (no data for {timeout:g} s)"
    return f"connection broken ({type(e).__name__}: {e})" if str(e) else f"connection broken ({type(e).__name__})"


def _stream(url: str, part: Path, *, size: int | None, timeout: float, bar: _Bar) -> None:
    """Appends the rest of `url` to `part` (resuming from its length); raises `_Failure`."""
    have = part.stat().st_size if part.exists() else 0
    with _open(url, start=have, timeout=timeout) as resp:
        status = getattr(resp, "status", 200)
        if have and status != 206:
            have = 0  # the server ignored the Range request: start over
        elif status == 206 and not resp.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            part.unlink()
            raise _Failure(f"wrong Content-Range {resp.headers.get('Content-Range')!r} for bytes {have}-", retry=True)
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length is not None and length.isdigit() else None
        if size is not None and total is not None and total != size:
            raise _Failure(f"serves {total} bytes, the published file has {size}", wrong_file=True)
        bar.total = bar.total or total
        with open(part, "ab" if have else "wb") as f:
            try:
                while chunk := resp.read(_CHUNK):
                    f.write(chunk)
                    have += len(chunk)
                    if size is not None and have > size:
                        raise _Failure(f"sent more than the published file's {size} bytes", wrong_file=True)
                    bar.update(have)
            except (TimeoutError, ConnectionError, http.client.HTTPException) as e:
                raise _Failure(f"{_describe(e, timeout)} after {have} bytes", retry=True) from None
        if total is not None and have < total:
            raise _Failure(f"connection closed after {have} of {total} bytes", retry=True)


def _fetch(source: _Source, part: Path, *, timeout: float, retries: int, backoff: float, progress: bool | None) -> None:
    """Downloads `source.url` into `part`, retrying and resuming; checks its SHA-256; raises `_Failure`."""
    part.unlink(missing_ok=True)
    bar = _Bar(part.name[1:-5], source.size, progress)
    try:
        for attempt in range(retries + 1):
            try:
                _stream(source.url, part, size=source.size, timeout=timeout, bar=bar)
                break
            except _Failure as e:
                if not e.retry or attempt == retries:
                    part.unlink(missing_ok=True)
                    tries = f" ({attempt + 1} tries)" if attempt else ""
                    raise _Failure(f"{e}{tries}", wrong_file=e.wrong_file) from None
                time.sleep(backoff * 2**attempt)
    finally:
        bar.close()
    got = file_sha256(part)
    if got != source.sha256:
        part.unlink()
        raise _Failure(
            f"SHA-256 mismatch: expected {source.sha256} ({source.checked_against}), got {got}", wrong_file=True
        )


def _mirror_manifest(base: str, name: str, *, timeout: float) -> dict[str, str] | None:
    """The user mirror's `<base>/<name>/SHA256SUMS` (None when it has none); raises `_Failure`."""
    url = f"{base}/{name}/{MANIFEST}"
    try:
        resp = _open(url, start=0, timeout=timeout)
    except _Failure as e:
        if e.missing:
            return None
        raise
    with resp:
        try:
            raw = resp.read(_MAX_MANIFEST + 1)
        except (TimeoutError, ConnectionError, http.client.HTTPException) as e:
            raise _Failure(_describe(e, timeout)) from None
    if len(raw) > _MAX_MANIFEST:
        raise _Failure(f"{url}: larger than {_MAX_MANIFEST} bytes, not a manifest")
    try:
        return decode_manifest(raw, source=url)
    except ChecksumError as e:
        raise _Failure(str(e)) from None


def _sources(name: str, file: str, mirror: str | None, mirror_sums: dict[str, str] | None) -> list[_Source]:
    """Every place `file` may come from, in the order tried."""
    published = next(f for f in PUBLISHED[name].files if f.name == file)
    bases = ([] if mirror is None else [f"{mirror}/{name}/"]) + ([] if offline() else list(PUBLISHED[name].mirrors))
    out = [_Source(base + file, published.sha256, published.size, "the published file") for base in bases]
    if mirror_sums is not None and file in mirror_sums:  # the user's mirror (first) lists its own hash of the file
        out[0] = _Source(out[0].url, mirror_sums[file], None, f"{mirror}/{name}/{MANIFEST}")
    return out


@contextlib.contextmanager
def _locked(folder: Path, name: str) -> Iterator[None]:
    """Creates `folder` and holds its `.lock` exclusively; waits (saying so) while another process holds it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        f = open(folder / ".lock", "a")
    except OSError as e:
        raise DataNotFoundError(
            f"{name}: cannot write to {folder} to download into it ({e.strerror}); "
            f"set NNLAB_DATA_DIR to a writable folder"
        ) from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"nnlab: waiting for another process downloading into {folder}", file=sys.stderr)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _present(folder: Path, name: str) -> dict[str, str]:
    """{file: SHA-256} of the files in `folder` that match their manifest entry, or else the published hash."""
    path = folder / MANIFEST
    recorded = decode_manifest(path.read_bytes(), source=str(path)) if path.is_file() else {}
    good = {}
    for published in PUBLISHED[name].files:
        f = folder / published.name
        if f.is_file() and (got := file_sha256(f)) == recorded.get(published.name, published.sha256):
            good[published.name] = got
    return good


def download(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    mirror: str | None = None,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 1.0,
    progress: bool | None = None,
) -> Path:
    """Fetches the files of `name` ('mnist' or 'fashion-mnist') that `<root>/<name>/` lacks; returns that folder.

    root: `data_dir`, else `$NNLAB_DATA_DIR`, else `~/.cache/nnlab`. `mirror` (default
    `$NNLAB_DATA_MIRROR`) is a base URL tried before the public mirrors. `timeout` bounds
    each connect and read in seconds; a URL gets `retries` more tries after a timeout, a 5xx
    answer or a broken connection, `backoff * 2**k` seconds apart. A progress bar shows on a
    terminal (`progress=None`) or as asked. Raises `DownloadError` (listing every URL tried) when
    no mirror delivers a file, `ChecksumError` when one of them sent wrong bytes.
    """
    if name not in PUBLISHED:
        raise ValueError(f"name: expected one of {sorted(PUBLISHED)}, got {name!r}")
    mirror = mirror if mirror is not None else os.environ.get("NNLAB_DATA_MIRROR") or None
    if mirror is not None:
        if not mirror.startswith(_SCHEMES):
            raise ValueError(f"mirror: expected a base URL starting with {', '.join(_SCHEMES)}, got {mirror!r}")
        mirror = mirror.rstrip("/")
    folder = data_root(data_dir) / name
    if folder.is_dir() and len(_present(folder, name)) == len(PUBLISHED[name].files):
        return folder
    with _locked(folder, name):
        good = _present(folder, name)
        missing = [f.name for f in PUBLISHED[name].files if f.name not in good]
        mirror_sums, manifest_failure = None, []
        if missing and mirror is not None:
            try:
                mirror_sums = _mirror_manifest(mirror, name, timeout=timeout)
            except _Failure as e:
                manifest_failure, mirror = [(f"{mirror}/{name}/{MANIFEST}", str(e), False)], None
        for file in missing:
            failures = list(manifest_failure)  # (url, reason, whether it sent wrong bytes)
            for source in _sources(name, file, mirror, mirror_sums):  # in order until one delivers
                part = folder / f".{file}.part"
                try:
                    _fetch(source, part, timeout=timeout, retries=retries, backoff=backoff, progress=progress)
                except _Failure as e:
                    failures.append((source.url, str(e), e.wrong_file))
                    continue
                os.replace(part, folder / file)
                print(
                    f"nnlab: {file} ({(folder / file).stat().st_size:,} bytes) from {source.url}, SHA-256 checked "
                    f"against {source.checked_against}",
                    file=sys.stderr,
                )
                good[file] = source.sha256
                write_manifest(folder, good)
                break
            else:
                where = " or ".join(str(p) for p in ([folder] if data_dir is not None else search_folders(name)))
                got = (
                    f"no mirror delivered {file} ({'; '.join(f'{url}: {why}' for url, why, _ in failures)})"
                    if failures
                    else "downloads are off (NNLAB_OFFLINE=1 and no NNLAB_DATA_MIRROR)"
                )
                files = ", ".join(f.name for f in PUBLISHED[name].files)
                error = ChecksumError if any(wrong for *_, wrong in failures) else DownloadError
                raise error(
                    f"{name}: not found in {where}, and {got}. To provide the files by hand, put {files} into "
                    f"{folder}/ (or set NNLAB_DATA_DIR to a folder holding {name}/, or NNLAB_DATA_MIRROR to a "
                    f"mirror URL)"
                )
    return folder
