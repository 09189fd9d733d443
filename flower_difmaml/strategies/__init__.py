"""Strategies: Dif-MAML neighbour gossip, FedAvg-MAML, non-cooperative agents (no Flower import)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from ..network.robust import ROBUST_RULES, robust_rule
from ..config import RunConfig
from ..network import RESILIENT
from .base import MetaStrategy
from .diffusion import DifMAML
from .fedavg_maml import FedAvgMAML
from .learned_graph import LearnedGraph
from .non_cooperative import NonCooperative
from .resilient import ResilientDifMAML

__all__ = ["DifMAML", "FedAvgMAML", "MetaStrategy", "NonCooperative", "ResilientDifMAML", "make_strategy"]


def make_strategy(
    config: RunConfig, initial: np.ndarray, combination: sp.sparray | Callable[[int], sp.sparray],
    task_graph: sp.sparray | None = None,
) -> MetaStrategy:
    """The strategy named by run-config key ``strategy``.

    ``combination`` is A, or A_i as a function of the round (links that drop); N is its size.
    For the neighbourhood rules (median, trimmed-mean, resilient) and learned-graph only A's
    support is used; ``task_graph`` is learned-graph's known L (key ``graph-laplacian``).
    """
    num_agents = (combination(1) if callable(combination) else combination).shape[0]
    if config.strategy == "learned-graph":
        return LearnedGraph(
            initial, combination, warmup=config.graph_warmup, reestimate_every=config.graph_reestimate_every,
            form=config.graph_form, eta=config.graph_eta, step=config.graph_step, meta_lr=config.meta_lr,
            known=task_graph,
        )
    if config.strategy == "dif-maml" and config.combination == RESILIENT:
        return ResilientDifMAML(initial, combination)
    if config.strategy == "dif-maml":
        aggregate = robust_rule(config.combination, config.trim) if config.combination in ROBUST_RULES else None
        return DifMAML(initial, combination, config.diffusion_order == "cta", aggregate)
    if config.strategy == "fedavg-maml":
        return FedAvgMAML(num_agents, initial, config.participation, config.seed, config.link_drop_prob)
    return NonCooperative(num_agents, initial)
