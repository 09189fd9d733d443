"""Strategies: Dif-MAML neighbour gossip, FedAvg-MAML, non-cooperative agents (no Flower import)."""

from __future__ import annotations

import numpy as np

from ..config import RunConfig
from .base import MetaStrategy
from .diffusion import DifMAML
from .fedavg_maml import FedAvgMAML
from .non_cooperative import NonCooperative

__all__ = ["DifMAML", "FedAvgMAML", "MetaStrategy", "NonCooperative", "make_strategy"]


def make_strategy(config: RunConfig, initial: np.ndarray, combination: np.ndarray) -> MetaStrategy:
    """The strategy named by run-config key ``strategy``; N is the size of ``combination``."""
    if config.strategy == "dif-maml":
        return DifMAML(initial, combination, config.diffusion_order == "cta")
    if config.strategy == "fedavg-maml":
        return FedAvgMAML(len(combination), initial, config.participation, config.seed)
    return NonCooperative(len(combination), initial)
