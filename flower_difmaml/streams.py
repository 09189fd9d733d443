"""Keyed random streams: every draw of a run comes from (seed, agent, round, stream).

So any engine (Flower simulation, a real SuperNode, the in-process vectorised engine)
draws exactly the same tasks, failures, dropped links and attack noise.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Stream(IntEnum):
    """Independent random streams drawn for one (seed, agent, round)."""

    TRAIN = 0
    EVAL_FULL = 1
    EVAL_OWN = 2
    FAILURE = 3  # does the agent fail this round (fail-prob)
    LINKS = 4  # which links are down this round (link-drop-prob); agent 0 only
    ATTACK = 5  # a Byzantine agent's attack noise
    BYZANTINE = 6  # which agents are Byzantine (byzantine-fraction); agent 0, round 0 only
    SCORE = 7  # tasks the resilient rule scores models on (resilient-score = "fresh")


def keyed_generator(seed: int, agent: int, round_: int, stream: Stream) -> np.random.Generator:
    """The generator for agent ``agent``'s draws in round ``round_`` of run ``seed``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, agent, round_, stream])))
