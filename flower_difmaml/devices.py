"""Run-config key ``device``: where an agent computes (``cpu``, ``cuda``, ``cuda:N``, ``auto``).

Checked in two steps: :func:`check_device` (the spelling, anywhere: a server without a GPU
can check a config for nodes that have one) and :func:`resolve_device` (on the process that
computes: the device must exist there). Both raise ``ConfigError`` naming the key.
Models still travel and are stored as numpy arrays in the run's dtype; only computation
happens on the device.
"""

from __future__ import annotations

import re

import torch

from .errors import ConfigError

DEVICES = ("cpu", "cuda", "cuda:N", "auto")  # auto: the first CUDA device if there is one, else the CPU
_SPELLING = re.compile(r"cpu|cuda(:\d+)?|auto")


def check_device(value: str) -> None:
    """Key ``device`` is spelled as one of :data:`DEVICES` (N a device index)."""
    if not isinstance(value, str) or not _SPELLING.fullmatch(value):
        raise ConfigError(f"device: {value!r} is not a device; allowed: {', '.join(DEVICES)}")


def resolve_device(value: str) -> torch.device:
    """The torch device key ``device`` names, on this machine; ConfigError if it is absent."""
    check_device(value)
    if value == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(value)
    if device.type == "cpu":
        return device
    if not torch.cuda.is_available():
        raise ConfigError(f"device: {value!r} asked for, but this machine has no CUDA device; allowed here: cpu, auto")
    count = torch.cuda.device_count()
    index = 0 if device.index is None else device.index
    if index >= count:
        raise ConfigError(f"device: {value!r} out of range; this machine has cuda:0..cuda:{count - 1}")
    return torch.device("cuda", index)
