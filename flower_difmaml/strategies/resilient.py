"""Dif-MAML with the loss-based resilient combination (Li, Abbas, Koutsoukos, NeurIPS 2020).

Round i, adapt-then-combine, in two exchanges:

    phi_k,i = w_k,i-1 - mu * grad J_k(w_k,i-1)           (train: on agent k, its own tasks)
    w_k,i   = resilient_combine({phi_l,i : l in N_k})     (combine: on agent k, its own tasks)

The combination weights need agent k's own data (``clients.resilient``), so they are
computed on the agent: this strategy only relays each agent's phi_l to its neighbours
(the support of column k of A_i, which may change with dropped links) and keeps the w_k
the agents send back. An agent that failed to train keeps w_k and is not asked to
combine; its neighbours combine without its phi. The agents' running losses live on the
agents; the copies they report are kept here for checkpoints and sent back on resume.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import scipy.sparse as sp

from ..network.combination import neighbourhood
from ..network.resilient import initial_running_losses
from .base import NeighbourModels
from .diffusion import DifMAML


class ResilientDifMAML(DifMAML):
    """Relay for agent-side resilient combination; ``combination`` (A or A_i) gives N_k."""

    tensor_models = False  # numpy code: the agents combine, on their side

    def __init__(self, initial: np.ndarray, combination: sp.csc_array | Callable[[int], sp.csc_array]) -> None:
        super().__init__(initial, combination)
        self.adapted: dict[int, np.ndarray] = {}  # phi_k of this round, from the agents that trained
        self.running_losses = np.tile(initial_running_losses(self.num_agents), (self.num_agents, 1))  # row k: r_k
        self.restore = np.zeros(self.num_agents, dtype=bool)  # resume: whose r_k to send back

    def aggregate_train(self, round_: int, models: Mapping[int, np.ndarray], num_tasks: Mapping[int, int]) -> None:
        self.adapted = dict(models)

    def combine_plan(self, round_: int) -> dict[int, NeighbourModels]:
        A = self.combination_at(round_)
        return {
            k: NeighbourModels(
                {int(l): self.adapted[l] for l in neighbourhood(A, k) if l in self.adapted},
                self.running_losses[k] if self.restore[k] else None,
            )
            for k in self.adapted
        }

    def aggregate_combine(
        self, round_: int, models: dict[int, np.ndarray], running_losses: dict[int, np.ndarray]
    ) -> None:
        for k, model in models.items():
            self.models[k] = model
        for k, running in running_losses.items():
            self.running_losses[k] = running
            self.restore[k] = False

    def state(self) -> dict[str, np.ndarray]:
        return {"models": self.models.copy(), "running-losses": self.running_losses.copy()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.models = np.array(state["models"])
        self.running_losses = np.array(state["running-losses"], dtype=np.float64)
        self.restore[:] = True
