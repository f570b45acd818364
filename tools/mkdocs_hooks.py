"""MkDocs hooks: the CLI's help and the experiments' figures on the site.

`<!-- nnlab-help: ARGS -->` in a page becomes the output of `nnlab ARGS --help`, so the CLI page
always shows the flags the installed command takes. The help is produced in-process by
`nnlab.cli.main`, which exits while parsing `--help`, before it runs anything.

The figures in `experiments/results/*.png` live outside `docs/`; they are added to the site under
the same path, so a page shows one as `![...](experiments/results/NAME.png)`, the path README.md
uses, and the strict build checks the link.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

_MARKER = re.compile(r"<!-- nnlab-help:(?P<args>[^>]*)-->")


def _help(args: str) -> str:
    from nnlab.cli import main

    out = io.StringIO()
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal: a fixed width keeps the page stable
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main([*shlex.split(args), "--help"])
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    text = out.getvalue().strip()
    if not text:
        raise ValueError(f"`nnlab {args.strip()} --help` printed nothing")
    return f"```text\n{text}\n```"


def on_page_markdown(markdown: str, **kwargs: object) -> str:
    """Replace every help marker of the page."""
    return _MARKER.sub(lambda m: _help(m.group("args")), markdown)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add every figure of `experiments/results/` to the site, at its path in the repository."""
    root = Path(config.config_file_path).parent
    for png in sorted((root / "experiments" / "results").glob("*.png")):
        src = png.relative_to(root).as_posix()
        files.append(File(src, str(root), config.site_dir, use_directory_urls=config.use_directory_urls))
    return files
