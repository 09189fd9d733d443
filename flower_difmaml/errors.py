"""Errors a user can fix: one line that names the run-config key, the value and what is allowed."""

from __future__ import annotations

from collections.abc import Iterable


class ConfigError(ValueError):
    """A run-config value that is out of range, of the wrong type, or unknown."""


def one_line(error: BaseException) -> str:
    """``error``'s message with its white space (newlines included) folded to single spaces."""
    return " ".join(str(error).split())


def check_choice(key: str, value: str, allowed: Iterable[str]) -> str:
    """``value`` if it is one of ``allowed``; else ConfigError naming ``key`` and the choices."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(f"{key}: unknown {value!r}; allowed: {', '.join(allowed)}")
    return value
