"""Communication graphs for decentralized agents.

`make_graph` returns an undirected, connected ``networkx.Graph`` on the nodes
``0..N-1`` (agent ``k`` is node ``k``). Self-loops are never stored: every agent
implicitly keeps its own model, and the combination matrices in
``combination.py`` put that self-weight on the diagonal.

Every error is a one-line ``ConfigError`` (a ``ValueError``) that starts with the run-config key at
fault (``topology``, ``topology-p``, ``topology-radius``, ``topology-k``,
``topology-seed``, ``topology-file``), then the bad value and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import networkx as nx
import numpy as np

from ..errors import ConfigError, check_choice, one_line

TOPOLOGIES = (
    "ring",
    "complete",
    "star",
    "grid",
    "erdos-renyi",
    "geometric",
    "small-world",
    "difmaml-paper",
    "file",
)

# The six-agent graph used in the Dif-MAML authors' experiments.
DIFMAML_PAPER_EDGES = ((0, 2), (1, 2), (2, 3), (2, 4), (3, 4), (4, 5))

# What to change when a topology comes out disconnected.
_DISCONNECTED_HINTS = {
    "erdos-renyi": "raise topology-p or change topology-seed",
    "geometric": "raise topology-radius or change topology-seed",
    "small-world": "lower topology-p, raise topology-k or change topology-seed",
    "file": "add edges to topology-file so that every agent is reachable",
    "graph": "add edges so that every agent is reachable",
}


def make_graph(
    topology: str | nx.Graph,
    num_agents: int,
    *,
    p: float = 0.3,
    radius: float = 0.5,
    k: int = 4,
    seed: int = 0,
    path: str | None = None,
) -> nx.Graph:
    """Build the connected, undirected communication graph on agents ``0..N-1``.

    ``topology`` is one of ``TOPOLOGIES`` or an ``nx.Graph`` with exactly
    ``num_agents`` nodes. ``p`` is used by erdos-renyi (edge probability) and
    small-world (rewiring probability), ``radius`` by geometric, ``k`` by
    small-world (each agent starts linked to its ``k`` nearest ring neighbours),
    ``seed`` by the three random topologies and ``path`` by ``file``.

    ``num_agents`` must be at least 2; a single agent is allowed only with
    ``complete`` (one node, no edges). A disconnected result is an error: the
    graph is never silently resampled.
    """
    if isinstance(topology, nx.Graph):
        graph = _graph_from_networkx(topology, num_agents)
        name = "graph"
    elif isinstance(topology, str):
        name = topology.strip().lower()
        graph = _graph_from_name(name, num_agents, p=p, radius=radius, k=k, seed=seed, path=path)
    else:
        raise ConfigError(
            f"topology: expected a name or a networkx.Graph, got {type(topology).__name__}; "
            f"allowed: {', '.join(TOPOLOGIES)}"
        )

    num_components = nx.number_connected_components(graph)
    if num_components != 1:
        where = f"topology-file: {path}" if name == "file" else f"topology: {name!r}"
        raise ConfigError(
            f"{where} on {num_agents} agents is not connected ({num_components} components); "
            f"{_DISCONNECTED_HINTS.get(name, 'change the topology parameters')}"
        )
    return graph


def graph_of(config: Any, num_agents: int) -> nx.Graph:
    """The run's graph: keys topology, topology-p, topology-radius, topology-k, topology-seed,
    topology-file of ``config`` (attributes ``topology``, ``topology_p``, ...)."""
    return make_graph(
        config.topology, num_agents, p=config.topology_p, radius=config.topology_radius,
        k=config.topology_k, seed=config.topology_seed, path=config.topology_file or None,
    )


def closed_degrees(graph: nx.Graph) -> np.ndarray:
    """Closed-neighbourhood sizes ``n_k = |N_k| = deg(k) + 1`` for agents ``k = 0..N-1``."""
    if graph.is_directed():
        raise ConfigError("topology: got a directed graph; allowed: an undirected networkx.Graph")
    nodes = sorted(graph.nodes)
    if nodes != list(range(len(nodes))):
        raise ConfigError("topology: graph nodes must be 0..N-1; build the graph with make_graph")
    return np.array([len(set(graph.neighbors(node)) - {node}) + 1 for node in nodes], dtype=np.int64)


def _graph_from_name(
    name: str,
    num_agents: int,
    *,
    p: float,
    radius: float,
    k: int,
    seed: int,
    path: str | None,
) -> nx.Graph:
    """Dispatch a topology name to its generator and return the graph on ``0..N-1``."""
    check_topology(name)
    num_agents = _check_num_agents(name, num_agents)

    if name == "ring":
        if num_agents < 3:
            raise ConfigError(f"topology: 'ring' needs at least 3 agents, got num_agents={num_agents}")
        edges = [(i, (i + 1) % num_agents) for i in range(num_agents)]
    elif name == "complete":
        edges = [(i, j) for i in range(num_agents) for j in range(i + 1, num_agents)]
    elif name == "star":
        edges = [(0, i) for i in range(1, num_agents)]
    elif name == "grid":
        edges = _grid_edges(num_agents)
    elif name == "erdos-renyi":
        check_topology(name, p=p, seed=seed)
        edges = nx.erdos_renyi_graph(num_agents, float(p), seed=int(seed)).edges
    elif name == "geometric":
        check_topology(name, radius=radius, seed=seed)
        edges = nx.random_geometric_graph(num_agents, float(radius), seed=int(seed)).edges
    elif name == "small-world":
        check_topology(name, p=p, k=k, seed=seed, num_agents=num_agents)
        edges = nx.watts_strogatz_graph(num_agents, int(k), float(p), seed=int(seed)).edges
    elif name == "difmaml-paper":
        if num_agents != 6:
            raise ConfigError(
                f"topology: 'difmaml-paper' is the authors' 6-agent graph; got num_agents={num_agents}, need 6"
            )
        edges = DIFMAML_PAPER_EDGES
    else:  # "file"
        edges = _read_edge_list(path, num_agents)
    return _agent_graph(num_agents, edges)


def _agent_graph(num_agents: int, edges: Iterable[tuple[int, int]]) -> nx.Graph:
    """Fresh graph with nodes inserted in order ``0..N-1`` and no self-loops or attributes."""
    graph = nx.Graph()
    graph.add_nodes_from(range(num_agents))
    graph.add_edges_from((int(u), int(v)) for u, v in edges if u != v)
    return graph


def _grid_edges(num_agents: int) -> list[tuple[int, int]]:
    """Near-square grid: ``r = floor(sqrt(N))`` rows, ``c = ceil(N / r)`` columns, agent i at (i // c, i % c)."""
    rows = math.isqrt(num_agents)
    cols = math.ceil(num_agents / rows)
    edges = []
    for i in range(num_agents):
        if (i + 1) % cols != 0 and i + 1 < num_agents:  # right neighbour, same row
            edges.append((i, i + 1))
        if i + cols < num_agents:  # neighbour below
            edges.append((i, i + cols))
    return edges


def _graph_from_networkx(graph: nx.Graph, num_agents: int) -> nx.Graph:
    """Copy a user graph onto ``0..N-1`` (sorted node order), dropping self-loops."""
    if graph.is_directed():
        raise ConfigError("topology: got a directed graph; allowed: an undirected networkx.Graph")
    num_agents = _check_num_agents("graph", num_agents)
    if graph.number_of_nodes() != num_agents:
        raise ConfigError(
            f"topology: the given graph has {graph.number_of_nodes()} nodes but num_agents={num_agents}"
        )
    if set(graph.nodes) != set(range(num_agents)):
        try:
            graph = nx.convert_node_labels_to_integers(graph, ordering="sorted")
        except TypeError:
            raise ConfigError("topology: the given graph's node labels cannot be sorted; use integers 0..N-1") from None
    return _agent_graph(num_agents, graph.edges())


def _read_edge_list(path: str | None, num_agents: int) -> list[tuple[int, int]]:
    """Parse an edge list: one ``u v`` per line, ``#`` comments and blank lines ignored."""
    if not path:
        raise ConfigError("topology-file: required when topology = 'file'; got no path")
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.readlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"topology-file: cannot read {path}: {one_line(error)}") from None

    edges = []
    for line_number, raw_line in enumerate(lines, start=1):
        line = raw_line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        try:
            if len(fields) != 2:
                raise ValueError
            u, v = int(fields[0]), int(fields[1])
        except ValueError:
            raise ConfigError(
                f"topology-file: {path} line {line_number}: expected two integers 'u v', got {line!r}"
            ) from None
        for vertex in (u, v):
            if not 0 <= vertex < num_agents:
                raise ConfigError(
                    f"topology-file: {path} line {line_number}: vertex {vertex} out of range; "
                    f"allowed: 0..{num_agents - 1} (num_agents={num_agents})"
                )
        edges.append((u, v))

    if not edges:
        raise ConfigError(f"topology-file: {path} has no edges; expected lines 'u v' with 0 <= u, v < {num_agents}")
    largest_vertex = max(max(u, v) for u, v in edges)
    if largest_vertex + 1 != num_agents:
        raise ConfigError(
            f"topology-file: {path} names agents 0..{largest_vertex} ({largest_vertex + 1} agents) "
            f"but num_agents={num_agents}"
        )
    return edges


def _check_num_agents(name: str, num_agents: int) -> int:
    """At least 2 agents, or exactly 1 with 'complete'."""
    if isinstance(num_agents, bool) or not isinstance(num_agents, (int, np.integer)):
        raise ConfigError(f"topology: num_agents must be an integer, got {num_agents!r}")
    minimum = 1 if name == "complete" else 2
    if num_agents < minimum:
        raise ConfigError(
            f"topology: {name!r} needs num_agents >= {minimum}, got {num_agents} "
            "(a single agent is allowed only with 'complete')"
        )
    return int(num_agents)


def check_topology(
    name: str,
    *,
    p: float | None = None,
    radius: float | None = None,
    k: int | None = None,
    seed: int | None = None,
    num_agents: int | None = None,
) -> None:
    """Check a topology name and the parameters given (the run config checks keys
    ``topology``, ``topology-p``, ``-radius``, ``-k``, ``-seed`` here; ``make_graph`` checks
    the ones its topology uses). ``k < num_agents`` only when ``num_agents`` is given."""
    check_choice("topology", name, TOPOLOGIES)
    if p is not None and (
        isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)) or not 0.0 <= p <= 1.0
    ):
        raise ConfigError(f"topology-p: got {p!r}; allowed: a number in [0, 1]")
    if radius is not None and (
        isinstance(radius, bool)
        or not isinstance(radius, (int, float, np.floating, np.integer))
        or not math.isfinite(radius)
        or radius <= 0
    ):
        raise ConfigError(f"topology-radius: got {radius!r}; allowed: a finite number > 0")
    if k is not None:
        k_int = _as_int(k)
        if k_int is None or k_int < 2 or k_int % 2 != 0 or (num_agents is not None and k_int >= num_agents):
            raise ConfigError(
                f"topology-k: got {k!r}; allowed: an even integer with 2 <= k < num_agents"
                + (f"={num_agents}" if num_agents is not None else "")
            )
    if seed is not None:
        seed_int = _as_int(seed)
        if seed_int is None or seed_int < 0:
            raise ConfigError(f"topology-seed: got {seed!r}; allowed: an integer >= 0")


def _as_int(value: object) -> int | None:
    """``value`` as an int if it is an integer (or an integral float), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    return None

