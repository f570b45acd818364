"""Executes the notebooks and stores their outputs: `python notebooks/run_all.py` (full settings,
what the stored notebooks carry) or `--size small` (CI's settings, outputs not stored).

    NNLAB_DATA_DIR=../shared/data python notebooks/run_all.py [NOTEBOOK ...]
"""

import argparse
import os
import time
from pathlib import Path

import nbclient
import nbformat


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("notebooks", nargs="*", help="default: every notebooks/*.ipynb")
    p.add_argument("--size", choices=("small", "full"), default="full")
    args = p.parse_args()
    here = Path(__file__).resolve().parent
    paths = [Path(n) for n in args.notebooks] or sorted(here.glob("*.ipynb"))
    os.environ["NNLAB_NOTEBOOK_SIZE"] = args.size
    for path in paths:
        book = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        nbclient.NotebookClient(
            book, timeout=3600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        ).execute()
        print(f"{path.name}: {time.perf_counter() - start:.0f} s ({args.size})", flush=True)
        if args.size == "full":
            nbformat.write(book, path)


if __name__ == "__main__":
    main()
