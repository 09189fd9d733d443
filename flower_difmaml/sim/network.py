"""The communication graph and combination matrix a run config names (no Flower)."""

from __future__ import annotations

import networkx as nx
import numpy as np

from ..config import NEIGHBOURHOOD_RULES, RunConfig
from ..faults import links_up
from .combination import COMBINATION_RULES, combination_matrix, restricted_combination
from .graphs import make_graph


def matrix_rule(config: RunConfig) -> str:
    """The rule that makes A: identity for non-coop; for the neighbourhood rules (median,
    trimmed-mean, resilient), which weigh the closed neighbourhood themselves, uniform
    weights, whose support is that neighbourhood."""
    if config.strategy == "non-coop":
        return "identity"
    return "uniform" if config.combination in NEIGHBOURHOOD_RULES else config.combination


def build_network(config: RunConfig, num_agents: int) -> tuple[nx.Graph, np.ndarray]:
    """The graph on ``num_agents`` agents and its combination matrix A (see ``matrix_rule``)."""
    graph = make_graph(
        config.topology, num_agents, p=config.topology_p, radius=config.topology_radius,
        k=config.topology_k, seed=config.topology_seed, path=config.topology_file or None,
    )
    return graph, combination_matrix(matrix_rule(config), graph)


def round_combination(
    config: RunConfig, graph: nx.Graph, combination: np.ndarray
) -> np.ndarray | DroppingLinks:
    """A, or A_i by round when Dif-MAML's links drop (``link-drop-prob`` > 0)."""
    if config.strategy != "dif-maml" or config.link_drop_prob <= 0.0:
        return combination
    return DroppingLinks(graph, matrix_rule(config), combination, config.link_drop_prob, config.seed)


class DroppingLinks:
    """Round i's combination matrix A_i when every edge is down with probability p (seeded).

    A_i is the rule applied to round i's graph (the edges that are up); a matrix file's
    weights are renormalised over the edges that are up (``restricted_combination``).
    """

    def __init__(self, graph: nx.Graph, rule: str, combination: np.ndarray, link_drop_prob: float, seed: int) -> None:
        self.rule = rule
        self.combination = combination
        self.link_drop_prob = link_drop_prob
        self.seed = seed
        self.edges = sorted(tuple(sorted(e)) for e in graph.edges if e[0] != e[1])
        self._last: tuple[int, np.ndarray] | None = None

    def edges_up(self, round_: int) -> list[tuple[int, int]]:
        up = links_up(len(self.edges), self.seed, round_, self.link_drop_prob)
        return [edge for edge, is_up in zip(self.edges, up) if is_up]

    def links_down(self, round_: int) -> int:
        return len(self.edges) - len(self.edges_up(round_))

    def __call__(self, round_: int) -> np.ndarray:
        if self._last is None or self._last[0] != round_:
            self._last = (round_, self._round_matrix(round_))
        return self._last[1]

    def _round_matrix(self, round_: int) -> np.ndarray:
        graph = nx.Graph()
        graph.add_nodes_from(range(len(self.combination)))
        graph.add_edges_from(self.edges_up(round_))
        if self.rule in COMBINATION_RULES:
            return combination_matrix(self.rule, graph)
        usable = nx.to_numpy_array(graph, nodelist=range(len(self.combination)), dtype=bool) | np.eye(len(graph), dtype=bool)
        return restricted_combination(self.combination, usable)
