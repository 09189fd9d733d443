"""Tests for flower_difmaml.network.graphs: every topology, its structure and its errors."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from flower_difmaml.network.graphs import DIFMAML_PAPER_EDGES, TOPOLOGIES, closed_degrees, make_graph


def edge_set(graph: nx.Graph) -> set[tuple[int, int]]:
    return {(min(u, v), max(u, v)) for u, v in graph.edges()}


@pytest.mark.parametrize(
    "topology, num_agents",
    [
        ("ring", 10),
        ("complete", 10),
        ("star", 10),
        ("grid", 10),
        ("erdos-renyi", 10),
        ("geometric", 10),
        ("small-world", 10),
        ("difmaml-paper", 6),
    ],
)
def test_named_topologies_are_connected_on_agents_0_to_n(topology: str, num_agents: int) -> None:
    seed = 1 if topology == "erdos-renyi" else 0  # ER(10, 0.3) with seed 0 is disconnected
    graph = make_graph(topology, num_agents, seed=seed)
    assert list(graph.nodes) == list(range(num_agents))
    assert nx.is_connected(graph)
    assert nx.number_of_selfloops(graph) == 0
    assert not graph.is_directed()


def test_topology_names() -> None:
    assert TOPOLOGIES == (
        "ring", "complete", "star", "grid", "erdos-renyi", "geometric", "small-world", "difmaml-paper", "file"
    )


def test_ring_edges() -> None:
    assert edge_set(make_graph("ring", 5)) == {(0, 1), (1, 2), (2, 3), (3, 4), (0, 4)}


def test_complete_edges_and_single_agent() -> None:
    assert make_graph("complete", 5).number_of_edges() == 10
    single = make_graph("complete", 1)
    assert list(single.nodes) == [0] and single.number_of_edges() == 0


def test_star_has_hub_zero() -> None:
    graph = make_graph("star", 6)
    assert edge_set(graph) == {(0, i) for i in range(1, 6)}
    np.testing.assert_array_equal(closed_degrees(graph), [6, 2, 2, 2, 2, 2])


def test_grid_of_ten_is_three_by_four_with_partial_last_row() -> None:
    # r = floor(sqrt(10)) = 3, c = ceil(10 / 3) = 4:  0 1 2 3 / 4 5 6 7 / 8 9
    graph = make_graph("grid", 10)
    horizontal = {(0, 1), (1, 2), (2, 3), (4, 5), (5, 6), (6, 7), (8, 9)}
    vertical = {(0, 4), (1, 5), (2, 6), (3, 7), (4, 8), (5, 9)}
    assert edge_set(graph) == horizontal | vertical
    assert graph.number_of_edges() == 13
    assert not graph.has_edge(3, 4)  # no wrap-around between rows


@pytest.mark.parametrize("num_agents", [2, 3, 5, 7, 9, 11, 16])
def test_grid_is_connected_for_any_size(num_agents: int) -> None:
    assert nx.is_connected(make_graph("grid", num_agents))


def test_difmaml_paper_graph() -> None:
    graph = make_graph("difmaml-paper", 6)
    assert edge_set(graph) == {(0, 2), (1, 2), (2, 3), (2, 4), (3, 4), (4, 5)}
    assert edge_set(graph) == set(DIFMAML_PAPER_EDGES)
    np.testing.assert_array_equal(closed_degrees(graph), [2, 2, 5, 3, 4, 2])


def test_small_world_starts_from_k_regular_ring() -> None:
    graph = make_graph("small-world", 10, k=4, p=0.0)  # no rewiring: every agent has 4 neighbours
    np.testing.assert_array_equal(closed_degrees(graph), [5] * 10)
    assert graph.has_edge(0, 1) and graph.has_edge(0, 2) and graph.has_edge(0, 9) and graph.has_edge(0, 8)


@pytest.mark.parametrize("topology", ["erdos-renyi", "geometric", "small-world"])
def test_random_topologies_are_deterministic(topology: str) -> None:
    first = make_graph(topology, 12, p=0.4, radius=0.5, seed=3)
    second = make_graph(topology, 12, p=0.4, radius=0.5, seed=3)
    assert edge_set(first) == edge_set(second)


def test_erdos_renyi_seed_changes_the_graph() -> None:
    assert edge_set(make_graph("erdos-renyi", 10, seed=1)) != edge_set(make_graph("erdos-renyi", 10, seed=2))


def test_erdos_renyi_default_experiment_seed_zero_is_disconnected() -> None:
    # ER(10, 0.3) with seed 0 has components {0,4,7,9}, {1,3,5,6,8}, {2}: it must fail, not resample.
    with pytest.raises(ValueError, match=r"topology: 'erdos-renyi' on 10 agents is not connected \(3 components\)"):
        make_graph("erdos-renyi", 10, p=0.3, seed=0)


def test_disconnected_erdos_renyi_error_names_the_fix() -> None:
    with pytest.raises(ValueError, match=r"^topology: .*not connected .*topology-p.*topology-seed"):
        make_graph("erdos-renyi", 10, p=0.05, seed=0)


def test_name_is_case_and_space_insensitive() -> None:
    assert edge_set(make_graph(" Ring ", 4)) == {(0, 1), (1, 2), (2, 3), (0, 3)}


# --- networkx graphs passed in ---------------------------------------------------------


def test_networkx_graph_is_relabelled_in_sorted_order_and_self_loops_dropped() -> None:
    given = nx.Graph([("b", "c"), ("a", "b"), ("c", "c")])
    graph = make_graph(given, 3)
    assert list(graph.nodes) == [0, 1, 2]
    assert edge_set(graph) == {(0, 1), (1, 2)}  # a=0, b=1, c=2


def test_networkx_graph_on_agents_keeps_labels() -> None:
    given = nx.Graph()
    given.add_nodes_from([2, 0, 1])
    given.add_edges_from([(2, 0), (0, 1)])
    graph = make_graph(given, 3)
    assert list(graph.nodes) == [0, 1, 2]
    assert edge_set(graph) == {(0, 2), (0, 1)}


def test_directed_graph_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"^topology: got a directed graph"):
        make_graph(nx.DiGraph([(0, 1), (1, 2)]), 3)


def test_networkx_graph_with_wrong_node_count_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"^topology: the given graph has 3 nodes but num_agents=4"):
        make_graph(nx.path_graph(3), 4)


def test_disconnected_networkx_graph_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"^topology: 'graph' on 4 agents is not connected \(2 components\)"):
        make_graph(nx.Graph([(0, 1), (2, 3)]), 4)


# --- edge-list files -------------------------------------------------------------------


def test_edge_list_file(tmp_path) -> None:
    path = tmp_path / "edges.txt"
    path.write_text("# a path with a chord\n0 1\n\n1 2   # inline comment\n2 3\n3 0\n")
    graph = make_graph("file", 4, path=str(path))
    assert edge_set(graph) == {(0, 1), (1, 2), (2, 3), (0, 3)}


def test_edge_list_malformed_line_names_file_and_line(tmp_path) -> None:
    path = tmp_path / "edges.txt"
    path.write_text("0 1\n1 2\na b c\n")
    expected = r"^topology-file: .*edges\.txt line 3: expected two integers 'u v', got 'a b c'"
    with pytest.raises(ValueError, match=expected):
        make_graph("file", 3, path=str(path))


def test_edge_list_vertex_out_of_range(tmp_path) -> None:
    path = tmp_path / "edges.txt"
    path.write_text("0 1\n1 5\n")
    with pytest.raises(ValueError, match=r"^topology-file: .* line 2: vertex 5 out of range; allowed: 0\.\.2"):
        make_graph("file", 3, path=str(path))


def test_edge_list_agent_count_mismatch(tmp_path) -> None:
    path = tmp_path / "edges.txt"
    path.write_text("0 1\n1 2\n")
    with pytest.raises(ValueError, match=r"^topology-file: .*names agents 0\.\.2 \(3 agents\) but num_agents=5"):
        make_graph("file", 5, path=str(path))


def test_edge_list_disconnected(tmp_path) -> None:
    path = tmp_path / "edges.txt"
    path.write_text("0 1\n2 3\n")
    with pytest.raises(ValueError, match=r"^topology-file: .* not connected \(2 components\)"):
        make_graph("file", 4, path=str(path))


def test_edge_list_missing_file(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"^topology-file: cannot read .*nope\.txt"):
        make_graph("file", 3, path=str(tmp_path / "nope.txt"))


def test_edge_list_without_path() -> None:
    with pytest.raises(ValueError, match=r"^topology-file: required when topology = 'file'"):
        make_graph("file", 3)


# --- other errors ----------------------------------------------------------------------


def test_unknown_topology_lists_allowed_names() -> None:
    with pytest.raises(ValueError, match=r"^topology: unknown 'rng' \(did you mean 'ring'\?\); allowed: ring, complete, star, grid"):
        make_graph("rng", 5)


def test_difmaml_paper_needs_six_agents() -> None:
    with pytest.raises(ValueError, match=r"^topology: 'difmaml-paper' .*num_agents=5, need 6"):
        make_graph("difmaml-paper", 5)


def test_ring_needs_three_agents() -> None:
    with pytest.raises(ValueError, match=r"^topology: 'ring' needs at least 3 agents"):
        make_graph("ring", 2)


@pytest.mark.parametrize("topology", ["ring", "star", "grid", "erdos-renyi"])
def test_single_agent_only_with_complete(topology: str) -> None:
    with pytest.raises(ValueError, match=r"^topology: .*needs num_agents >= 2, got 1"):
        make_graph(topology, 1)


@pytest.mark.parametrize("p", [-0.1, 1.5, "0.3"])
def test_probability_out_of_range(p) -> None:
    with pytest.raises(ValueError, match=r"^topology-p: got .*; allowed: a number in \[0, 1\]"):
        make_graph("erdos-renyi", 10, p=p)


@pytest.mark.parametrize("radius", [0.0, -1.0])
def test_radius_must_be_positive(radius: float) -> None:
    with pytest.raises(ValueError, match=r"^topology-radius: got .*allowed: a finite number > 0"):
        make_graph("geometric", 10, radius=radius)


@pytest.mark.parametrize("k", [0, 3, 10, 2.5])
def test_small_world_k(k) -> None:
    with pytest.raises(ValueError, match=r"^topology-k: got .*even integer with 2 <= k < num_agents=10"):
        make_graph("small-world", 10, k=k)


@pytest.mark.parametrize("seed", [-1, 1.5])
def test_seed_must_be_non_negative_integer(seed) -> None:
    with pytest.raises(ValueError, match=r"^topology-seed: got .*allowed: an integer >= 0"):
        make_graph("erdos-renyi", 10, seed=seed)


def test_unused_parameters_are_not_checked() -> None:
    # p, radius, k and seed only matter to the random topologies.
    assert make_graph("ring", 4, p=7.0, radius=-1.0, k=3, seed=-5).number_of_edges() == 4


def test_closed_degrees_needs_agent_labels() -> None:
    with pytest.raises(ValueError, match=r"^topology: graph nodes must be 0\.\.N-1"):
        closed_degrees(nx.Graph([(1, 2)]))


def test_errors_are_one_line(tmp_path) -> None:
    with pytest.raises(ValueError) as error:
        make_graph("file", 3, path=str(tmp_path / "missing.txt"))
    assert "\n" not in str(error.value)
