"""Paths where they enter: made absolute at once, output paths checked before any work starts."""

from __future__ import annotations

import os
from pathlib import Path


def absolute(path: str | os.PathLike) -> Path:
    """`path` made absolute against the working directory now (`~` expanded, links not resolved):
    a relative path then means the same place for the whole run (and Orbax needs absolute ones)."""
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def check_output_path(path: str | os.PathLike, *, name: str, folder: bool) -> Path:
    """`path` made absolute, after checking that a file (`folder=False`) or a folder can be
    written there: it is not the wrong kind of thing, and its nearest existing parent is a
    writable folder. Raises ValueError naming `name` (e.g. '--json')."""
    p = absolute(path)
    kind = "a folder" if folder else "a file path"
    if p.exists() and p.is_dir() != folder:
        raise ValueError(f"{name}: expected {kind}, got {str(path)!r} ({'a file' if folder else 'a folder'})")
    if p.exists():
        target = p
    else:
        target = p.parent
        while not target.exists():
            target = target.parent
        if not target.is_dir():
            raise ValueError(f"{name}: expected {kind}, got {str(path)!r} ({target} is a file, not a folder)")
    if not os.access(target, os.W_OK):
        raise ValueError(f"{name}: expected a place nnlab may write to, got {str(path)!r} ({target} is not writable)")
    return p
