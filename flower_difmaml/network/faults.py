"""Seeded fault injection for experiments (no Flower): failing agents and links that drop.

Both are keyed by (seed, agent, round, stream) (``keyed_uniform``, ``keyed_generator``), so
every engine (a Flower ClientApp, the in-process vectorised engine) sees the same faults in a run.
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx
import numpy as np
import scipy.sparse as sp

from ..streams import Stream, keyed_generator, keyed_uniform
from .combination import COMBINATION_RULES, closed_adjacency, combination_matrix, restricted_combination

INJECTED_FAILURE = "injected failure (fail-prob)"


class InjectedFailure(RuntimeError):
    """Raised by an agent that run-config key ``fail-prob`` makes fail this round."""

    def __init__(self) -> None:
        super().__init__(INJECTED_FAILURE)


def failing_agents(seed: int, agents: Sequence[int] | np.ndarray, round_: int, fail_prob: float) -> np.ndarray:
    """Which of ``agents`` fail their training call in round ``round_``, each with probability
    ``fail_prob``: agent k fails where its keyed uniform (seed, k, round, FAILURE) is below it,
    all agents' drawn at once (the same for one agent as for many)."""
    if fail_prob <= 0.0:
        return np.zeros(len(agents), dtype=bool)
    return keyed_uniform(seed, agents, round_, Stream.FAILURE, 1)[:, 0].numpy() < fail_prob


def agent_fails(seed: int, agent: int, round_: int, fail_prob: float) -> bool:
    """Whether agent ``agent``'s training call in round ``round_`` fails (:func:`failing_agents`)."""
    return bool(failing_agents(seed, [agent], round_, fail_prob)[0])


def links_up(num_links: int, seed: int, round_: int, link_drop_prob: float) -> np.ndarray:
    """Boolean mask: which of ``num_links`` links are up in round ``round_`` (each down with ``link_drop_prob``)."""
    if link_drop_prob <= 0.0:
        return np.ones(num_links, dtype=bool)
    return keyed_generator(seed, 0, round_, Stream.LINKS).random(num_links) >= link_drop_prob


class DroppingLinks:
    """Round i's combination matrix A_i when every edge is down with probability p (seeded).

    A_i is the rule applied to round i's graph (the edges that are up); a matrix file's
    weights are renormalised over the edges that are up (``restricted_combination``).
    """

    def __init__(self, graph: nx.Graph, rule: str, combination: sp.csc_array, link_drop_prob: float, seed: int) -> None:
        self.rule = rule
        self.combination = combination
        self.link_drop_prob = link_drop_prob
        self.seed = seed
        self.edges = sorted(tuple(sorted(e)) for e in graph.edges if e[0] != e[1])
        self._last: tuple[int, sp.csc_array] | None = None

    def edges_up(self, round_: int) -> list[tuple[int, int]]:
        up = links_up(len(self.edges), self.seed, round_, self.link_drop_prob)
        return [edge for edge, is_up in zip(self.edges, up) if is_up]

    def links_down(self, round_: int) -> int:
        return len(self.edges) - len(self.edges_up(round_))

    def __call__(self, round_: int) -> sp.csc_array:
        if self._last is None or self._last[0] != round_:
            self._last = (round_, self._round_matrix(round_))
        return self._last[1]

    def _round_matrix(self, round_: int) -> sp.csc_array:
        graph = nx.Graph()
        graph.add_nodes_from(range(self.combination.shape[0]))
        graph.add_edges_from(self.edges_up(round_))
        if self.rule in COMBINATION_RULES:
            return combination_matrix(self.rule, graph)
        return restricted_combination(self.combination, links=closed_adjacency(graph))
