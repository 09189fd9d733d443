"""Sinusoid regression (Finn et al., 2017): y = A sin(x - phase), x ~ U[-5, 5].

A ~ U[0.1, 5] and phase ~ U[0, pi]. With heterogeneity ``amplitude`` (or ``phase``),
agent k of N draws that parameter from the k-th of N equal slices of its range:
U[lo + (hi - lo) k / N, lo + (hi - lo) (k + 1) / N] (the Dif-MAML paper's split).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import check_choice
from ..meta.maml import TaskBatch, mse_loss
from ..models import MLP
from .base import numpy_dtype, parse_dtype

HETEROGENEITY = ("none", "amplitude", "phase")
EVAL_QUERY_POINTS = 100


@dataclass(frozen=True)
class SinusoidTasks:
    """Sinusoid tasks for ``num_agents`` agents: tensors of shape (T, points, 1), K = ``shots``
    support and Q = ``queries`` query points; metric ``mse``."""

    HETEROGENEITY: ClassVar[tuple[str, ...]] = HETEROGENEITY
    DEFAULT_DTYPE: ClassVar[torch.dtype] = torch.float64  # the reference numbers were made in float64
    metric_names: ClassVar[tuple[str, ...]] = ("mse",)

    num_agents: int = 1
    heterogeneity: str = "none"
    shots: int = 10
    queries: int = 10
    amplitude_range: tuple[float, float] = (0.1, 5.0)
    phase_range: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)
    dtype: torch.dtype = torch.float64

    @classmethod
    def from_config(cls, config: Any, num_agents: int) -> SinusoidTasks:
        dtype = parse_dtype(config.dtype, cls.DEFAULT_DTYPE)
        return cls(num_agents, config.heterogeneity, config.shots, config.queries, dtype=dtype)

    def loss_fn(self, prediction: Tensor, target: Tensor) -> Tensor:
        return mse_loss(prediction, target)

    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        return {"mse": mse_loss(prediction, target)}

    def __post_init__(self) -> None:
        check_choice("heterogeneity", self.heterogeneity, HETEROGENEITY)
        if self.num_agents < 1:
            raise ValueError(f"num-agents: {self.num_agents} must be >= 1")

    def make_model(self) -> nn.Module:
        """The MLP 1-40-40-1 with ReLU of the MAML and Dif-MAML papers."""
        return MLP((1, 40, 40, 1)).to(self.dtype)

    def ranges(self, agent: int | None) -> tuple[tuple[float, float], tuple[float, float]]:
        """(amplitude range, phase range) of ``agent``'s distribution (None: the full one)."""
        amplitude, phase = self.amplitude_range, self.phase_range
        if agent is None or self.heterogeneity == "none":
            return amplitude, phase
        if not 0 <= agent < self.num_agents:
            raise ValueError(f"agent {agent} out of range 0..{self.num_agents - 1}")
        if self.heterogeneity == "amplitude":
            return _slice(amplitude, agent, self.num_agents), phase
        return amplitude, _slice(phase, agent, self.num_agents)

    def _draw(self, rng: np.random.Generator, num_tasks: int, agent: int | None) -> tuple[np.ndarray, np.ndarray]:
        (a_lo, a_hi), (p_lo, p_hi) = self.ranges(agent)
        amplitude = rng.uniform(a_lo, a_hi, size=(num_tasks, 1, 1))
        phase = rng.uniform(p_lo, p_hi, size=(num_tasks, 1, 1))
        return amplitude, phase

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        # numpy rounds to the dtype as torch.as_tensor does, in a third of its time
        return torch.from_numpy(array.astype(numpy_dtype(self.dtype)))

    def sample(self, rng: np.random.Generator, num_tasks: int, agent: int | None) -> TaskBatch:
        amplitude, phase = self._draw(rng, num_tasks, agent)
        x_support = rng.uniform(*self.x_range, size=(num_tasks, self.shots, 1))
        x_query = rng.uniform(*self.x_range, size=(num_tasks, self.queries, 1))
        return TaskBatch(
            self._tensor(x_support),
            self._tensor(amplitude * np.sin(x_support - phase)),
            self._tensor(x_query),
            self._tensor(amplitude * np.sin(x_query - phase)),
        )

    def sample_evaluation(self, rng: np.random.Generator, num_tasks: int, agent: int | None) -> TaskBatch:
        """K random support points; queries: 100 evenly spaced x in [-5, 5] (the paper's test)."""
        amplitude, phase = self._draw(rng, num_tasks, agent)
        x_support = rng.uniform(*self.x_range, size=(num_tasks, self.shots, 1))
        grid = np.linspace(*self.x_range, EVAL_QUERY_POINTS).reshape(1, -1, 1)
        x_query = np.repeat(grid, num_tasks, axis=0)
        return TaskBatch(
            self._tensor(x_support),
            self._tensor(amplitude * np.sin(x_support - phase)),
            self._tensor(x_query),
            self._tensor(amplitude * np.sin(x_query - phase)),
        )


def _slice(bounds: tuple[float, float], k: int, n: int) -> tuple[float, float]:
    lo, hi = bounds
    return lo + (hi - lo) * k / n, lo + (hi - lo) * (k + 1) / n
