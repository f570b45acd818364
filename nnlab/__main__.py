"""`python -m nnlab` runs the `nnlab` command."""

import sys

from .cli import command

sys.exit(command())
