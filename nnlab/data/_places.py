"""Where nnlab keeps and looks for data sets on disk.

The data root is the `data_dir` argument when given, else `$NNLAB_DATA_DIR`, else
`~/.cache/nnlab`; a set called `name` lives in `<root>/<name>/`, which is also where a
download puts it. Debian's dataset packages install into `/usr/share/datasets/<name>/`.
"""

from __future__ import annotations

import os
from pathlib import Path

SYSTEM_DIR = Path("/usr/share/datasets")  # where Debian's dataset packages install
IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


class DataNotFoundError(FileNotFoundError):
    """No source could provide a data set; the message says where nnlab looked and what to do."""


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder that holds one subfolder per data set (absolute)."""
    root = data_dir if data_dir is not None else os.environ.get("NNLAB_DATA_DIR") or None
    return Path(root).expanduser().absolute() if root is not None else Path.home() / ".cache" / "nnlab"


def search_folders(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders that may hold `name`, in the order they are tried.

    An explicit `data_dir` is the only place looked at (itself, then `<data_dir>/<name>/`);
    otherwise `<root>/<name>/`, then the system folder.
    """
    if data_dir is not None:
        root = data_root(data_dir)
        return [root, root / name]
    return [data_root() / name, SYSTEM_DIR / name]


def idx_file(folder: Path, stem: str) -> Path | None:
    """`folder/stem` or `folder/stem.gz`, whichever exists (raw first), else None."""
    return next((f for f in (folder / stem, folder / f"{stem}.gz") if f.is_file()), None)


def holds_set(folder: Path) -> bool:
    """Whether `folder` has all four standard IDX files (raw or .gz)."""
    return all(idx_file(folder, stem) is not None for stem in IDX_FILES.values())
