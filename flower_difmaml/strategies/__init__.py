"""Strategies: Dif-MAML neighbour gossip, FedAvg-MAML, non-cooperative agents (no Flower import)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..config import RunConfig
from .base import MetaStrategy
from .diffusion import DifMAML
from .fedavg_maml import FedAvgMAML
from .non_cooperative import NonCooperative

__all__ = ["DifMAML", "FedAvgMAML", "MetaStrategy", "NonCooperative", "make_strategy"]


def make_strategy(
    config: RunConfig, initial: np.ndarray, combination: np.ndarray | Callable[[int], np.ndarray]
) -> MetaStrategy:
    """The strategy named by run-config key ``strategy``.

    ``combination`` is A, or A_i as a function of the round (links that drop); N is its size.
    """
    num_agents = len(combination(1) if callable(combination) else combination)
    if config.strategy == "dif-maml":
        return DifMAML(initial, combination, config.diffusion_order == "cta")
    if config.strategy == "fedavg-maml":
        return FedAvgMAML(num_agents, initial, config.participation, config.seed, config.link_drop_prob)
    return NonCooperative(num_agents, initial)
