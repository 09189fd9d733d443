"""The task-family interface and the seeded random streams every engine shares."""

from __future__ import annotations

from enum import IntEnum
from typing import Protocol

import numpy as np
from torch import nn

from ..meta.maml import LossFn, TaskBatch


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


def task_generator(seed: int, agent: int, round_: int, stream: Stream) -> np.random.Generator:
    """The generator for agent ``agent``'s draws in round ``round_`` of run ``seed``.

    Seeded by (seed, agent, round, stream) only, so any engine (Flower simulation, a real
    SuperNode, the in-process vectorised engine) draws exactly the same tasks.
    """
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, agent, round_, stream])))


class TaskFamily(Protocol):
    """A distribution over tasks, optionally split across agents (heterogeneity).

    ``agent=None`` means the full distribution; ``agent=k`` agent k's own distribution.
    """

    loss_fn: LossFn

    def make_model(self) -> nn.Module: ...

    def sample(
        self, rng: np.random.Generator, num_tasks: int, shots: int, queries: int, agent: int | None
    ) -> TaskBatch:
        """Training tasks: K support and Q query points drawn independently."""
        ...

    def sample_evaluation(
        self, rng: np.random.Generator, num_tasks: int, shots: int, agent: int | None
    ) -> TaskBatch:
        """Evaluation tasks: K support points and the family's fixed evaluation query set."""
        ...
