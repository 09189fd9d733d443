"""Byzantine agents and the models they send (no Flower).

A Byzantine agent runs the normal ClientApp; only the adapted model phi it sends is
replaced by the attack's, so every engine exercises the same code path. Draws come
from ``keyed_generator(seed, agent, round, Stream.ATTACK)``: every engine sends the same
attacked models in a run. With s = ``attack-scale``:

    gaussian:   phi + s * n,        n ~ N(0, I) fresh each round
    sign-flip:  -s * phi
    random:     s * n,              n ~ N(0, I) fresh each round (a fresh random model)
    fixed:      s * n0,             n0 ~ N(0, I) drawn once: the same model every round
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import check_choice
from ..streams import Stream, keyed_generator

ATTACKS = ("gaussian", "sign-flip", "random", "fixed")
FIXED_ROUND = 0  # the round whose draw is the fixed attack's model


def byzantine_agents(ids: Sequence[int], fraction: float, seed: int, num_agents: int) -> frozenset[int]:
    """The Byzantine agents: ``ids`` if given, else round(fraction * N) agents drawn with ``seed``."""
    if ids:
        return frozenset(ids)
    count = round(fraction * num_agents)
    if count == 0:
        return frozenset()
    rng = keyed_generator(seed, 0, 0, Stream.BYZANTINE)
    return frozenset(int(k) for k in rng.choice(num_agents, size=count, replace=False))


def attacked_model(attack: str, model: np.ndarray, scale: float, seed: int, agent: int, round_: int) -> np.ndarray:
    """What Byzantine agent ``agent`` sends in round ``round_`` instead of its adapted ``model``."""
    check_choice("attack", attack, ATTACKS)
    if attack == "sign-flip":
        return (-scale * model).astype(model.dtype)
    draw_round = FIXED_ROUND if attack == "fixed" else round_
    noise = keyed_generator(seed, agent, draw_round, Stream.ATTACK).standard_normal(model.shape)
    attacked = model + scale * noise if attack == "gaussian" else scale * noise  # random, fixed: s * n
    return attacked.astype(model.dtype)
