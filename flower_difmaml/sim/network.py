"""The communication graph and combination matrix a run config names (no Flower)."""

from __future__ import annotations

import networkx as nx
import numpy as np

from ..config import RunConfig
from .combination import combination_matrix
from .graphs import make_graph


def build_network(config: RunConfig, num_agents: int) -> tuple[nx.Graph, np.ndarray]:
    """The graph on ``num_agents`` agents and its combination matrix A (identity for non-coop)."""
    graph = make_graph(
        config.topology, num_agents, p=config.topology_p, radius=config.topology_radius,
        k=config.topology_k, seed=config.topology_seed, path=config.topology_file or None,
    )
    rule = "identity" if config.strategy == "non-coop" else config.combination
    return graph, combination_matrix(rule, graph)
