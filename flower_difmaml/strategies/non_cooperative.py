"""Non-cooperative agents: each learns alone, A = I (w_k,i = phi_k,i)."""

from __future__ import annotations

import numpy as np

from .diffusion import DifMAML


class NonCooperative(DifMAML):
    """Dif-MAML with the identity combination matrix: nobody hears a neighbour."""

    name = "non-coop"

    def __init__(self, num_agents: int, initial: np.ndarray) -> None:
        super().__init__(initial, np.eye(num_agents))
