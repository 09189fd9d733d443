"""Sinusoid regression (Finn et al., 2017): y = A sin(x - phase), x ~ U[-5, 5].

A ~ U[0.1, 5] and phase ~ U[0, pi]. With heterogeneity ``amplitude`` (or ``phase``),
agent k of N draws that parameter from the k-th of N equal slices of its range:
U[lo + (hi - lo) k / N, lo + (hi - lo) (k + 1) / N] (the Dif-MAML paper's split). With
``clusters`` (key ``clusters`` = C), the agents of group c = floor(k C / N) all draw the
phase from the c-th of C slices: groups that share a task distribution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..errors import check_choice
from ..meta.maml import TaskBatch, mse_loss
from ..models import MLP
from ..streams import DrawKey, agent_tensor
from .base import check_clusters, cluster_groups, cluster_of, parse_dtype

HETEROGENEITY = ("none", "amplitude", "phase", "clusters")
EVAL_QUERY_POINTS = 100


@dataclass(frozen=True)
class SinusoidTasks:
    """Sinusoid tasks for ``num_agents`` agents: tensors of shape (agents, T, points, 1),
    K = ``shots`` support and Q = ``queries`` query points; metric ``mse``. Drawn in float64
    from ``DrawKey.uniform`` (all agents at once, on the key's device), then rounded to
    ``dtype``."""

    HETEROGENEITY: ClassVar[tuple[str, ...]] = HETEROGENEITY
    DEFAULT_DTYPE: ClassVar[torch.dtype] = torch.float64  # the reference numbers were made in float64
    DEFAULT_HETEROGENEITY: ClassVar[str] = "phase"  # each agent its window of phases
    KEYS: ClassVar[tuple[str, ...]] = ()  # the family's own keys (beyond shots, queries, heterogeneity, dtype)
    metric_names: ClassVar[tuple[str, ...]] = ("mse",)

    num_agents: int = 1
    heterogeneity: str = "none"
    shots: int = 10
    queries: int = 10
    amplitude_range: tuple[float, float] = (0.1, 5.0)
    phase_range: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)
    dtype: torch.dtype = torch.float64
    clusters: int = 2

    @classmethod
    def from_config(cls, config: Any, num_agents: int) -> SinusoidTasks:
        dtype = parse_dtype(config.dtype, cls.DEFAULT_DTYPE)
        return cls(num_agents, config.heterogeneity, config.shots, config.queries, dtype=dtype, clusters=config.clusters)

    @property
    def groups(self) -> tuple[int, ...] | None:
        """Each agent's group with heterogeneity ``clusters`` (else None)."""
        return cluster_groups(self.heterogeneity, self.num_agents, self.clusters)

    def loss_fn(self, prediction: Tensor, target: Tensor) -> Tensor:
        return mse_loss(prediction, target)

    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        return {"mse": mse_loss(prediction, target)}

    def __post_init__(self) -> None:
        check_choice("heterogeneity", self.heterogeneity, HETEROGENEITY)
        if self.num_agents < 1:
            raise ValueError(f"num-agents: {self.num_agents} must be >= 1")
        if self.heterogeneity == "clusters":
            check_clusters(self.clusters, self.num_agents)

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
        if self.heterogeneity == "clusters":
            return amplitude, _slice(phase, cluster_of(agent, self.num_agents, self.clusters), self.clusters)
        return amplitude, _slice(phase, agent, self.num_agents)

    @cached_property
    def _bounds(self) -> dict[bool, Tensor]:
        """{own: (N, 4) rows (amplitude low, high, phase low, high) of each agent's own
        distribution; not own: one row, the full distribution's}."""
        rows = {own: [self.ranges(k if own else None) for k in range(self.num_agents if own else 1)] for own in (True, False)}
        return {own: torch.tensor([[*a, *p] for a, p in r], dtype=torch.float64) for own, r in rows.items()}

    def _parameters(self, key: DrawKey, agents: Sequence[int], own: bool, uniform: Tensor) -> tuple[Tensor, Tensor]:
        """Amplitudes and phases (A, T, 1) of each agent's T tasks from its 2T ``uniform`` draws."""
        rows = agent_tensor(agents) if own else torch.zeros(len(agents), dtype=torch.int64)
        bounds = self._bounds[own][rows].to(key.device)
        a_lo, a_hi, p_lo, p_hi = (bounds[:, i, None, None] for i in range(4))
        num_tasks = uniform.shape[1] // 2
        amplitude = a_lo + (a_hi - a_lo) * uniform[:, :num_tasks, None]
        phase = p_lo + (p_hi - p_lo) * uniform[:, num_tasks:, None]
        return amplitude, phase

    def _x(self, uniform: Tensor, num_tasks: int, points: int) -> Tensor:
        lo, hi = self.x_range
        return lo + (hi - lo) * uniform.reshape(-1, num_tasks, points, 1)

    def _batch(self, amplitude: Tensor, phase: Tensor, x_support: Tensor, x_query: Tensor) -> TaskBatch:
        """y = A sin(x - phase), computed in float64 and then rounded to the family's dtype."""
        a, p = amplitude[..., None], phase[..., None]
        parts = (x_support, a * torch.sin(x_support - p), x_query, a * torch.sin(x_query - p))
        return TaskBatch(*(part.to(self.dtype) for part in parts))

    def sample(self, key: DrawKey, num_tasks: int, agents: Sequence[int], own: bool = True) -> TaskBatch:
        """Per agent, 2T + T (K + Q) uniforms from ``key.uniform``: amplitudes, phases,
        support x, query x. Tensors (A, T, points, 1)."""
        t, k, q = num_tasks, self.shots, self.queries
        u = key.uniform(agents, t * (2 + k + q))
        amplitude, phase = self._parameters(key, agents, own, u[:, : 2 * t])
        x_support = self._x(u[:, 2 * t : t * (2 + k)], t, k)
        return self._batch(amplitude, phase, x_support, self._x(u[:, t * (2 + k) :], t, q))

    def sample_evaluation(self, key: DrawKey, num_tasks: int, agents: Sequence[int], own: bool) -> TaskBatch:
        """K random support points; queries: 100 evenly spaced x in [-5, 5] (the paper's test)."""
        t, k = num_tasks, self.shots
        u = key.uniform(agents, t * (2 + k))
        amplitude, phase = self._parameters(key, agents, own, u[:, : 2 * t])
        grid = torch.linspace(*self.x_range, EVAL_QUERY_POINTS, dtype=torch.float64, device=key.device)
        x_query = grid.reshape(1, 1, -1, 1).expand(len(amplitude), t, -1, -1).contiguous()
        return self._batch(amplitude, phase, self._x(u[:, 2 * t :], t, k), x_query)


def _slice(bounds: tuple[float, float], k: int, n: int) -> tuple[float, float]:
    lo, hi = bounds
    return lo + (hi - lo) * k / n, lo + (hi - lo) * (k + 1) / n
