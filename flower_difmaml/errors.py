"""Errors a user can fix: one line that names the run-config key, the value and what is allowed."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
    """A run-config value that is out of range, of the wrong type, or unknown."""


def one_line(error: BaseException) -> str:
    """``error``'s message with its white space (newlines included) folded to single spaces."""
    return " ".join(str(error).split())


def did_you_mean(name: str, allowed: Iterable[str]) -> str:
    """`` (did you mean 'inner-lr'?)`` for the names of ``allowed`` nearest to ``name``
    (difflib's ratio at least 0.7, at most three), or "" where none is near."""
    near = difflib.get_close_matches(str(name), [str(a) for a in allowed], n=3, cutoff=0.7)
    return f" (did you mean {' or '.join(repr(n) for n in near)}?)" if near else ""


def check_choice(key: str, value: str, allowed: Iterable[str]) -> str:
    """``value`` if it is one of ``allowed``; else ConfigError naming ``key``, the nearest
    choices and all of them."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(f"{key}: unknown {value!r}{did_you_mean(value, allowed)}; allowed: {', '.join(allowed)}")
    return value
