"""`python -m nnlab` runs the `nnlab` command."""

import sys

from .cli import main

sys.exit(main())
