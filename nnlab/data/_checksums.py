"""SHA-256 manifests (`SHA256SUMS`, as `sha256sum` writes them) and checks against them.

A manifest is read strictly: every line must be `<64 hex digits>  <name>` (or ` *<name>`,
`sha256sum`'s binary mode), where `name` is a file of the manifest's own folder, written
`name` or `./name`; blank lines are allowed. A line that does not parse, a file name
listed twice with different hashes, a path leaving the folder, or a manifest that is not
UTF-8 raises `ChecksumError` naming the manifest and the line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..report import file_sha256, write_text

MANIFEST = "SHA256SUMS"
_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")


class ChecksumError(ValueError):
    """A data file's SHA-256 differs from the one it should have, or a manifest cannot be read."""


def decode_manifest(raw: bytes, *, source: str) -> dict[str, str]:
    """{file name: lowercase SHA-256} from a manifest's raw bytes (UTF-8 text); `source` names it in errors."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ChecksumError(
            f"{source}: expected a UTF-8 text manifest, got undecodable bytes at offset {e.start}"
        ) from None
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise ChecksumError(f"{source}, line {number}: expected '<64 hex digits>  <file name>', got {line[:100]!r}")
        digest, name = match.group(1).lower(), match.group(2)
        name = name[2:] if name.startswith("./") else name
        if not name or "/" in name or name in (".", ".."):
            raise ChecksumError(f"{source}, line {number}: expected a file name in the manifest's folder, got {name!r}")
        if sums.get(name, digest) != digest:
            raise ChecksumError(f"{source}, line {number}: {name} is listed twice with different hashes")
        sums[name] = digest
    return sums


def read_manifest(folder: str | os.PathLike) -> dict[str, str]:
    """The folder's `SHA256SUMS` as {file name: SHA-256} ({} when it has none).

    Every file it lists must exist in the folder: an absent one raises `ChecksumError`.
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return {}
    sums = decode_manifest(path.read_bytes(), source=str(path))
    absent = sorted(name for name in sums if not (Path(folder) / name).is_file())
    if absent:
        raise ChecksumError(
            f"{path}: lists {', '.join(absent)}, which {'is' if len(absent) == 1 else 'are'} "
            f"not in {folder}; remove the line(s) or restore the file(s)"
        )
    return sums


def write_manifest(folder: str | os.PathLike, sums: dict[str, str]) -> None:
    """Writes `SHA256SUMS` in `folder` atomically (`report.write_text`)."""
    write_text(Path(folder) / MANIFEST, "".join(f"{sums[name]}  {name}\n" for name in sorted(sums)))


def verify_checksums(folder: str | os.PathLike, files: list[str | os.PathLike], known: dict[str, str]) -> None:
    """Raises `ChecksumError` for the first file whose SHA-256 differs from `known[file name]`."""
    for f in map(Path, files):
        if f.name in known and (got := file_sha256(f)) != known[f.name]:
            raise ChecksumError(
                f"{f}: SHA-256 mismatch, expected {known[f.name]} (from {Path(folder) / MANIFEST}), "
                f"got {got}; the file is corrupt or was replaced: fetch it again"
            )
