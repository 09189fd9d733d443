"""Loss-based resilient combination (Li, Abbas, Koutsoukos, NeurIPS 2020), on agent k.

After its adapt step in round i, agent k scores every model phi_l that reached it (its
own included) by the loss on its own current batch, for MAML the post-adaptation query
loss J_k(phi_l) of eq. (2) in ``meta.maml``, and keeps running losses

    r_kl <- (1 - gamma) * r_kl + gamma * J_k(phi_l)                       (1)

It keeps the neighbours that fit its data at least as well as its own model,

    K_k = {l : r_kl <= r_kk}   (k itself always in it),                    (2)

and combines them with weights inversely proportional to their running losses,

    a_lk = (1 / r_kl) / sum_{m in K_k} (1 / r_km),   w_k = sum_{l in K_k} a_lk phi_l.   (3)

Running losses start at 1 (the authors' code). Scored on the batch phi_k was just
adapted on, an agent's own model has a head start of about mu * (||g_k||^2 - g_k . g_l)
over a neighbour's; run-config ``resilient-score = "fresh"`` scores on other tasks of its
own distribution instead. Pure numpy: the ClientApp keeps r_k in ``context.state``; the
in-process engine keeps one r_k per agent.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

RESILIENT = "resilient"  # the name of this rule (key ``aggregation``)
RESILIENT_SCORES = ("current", "fresh")  # which of its own tasks an agent scores models on
RUNNING_LOSS_INIT = 1.0


def initial_running_losses(num_agents: int) -> np.ndarray:
    """r_k before any round: RUNNING_LOSS_INIT for every agent l."""
    return np.full(num_agents, RUNNING_LOSS_INIT, dtype=np.float64)


def update_running_losses(running: np.ndarray, losses: Mapping[int, float], gamma: float) -> np.ndarray:
    """Eq. (1) for the scored agents l (keys of ``losses``); the others' r_kl are kept."""
    updated = np.array(running, dtype=np.float64)
    for agent, loss in losses.items():
        updated[agent] = (1.0 - gamma) * updated[agent] + gamma * loss
    return updated


def resilient_weights(running: np.ndarray, candidates: list[int], own: int) -> dict[int, float]:
    """Eqs. (2)-(3): weight a_lk of each kept candidate l (those left out get none)."""
    kept = [l for l in candidates if l == own or running[l] <= running[own]]
    inverse = np.array([1.0 / running[l] for l in kept])
    return dict(zip(kept, (inverse / inverse.sum()).tolist()))


def resilient_combine(
    models: Mapping[int, np.ndarray], losses: Mapping[int, float], running: np.ndarray, own: int, gamma: float
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """One combination step of agent ``own``: (w_k, updated r_k, kept agents).

    ``models`` are the phi_l that reached agent ``own`` (its own included), ``losses``
    their scores J_k(phi_l) on its current batch, ``running`` its r_k before this round.
    """
    running = update_running_losses(running, losses, gamma)
    weights = resilient_weights(running, sorted(models), own)
    combined = sum(weight * models[l] for l, weight in weights.items())
    return np.asarray(combined, dtype=models[own].dtype), running, sorted(weights)
