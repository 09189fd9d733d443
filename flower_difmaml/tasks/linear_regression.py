"""Linear regression over a task graph (Wan and Vlaski's experiments): streaming data
d = u^T w°_k + v for agent k, u ~ N(0, s_u^2 I_M), v ~ N(0, s_v^2).

The true models W° = col{w°_k} (N x M) are drawn once per seed from the Gaussian Markov
random field N(0, L^-1 kron I_M) with L = D - A + V on the run's graph: A's edge weights
drawn from {1, 5} x ``edge-weight-scale``, V = ``graph-v`` I (keys ``dims`` = M,
``regressor-std`` = s_u, ``noise-std`` = s_v). The model is w (no bias); with
``inner-steps = 0`` MAML's step is the plain gradient step on the query points,
w <- w - mu grad (1/Q) sum (d - u^T w)^2, i.e. LMS with step 2 mu. ``truth_metrics`` gives
``msd`` = (1/N) sum_k ||w_k - w°_k||^2, ``msd-db``, and ``laplacian-error`` =
||L_hat - L||_F^2 / ||L||_F^2 for a strategy that learns L_hat.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import check_choice
from ..meta.maml import TaskBatch, mse_loss
from ..network.graphs import graph_of
from ..network.laplacian import gmrf_laplacian, gmrf_models, laplacian_error
from ..streams import DrawKey, Stream, agent_tensor, box_muller, keyed_generator
from .base import parse_dtype

EDGE_WEIGHTS = (1.0, 5.0)  # the paper's edge weights, times edge-weight-scale


class LinearRegressionTasks:
    """Agent k's tasks: ``shots`` support and ``queries`` query points of its own w°_k
    (``own=False``: of a uniformly drawn agent's); x (A, T, points, M), y (A, T, points, 1)."""

    HETEROGENEITY = ("gmrf",)  # each agent its own w°_k, related by the GMRF on the graph
    DEFAULT_DTYPE = torch.float64
    KEYS = ("dims", "regressor-std", "noise-std", "edge-weight-scale", "graph-v")
    metric_names = ("mse",)

    def __init__(self, laplacian: np.ndarray, true_models: np.ndarray, *, shots: int, queries: int,
                 regressor_std: float, noise_std: float, dtype: torch.dtype = torch.float64) -> None:
        self.laplacian, self.true_models = laplacian, true_models
        self.num_agents, self.dims = true_models.shape
        self.shots, self.queries = shots, queries
        self.regressor_std, self.noise_std = regressor_std, noise_std
        self.dtype = dtype

    @classmethod
    def from_config(cls, config: Any, num_agents: int) -> LinearRegressionTasks:
        check_choice("heterogeneity", config.heterogeneity, cls.HETEROGENEITY)
        graph = graph_of(config, num_agents)
        rng = keyed_generator(config.seed, 0, 0, Stream.TRUTH)
        edges = sum(1 for l, k in graph.edges if l != k)
        weights = rng.choice(EDGE_WEIGHTS, size=edges) * config.edge_weight_scale
        laplacian = gmrf_laplacian(graph, weights, config.graph_v)
        true_models = gmrf_models(laplacian, rng.standard_normal((num_agents, config.dims)))
        return cls(laplacian, true_models, shots=config.shots, queries=config.queries,
                   regressor_std=config.regressor_std, noise_std=config.noise_std,
                   dtype=parse_dtype(config.dtype, cls.DEFAULT_DTYPE))

    def make_model(self) -> nn.Module:
        return nn.Linear(self.dims, 1, bias=False).to(self.dtype)

    def loss_fn(self, prediction: Tensor, target: Tensor) -> Tensor:
        return mse_loss(prediction, target)

    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        return {"mse": mse_loss(prediction, target)}

    def _draw(self, key: DrawKey, num_tasks: int, agents: Sequence[int], own: bool, points: int) -> tuple[Tensor, Tensor]:
        """x (A, T, points, M) and y = x w° + v (A, T, points, 1): all from one keyed draw per agent."""
        size = num_tasks * points * (self.dims + 1)
        u = key.uniform(agents, 2 * size + num_tasks)
        normal = box_muller(u[:, : 2 * size]).reshape(len(agents), num_tasks, points, self.dims + 1)
        if own:
            owner = agent_tensor(agents).to(u.device).reshape(-1, 1).expand(-1, num_tasks)
        else:
            owner = (u[:, 2 * size :] * self.num_agents).long().clamp(max=self.num_agents - 1)
        truth = torch.as_tensor(self.true_models, device=u.device)[owner]  # (A, T, M)
        x = self.regressor_std * normal[..., : self.dims]
        y = (x @ truth[..., None]) + self.noise_std * normal[..., self.dims :]
        return x.to(self.dtype), y.to(self.dtype)

    def sample(self, key: DrawKey, num_tasks: int, agents: Sequence[int], own: bool = True) -> TaskBatch:
        x, y = self._draw(key, num_tasks, agents, own, self.shots + self.queries)
        k = self.shots
        return TaskBatch(x[:, :, :k], y[:, :, :k], x[:, :, k:], y[:, :, k:])

    def sample_evaluation(self, key: DrawKey, num_tasks: int, agents: Sequence[int], own: bool) -> TaskBatch:
        return self.sample(key, num_tasks, agents, own)

    def truth_metrics(self, models: np.ndarray, laplacian: np.ndarray | None = None) -> dict[str, float]:
        """msd, msd-db, and laplacian-error where a learned ``laplacian`` is given."""
        msd = float(np.mean(np.sum((np.asarray(models, dtype=np.float64) - self.true_models) ** 2, axis=1)))
        out = {"msd": msd, "msd-db": 10.0 * math.log10(max(msd, 1e-300))}
        if laplacian is not None:
            out["laplacian-error"] = laplacian_error(laplacian, self.laplacian)
        return out
