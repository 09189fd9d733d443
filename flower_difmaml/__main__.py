"""``python -m flower_difmaml``: the ``flower-difmaml`` command line."""

from .cli import console

console()
