"""MkDocs hook: `<!-- nnlab-help: ARGS -->` in a page becomes the output of `nnlab ARGS --help`.

The CLI page then always shows the flags the installed command takes. The help is produced
in-process by `nnlab.cli.main`, which exits while parsing `--help`, before it runs anything.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex

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
