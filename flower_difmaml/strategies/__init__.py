"""Flower strategies: Dif-MAML neighbour gossip, FedAvg-MAML, non-cooperative agents."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config import RunConfig
from .base import MetaStrategy
from .diffusion import DifMAML
from .fedavg_maml import FedAvgMAML
from .non_cooperative import NonCooperative

__all__ = ["DifMAML", "FedAvgMAML", "MetaStrategy", "NonCooperative", "make_strategy"]


def make_strategy(
    config: RunConfig, node_ids: Sequence[int], initial: np.ndarray, combination: np.ndarray
) -> MetaStrategy:
    """The strategy named by run-config key ``strategy``."""
    if config.strategy == "dif-maml":
        return DifMAML(node_ids, initial, combination, config.diffusion_order == "cta")
    if config.strategy == "fedavg-maml":
        return FedAvgMAML(node_ids, initial, config.participation, config.seed)
    return NonCooperative(node_ids, initial)
