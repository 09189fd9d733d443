"""The built-in strategies, each built from a run's ``StrategySetup`` by one function.

They are registered by name in ``strategies.BUILT_IN`` the way a user's strategy is named
(``'package.module:function'``); their settings are run-config keys, so they take no
``strategy-args``.
"""

from __future__ import annotations

from ..network import RESILIENT, ROBUST_RULES
from ..network.robust import robust_rule
from .base import MetaStrategy, StrategySetup
from .diffusion import DifMAML
from .fedavg_maml import FedAvgMAML
from .learned_graph import LearnedGraph
from .non_cooperative import NonCooperative
from .resilient import ResilientDifMAML


def dif_maml(setup: StrategySetup) -> MetaStrategy:
    """Dif-MAML on A (or A_i): key ``aggregation`` says how agent k combines what reached it
    (weighted by A, median, trimmed-mean, or resilient on the agent), ``diffusion-order`` ATC or CTA."""
    config = setup.config
    if config.aggregation == RESILIENT:
        return ResilientDifMAML(setup.initial, setup.combination)
    aggregate = robust_rule(config.aggregation, config.trim) if config.aggregation in ROBUST_RULES else None
    return DifMAML(setup.initial, setup.combination, config.diffusion_order == "cta", aggregate)


def fedavg_maml(setup: StrategySetup) -> MetaStrategy:
    """FedAvg-MAML: keys ``participation``, ``seed``, ``link-drop-prob``."""
    config = setup.config
    return FedAvgMAML(setup.num_agents, setup.initial, config.participation, config.seed, config.link_drop_prob)


def non_coop(setup: StrategySetup) -> MetaStrategy:
    """Every agent alone (A = I)."""
    return NonCooperative(setup.num_agents, setup.initial)


def learned_graph(setup: StrategySetup) -> MetaStrategy:
    """Multitask diffusion over the learned (or known, key ``graph-laplacian``) task graph:
    keys ``graph-*`` and ``meta-lr``; A's support is the graph."""
    config = setup.config
    return LearnedGraph(
        setup.initial, setup.combination, warmup=config.graph_warmup, reestimate_every=config.graph_reestimate_every,
        form=config.graph_form, threshold=config.graph_threshold,
        shrinkage=config.graph_shrinkage, eta=config.graph_eta, step=config.graph_step,
        meta_lr=config.meta_lr,
        known=setup.task_graph,
    )
