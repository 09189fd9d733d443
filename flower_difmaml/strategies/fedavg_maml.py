"""FedAvg-MAML: the centralized comparison (Per-FedAvg / FedMeta style model averaging).

Round i: a fraction ``participation`` of the agents, S_i, sampled uniformly without
replacement (seeded by (seed, i)), adapt from the global model w_{i-1}; the server sets

    w_i = sum_{k in R_i} n_k * phi_k,i / sum_{k in R_i} n_k,     n_k = number of tasks,

over the agents R_i of S_i that replied (w_i = w_{i-1} if none did). With full
participation, one local step and SGD this equals Dif-MAML on a complete graph with
uniform weights. With ``link-drop-prob`` each agent's link to the server is down for a
round with that probability (seeded): the agent is left out of that round.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..agent_models import AgentModels, Rows, broadcast_rows, on_host
from ..network.combination import weighted_mean
from ..network.faults import links_up
from .base import MetaStrategy


class FedAvgMAML(MetaStrategy):
    """One global model, averaged over the sampled agents' replies."""

    name = "fedavg-maml"
    tensor_models = True

    def __init__(
        self, num_agents: int, initial: np.ndarray, participation: float, seed: int, link_drop_prob: float = 0.0
    ) -> None:
        super().__init__(num_agents)
        self.global_model = np.array(initial)
        self.participation = participation
        self.seed = seed
        self.link_drop_prob = link_drop_prob

    def sample(self, round_: int) -> list[int]:
        """The agents that train in round ``round_``: max(1, round(participation * N)) sampled,
        less those whose link is down."""
        size = max(1, round(self.participation * self.num_agents))
        if size >= self.num_agents:
            sampled = list(range(self.num_agents))
        else:
            rng = np.random.default_rng([self.seed, round_])
            sampled = sorted(int(k) for k in rng.choice(self.num_agents, size=size, replace=False))
        up = links_up(self.num_agents, self.seed, round_, self.link_drop_prob)
        return [k for k in sampled if up[k]]

    def train_plan(self, round_: int) -> AgentModels:
        sampled = self.sample(round_)
        return AgentModels(sampled, broadcast_rows(self.global_model, len(sampled)))

    def aggregate_train(self, round_: int, models: Mapping[int, np.ndarray], num_tasks: Mapping[int, int]) -> None:
        if models:
            self.global_model = weighted_mean(models, num_tasks)

    def current_models(self) -> Rows:
        return broadcast_rows(self.global_model, self.num_agents)

    def round_metrics(self, round_: int) -> dict[str, float]:
        if self.link_drop_prob <= 0.0:
            return {}
        return {"links-down": int((~links_up(self.num_agents, self.seed, round_, self.link_drop_prob)).sum())}

    def state(self) -> dict[str, np.ndarray]:
        return {"global-model": on_host(self.global_model).copy()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.global_model = np.array(state["global-model"])
