"""Dif-MAML (Kayaalp, Vlaski, Sayed, 2022): diffusion over a graph, no server model.

Adapt-then-combine (ATC), round i:

    phi_k,i = w_k,i-1 - mu * grad J_k(w_k,i-1)      (adapt, on agent k, its own tasks)
    w_k,i   = sum_{l in N_k} a_lk * phi_l,i           (combine)

Combine-then-adapt (CTA): psi_k,i = sum_l a_lk w_l,i-1, then w_k,i = psi_k,i - mu grad J_k(psi_k,i).

The strategy is a message bus: it keeps each agent's latest reply and relays to agent k
the combination of its neighbours' replies with the fixed, known weights a_lk
(column k of A). It holds no model of its own and averages nothing across the network.
"""

from __future__ import annotations

import numpy as np

from .base import MetaStrategy


class DifMAML(MetaStrategy):
    """Neighbour gossip with a left-stochastic combination matrix A (A[l, k] = a_lk).

    Every agent starts from ``initial``; N is the size of A.
    """

    name = "dif-maml"

    def __init__(
        self,
        initial: np.ndarray,
        combination: np.ndarray,
        combine_then_adapt: bool = False,
    ) -> None:
        super().__init__(len(combination))
        if combination.shape != (self.num_agents, self.num_agents):
            raise ValueError(f"combination: shape {combination.shape} does not match {self.num_agents} agents")
        self.combination = combination
        self.combine_then_adapt = combine_then_adapt
        self.replies = np.tile(initial, (self.num_agents, 1))  # phi_l (ATC) or w_l (CTA)
        self._combined: np.ndarray | None = None

    def combined(self) -> np.ndarray:
        """Row k: sum_l a_lk * replies_l, what agent k starts its next round from."""
        if self._combined is None:
            self._combined = self.combination.T @ self.replies
        return self._combined

    def train_plan(self, round_: int) -> dict[int, np.ndarray]:
        start = self.combined()
        return {k: start[k] for k in range(self.num_agents)}

    def aggregate_train(self, round_: int, models: dict[int, np.ndarray], num_tasks: dict[int, int]) -> None:
        for agent, model in models.items():
            self.replies[agent] = model
        self._combined = None

    def current_models(self) -> np.ndarray:
        return self.replies if self.combine_then_adapt else self.combined()
