"""``python -m flower_difmaml``: the ``flower-difmaml`` command line."""

import sys

from .cli import main

sys.exit(main())
