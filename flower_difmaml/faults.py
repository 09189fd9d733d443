"""Seeded fault injection for experiments (no Flower): failing agents and links that drop.

Both are drawn from ``task_generator(seed, agent, round, stream)``, so every engine (a
Flower ClientApp, the in-process vectorised engine) sees the same faults in a run.
"""

from __future__ import annotations

import numpy as np

from .tasks.base import Stream, task_generator

INJECTED_FAILURE = "injected failure (fail-prob)"


class InjectedFailure(RuntimeError):
    """Raised by an agent that run-config key ``fail-prob`` makes fail this round."""

    def __init__(self) -> None:
        super().__init__(INJECTED_FAILURE)


def agent_fails(seed: int, agent: int, round_: int, fail_prob: float) -> bool:
    """Whether agent ``agent``'s training call in round ``round_`` fails (probability ``fail_prob``)."""
    if fail_prob <= 0.0:
        return False
    return bool(task_generator(seed, agent, round_, Stream.FAILURE).random() < fail_prob)


def links_up(num_links: int, seed: int, round_: int, link_drop_prob: float) -> np.ndarray:
    """Boolean mask: which of ``num_links`` links are up in round ``round_`` (each down with ``link_drop_prob``)."""
    if link_drop_prob <= 0.0:
        return np.ones(num_links, dtype=bool)
    return task_generator(seed, 0, round_, Stream.LINKS).random(num_links) >= link_drop_prob
