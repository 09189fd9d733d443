"""Dif-MAML (Kayaalp, Vlaski, Sayed, 2022): diffusion over a graph, no server model.

Adapt-then-combine (ATC), round i:

    phi_k,i = w_k,i-1 - mu * grad J_k(w_k,i-1)      (adapt, on agent k, its own tasks)
    w_k,i   = sum_{l in N_k} a_lk * phi_l,i           (combine)

Combine-then-adapt (CTA): psi_k,i = sum_l a_lk w_l,i-1, then w_k,i = psi_k,i - mu grad J_k(psi_k,i).

The strategy is a message bus: it relays to agent k the combination of its neighbours'
replies with the known weights a_lk (column k of A_i). It holds no model of its own and
averages nothing across the network. Faults: an agent that does not reply keeps its
model w_k,i = w_k,i-1; the others combine over the neighbours that did reply, with the
weights renormalised (``restricted_combination``). In CTA the models combined in round i
are those that arrived in round i-1. A_i may change with the round (links that drop).

With a robust ``aggregate`` (coordinate-wise median, trimmed mean) agent k's combination
is that aggregate of {phi_l : l in N_k} (the support of column k of A_i, senders only)
instead of the weighted sum.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..agent_models import AgentModels, Rows, as_rows_of, index_for, on_host
from ..network.combination import combine, neighbourhood, product_weights, restricted_combination
from .base import MetaStrategy


class DifMAML(MetaStrategy):
    """Neighbour gossip with a left-stochastic combination matrix A (A[l, k] = a_lk).

    ``combination`` is A (sparse, ``network.combination``), or a function of the round
    giving A_i; every agent starts from
    ``initial``. ``aggregate`` (models (n, P) -> (P,)) replaces the weighted sum.
    """

    name = "dif-maml"

    def __init__(
        self,
        initial: np.ndarray,
        combination: sp.sparray | np.ndarray | Callable[[int], sp.csc_array],
        combine_then_adapt: bool = False,
        aggregate: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        if not callable(combination):
            fixed = sp.csc_array(combination)  # a dense array is taken too
            combination = lambda round_: fixed  # noqa: E731
        self.combination_at = combination
        first = self.combination_at(1)
        super().__init__(first.shape[0])
        if first.shape != (self.num_agents, self.num_agents):
            raise ValueError(f"combination: shape {first.shape} does not match {self.num_agents} agents")
        self.combine_then_adapt = combine_then_adapt
        self.aggregate = aggregate
        # w_k, in the run's dtype: a numpy array, or a tensor on the agents' device once they reply so
        self.models: Rows = np.tile(np.asarray(initial), (self.num_agents, 1))
        self.arrived = np.ones(self.num_agents, dtype=bool)  # CTA: whose w_k came in last round
        self._weights: tuple[sp.sparray, str, Any] | None = None  # (A, the models' kind, its product_weights)

    @property
    def tensor_models(self) -> bool:
        return self.aggregate is None  # the robust aggregates are numpy code

    def _combine(self, round_: int, models: Rows, senders: np.ndarray) -> Rows:
        """Row k: sum_l a'_lk models_l over the senders, weights renormalised (or the robust
        aggregate of the senders in N_k); models_k if no model reached k."""
        A = self.combination_at(round_)
        if self.aggregate is None:
            restricted = restricted_combination(A, senders=senders)
            if restricted is not A:
                return combine(restricted, models)
            kind = f"{type(models).__name__} on {getattr(models, 'device', 'cpu')}"  # numpy, or a tensor's device
            if self._weights is None or self._weights[0] is not A or self._weights[1] != kind:  # combine(A, .)'s A^T, made once for a fixed A
                self._weights = (A, kind, product_weights(A, models))
            return self._weights[2] @ models
        combined = models.copy()
        for k in range(self.num_agents):
            reached = [l for l in neighbourhood(A, k) if senders[l]]
            if reached:
                combined[k] = self.aggregate(models[reached])
        return combined

    def train_plan(self, round_: int) -> AgentModels:
        start = self._combine(round_, self.models, self.arrived) if self.combine_then_adapt else self.models
        return AgentModels(np.arange(self.num_agents), start)

    def aggregate_train(self, round_: int, models: Mapping[int, np.ndarray], num_tasks: Mapping[int, int]) -> None:
        replies = AgentModels.of(models)
        if len(replies) == self.num_agents and np.array_equal(replies.ids, np.arange(self.num_agents)):
            replied, phi = np.ones(self.num_agents, dtype=bool), replies.rows  # every agent, in order: no copy
        else:  # a copy of the models, of the replies' kind, with the replies in their rows
            replied, phi = np.zeros(self.num_agents, dtype=bool), as_rows_of(self.models, replies.rows if models else self.models)
            if models:
                replied[replies.ids], phi[index_for(replies.ids, phi)] = True, replies.rows
        if self.combine_then_adapt:
            self.models, self.arrived = phi, replied
        else:
            combined = self._combine(round_, phi, replied)
            if not replied.all():  # an agent that did not reply keeps its model
                kept = index_for(~replied, combined)
                combined[kept] = phi[kept]
            self.models = combined

    def current_models(self) -> Rows:
        return self.models

    def round_metrics(self, round_: int) -> dict[str, float]:
        links_down = getattr(self.combination_at, "links_down", None)
        return {"links-down": links_down(round_)} if links_down else {}

    def state(self) -> dict[str, np.ndarray]:
        return {"models": on_host(self.models).copy(), "arrived": self.arrived.copy()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.models = np.array(state["models"])
        self.arrived = np.array(state["arrived"], dtype=bool)
