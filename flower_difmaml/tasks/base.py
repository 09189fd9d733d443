"""The task-family interface: what a family must say so that any engine can use it."""

from __future__ import annotations

from typing import Protocol

import numpy as np
from torch import nn

from ..meta.maml import LossFn, TaskBatch


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
