"""Tests for flower_difmaml.network.combination: hand-computed weights, spectra and matrix-file errors."""

from __future__ import annotations

import networkx as nx
import numpy as np
import scipy.sparse as sp
import pytest

from flower_difmaml.network.combination import (
    combine,
    COMBINATION_RULES,
    combination_matrix,
    combination_report,
    identity_weights,
    load_combination_matrix,
    max_degree_weights,
    metropolis_weights,
    perron_vector,
    second_largest_eigenvalue_modulus,
    uniform_weights,
    validate_combination_matrix,
)
from flower_difmaml.network.graphs import make_graph

PATH_0_1_2 = nx.path_graph(3)  # closed degrees 2, 3, 2


@pytest.fixture
def paper_graph() -> nx.Graph:
    return make_graph("difmaml-paper", 6)  # closed degrees 2, 2, 5, 3, 4, 2


def test_rule_names() -> None:
    assert COMBINATION_RULES == ("metropolis", "uniform", "max-degree", "identity")


# --- hand-computed matrices ------------------------------------------------------------


def test_metropolis_on_path() -> None:
    expected = np.array(
        [
            [2 / 3, 1 / 3, 0.0],
            [1 / 3, 1 / 3, 1 / 3],
            [0.0, 1 / 3, 2 / 3],
        ]
    )
    np.testing.assert_allclose(metropolis_weights(PATH_0_1_2).toarray(), expected, rtol=0, atol=1e-15)


def test_metropolis_on_difmaml_paper(paper_graph: nx.Graph) -> None:
    A = metropolis_weights(paper_graph).toarray()
    expected = np.array(
        [
            [4 / 5, 0, 1 / 5, 0, 0, 0],
            [0, 4 / 5, 1 / 5, 0, 0, 0],
            [1 / 5, 1 / 5, 1 / 5, 1 / 5, 1 / 5, 0],
            [0, 0, 1 / 5, 11 / 20, 1 / 4, 0],
            [0, 0, 1 / 5, 1 / 4, 3 / 10, 1 / 4],
            [0, 0, 0, 0, 1 / 4, 3 / 4],
        ]
    )
    np.testing.assert_allclose(A, expected, rtol=0, atol=1e-15)
    assert A[2, 0] == pytest.approx(1 / 5) and A[0, 0] == pytest.approx(4 / 5)
    assert A[4, 3] == pytest.approx(1 / 4) and A[2, 3] == pytest.approx(1 / 5)
    assert A[3, 3] == pytest.approx(1 - 1 / 4 - 1 / 5)
    np.testing.assert_allclose(A, A.T)
    np.testing.assert_allclose(A.sum(axis=0), 1.0)
    np.testing.assert_allclose(A.sum(axis=1), 1.0)


def test_uniform_on_path() -> None:
    expected = np.array(
        [
            [1 / 2, 1 / 3, 0.0],
            [1 / 2, 1 / 3, 1 / 2],
            [0.0, 1 / 3, 1 / 2],
        ]
    )
    A = uniform_weights(PATH_0_1_2).toarray()
    np.testing.assert_allclose(A, expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(perron_vector(A), np.array([2, 3, 2]) / 7)


def test_uniform_on_difmaml_paper(paper_graph: nx.Graph) -> None:
    A = uniform_weights(paper_graph).toarray()
    closed = np.array([2, 2, 5, 3, 4, 2])
    for k in range(6):
        neighbourhood = {k} | set(paper_graph.neighbors(k))
        for l in range(6):
            assert A[l, k] == pytest.approx(1 / closed[k] if l in neighbourhood else 0.0)
    np.testing.assert_allclose(A.sum(axis=0), 1.0)
    assert not np.allclose(A.sum(axis=1), 1.0)  # left- but not doubly stochastic
    np.testing.assert_allclose(perron_vector(A), closed / 18)


def test_max_degree_on_star() -> None:
    star = make_graph("star", 4)  # d = 3, 1, 1, 1; d_max + 1 = 4
    expected = np.array(
        [
            [1 / 4, 1 / 4, 1 / 4, 1 / 4],
            [1 / 4, 3 / 4, 0, 0],
            [1 / 4, 0, 3 / 4, 0],
            [1 / 4, 0, 0, 3 / 4],
        ]
    )
    np.testing.assert_allclose(max_degree_weights(star).toarray(), expected, rtol=0, atol=1e-15)


def test_identity() -> None:
    np.testing.assert_array_equal(identity_weights(PATH_0_1_2).toarray(), np.eye(3))
    assert second_largest_eigenvalue_modulus(identity_weights(PATH_0_1_2).toarray()) == pytest.approx(1.0)


# --- spectra ---------------------------------------------------------------------------


def test_slem_of_metropolis_on_path_is_two_thirds() -> None:
    # eigenvectors [1,1,1] -> 1, [1,0,-1] -> 2/3, [1,-2,1] -> 0
    assert second_largest_eigenvalue_modulus(metropolis_weights(PATH_0_1_2).toarray()) == pytest.approx(2 / 3)


def test_slem_of_complete_metropolis_is_zero() -> None:
    A = metropolis_weights(make_graph("complete", 5)).toarray()
    np.testing.assert_allclose(A, np.full((5, 5), 1 / 5))
    assert second_largest_eigenvalue_modulus(A) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("rule", ["metropolis", "uniform", "max-degree"])
@pytest.mark.parametrize(
    "topology, num_agents", [("ring", 8), ("star", 7), ("grid", 10), ("difmaml-paper", 6), ("erdos-renyi", 10)]
)
def test_cooperative_rules_are_valid_and_mix(rule: str, topology: str, num_agents: int) -> None:
    graph = make_graph(topology, num_agents, seed=1)
    A = combination_matrix(rule, graph).toarray()
    np.testing.assert_array_equal(validate_combination_matrix(A, graph).toarray(), A)
    assert second_largest_eigenvalue_modulus(A) < 1 - 1e-6
    p = perron_vector(A)
    assert np.all(p > 0) and p.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(A @ p, p, atol=1e-12)
    if rule != "uniform":  # doubly stochastic -> uniform Perron vector
        np.testing.assert_allclose(p, np.full(num_agents, 1 / num_agents))


def test_combination_report(paper_graph: nx.Graph) -> None:
    report = combination_report(uniform_weights(paper_graph).toarray())
    assert set(report) == {"slem", "perron"}
    assert isinstance(report["slem"], float) and 0 < report["slem"] < 1
    assert isinstance(report["perron"], list)
    np.testing.assert_allclose(report["perron"], np.array([2, 2, 5, 3, 4, 2]) / 18)


# --- combination_matrix dispatch -------------------------------------------------------


def test_combination_matrix_dispatches_named_rules(paper_graph: nx.Graph) -> None:
    np.testing.assert_array_equal(combination_matrix("metropolis", paper_graph).toarray(), metropolis_weights(paper_graph).toarray())
    np.testing.assert_array_equal(combination_matrix("Max-Degree", paper_graph).toarray(), max_degree_weights(paper_graph).toarray())
    np.testing.assert_array_equal(combination_matrix("identity", paper_graph).toarray(), np.eye(6))


def test_unknown_rule() -> None:
    with pytest.raises(
        ValueError,
        match=r"^combination: unknown 'xyz'; allowed: metropolis, uniform, max-degree, identity, "
        r"or a path to a \.csv/\.npy matrix file$",
    ):
        combination_matrix("xyz", PATH_0_1_2).toarray()


# --- matrix files ----------------------------------------------------------------------


def test_csv_matrix_loads(tmp_path) -> None:
    A = uniform_weights(PATH_0_1_2).toarray()
    path = tmp_path / "A.csv"
    rows = [", ".join(repr(float(x)) for x in row) for row in A]
    path.write_text("# A[l, k]: weight agent k gives agent l\n" + "\n".join(rows))
    loaded = load_combination_matrix(str(path), PATH_0_1_2).toarray()
    assert loaded.dtype == np.float64
    np.testing.assert_array_equal(loaded, A)
    np.testing.assert_array_equal(combination_matrix(str(path), PATH_0_1_2).toarray(), A)


def test_npy_matrix_loads(tmp_path) -> None:
    A = metropolis_weights(PATH_0_1_2).toarray()
    path = tmp_path / "A.npy"
    np.save(path, A)
    np.testing.assert_array_equal(load_combination_matrix(str(path), PATH_0_1_2).toarray(), A)
    np.testing.assert_array_equal(combination_matrix("file", PATH_0_1_2, path=str(path)).toarray(), A)


def test_matrix_without_positive_diagonal_is_allowed() -> None:
    A = np.array([[0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_array_equal(validate_combination_matrix(A, nx.path_graph(2)).toarray(), A)


def write_csv(tmp_path, text: str) -> str:
    path = tmp_path / "A.csv"
    path.write_text(text)
    return str(path)


def test_matrix_wrong_shape(tmp_path) -> None:
    path = write_csv(tmp_path, "0.5, 0.5\n0.5, 0.5\n")
    expected = r"^combination: .*A\.csv: shape \(2, 2\) does not match the graph; expected \(3, 3\)"
    with pytest.raises(ValueError, match=expected):
        load_combination_matrix(path, PATH_0_1_2).toarray()


def test_matrix_negative_entry(tmp_path) -> None:
    path = write_csv(tmp_path, "1.5, 0.5, 0\n-0.5, 0, 0.5\n0, 0.5, 0.5\n")
    with pytest.raises(ValueError, match=r"^combination: .*entry \(1, 0\) = -0\.5 is negative"):
        load_combination_matrix(path, PATH_0_1_2).toarray()


def test_matrix_weight_on_non_edge(tmp_path) -> None:
    path = write_csv(tmp_path, "0.5, 0.5, 0\n0.25, 0, 0.5\n0.25, 0.5, 0.5\n")
    with pytest.raises(ValueError, match=r"^combination: .*entry \(2, 0\) = 0\.25 but \(2, 0\) is not an edge"):
        load_combination_matrix(path, PATH_0_1_2).toarray()


def test_matrix_column_not_summing_to_one(tmp_path) -> None:
    path = write_csv(tmp_path, "0.5, 0.5, 0\n0.5, 0, 0.5\n0, 0.5, 0.4\n")
    with pytest.raises(ValueError, match=r"^combination: .*column 2 sums to 0\.9; every column must sum to 1"):
        load_combination_matrix(path, PATH_0_1_2).toarray()


def test_matrix_nan(tmp_path) -> None:
    path = write_csv(tmp_path, "0.5, 0.5, 0\nnan, 0, 0.5\n0, 0.5, 0.5\n")
    with pytest.raises(ValueError, match=r"^combination: .*entry \(1, 0\) is nan; all entries must be finite"):
        load_combination_matrix(path, PATH_0_1_2).toarray()


def test_matrix_unparseable_csv(tmp_path) -> None:
    path = write_csv(tmp_path, "0.5, 0.5, 0\nhalf, 0, 0.5\n0, 0.5, 0.5\n")
    with pytest.raises(ValueError, match=r"^combination: .*A\.csv: cannot parse a numeric matrix"):
        load_combination_matrix(path, PATH_0_1_2).toarray()


def test_matrix_ragged_csv(tmp_path) -> None:
    path = write_csv(tmp_path, "0.5, 0.5, 0\n0.5, 0\n0, 0.5, 0.5\n")
    with pytest.raises(ValueError, match=r"^combination: .*cannot parse a numeric matrix"):
        load_combination_matrix(path, PATH_0_1_2).toarray()


def test_matrix_missing_file(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"^combination: .*missing\.npy: cannot read the matrix file"):
        combination_matrix(str(tmp_path / "missing.npy"), PATH_0_1_2).toarray()


def test_matrix_unsupported_suffix(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"^combination: .*unsupported file type '\.txt'"):
        load_combination_matrix(str(tmp_path / "A.txt"), PATH_0_1_2).toarray()


def test_validate_uses_source_and_is_one_line() -> None:
    with pytest.raises(ValueError, match=r"^my-source: shape \(2,\) does not match") as error:
        validate_combination_matrix(np.array([0.5, 0.5]), PATH_0_1_2, source="my-source").toarray()
    assert "\n" not in str(error.value)


def test_validate_returns_a_float64_copy() -> None:
    A = np.array([[1, 0], [0, 1]], dtype=np.int64)
    validated = validate_combination_matrix(A, nx.path_graph(2)).toarray()
    assert validated.dtype == np.float64
    validated[0, 0] = 0.0
    assert A[0, 0] == 1


def test_restricted_combination_renormalises_over_senders_and_keeps_lonely_agents() -> None:
    from flower_difmaml.network.combination import restricted_combination

    A = sp.csc_array([[0.5, 0.25, 0.0], [0.5, 0.5, 0.5], [0.0, 0.25, 0.5]])
    assert restricted_combination(A, senders=np.ones(3, dtype=bool)) is A
    restricted = restricted_combination(A, senders=np.array([True, False, True]))
    # column 0: a_00 only -> 1; column 1: 0.25, 0.25 over 0.5 -> 0.5, 0.5; column 2: a_22 -> 1
    np.testing.assert_allclose(restricted.toarray(), [[1.0, 0.5, 0.0], [0.0, 0.0, 0.0], [0.0, 0.5, 1.0]])
    lonely = restricted_combination(sp.csc_array([[0.0, 1.0], [1.0, 0.0]]), senders=np.array([True, False]))
    np.testing.assert_allclose(lonely.toarray(), [[1.0, 1.0], [0.0, 0.0]])  # agent 0 heard nobody: keeps its model
    np.testing.assert_allclose(restricted.sum(axis=0), 1.0)
    # links that are down: (0, 1) and (1, 0); senders and links together
    links = sp.csc_array([[1, 0, 0], [0, 1, 1], [0, 1, 1]])
    np.testing.assert_allclose(restricted_combination(A, links=links).toarray(),
                               [[1.0, 0.0, 0.0], [0.0, 2 / 3, 0.5], [0.0, 1 / 3, 0.5]])
    np.testing.assert_allclose(restricted_combination(A, senders=np.array([True, False, True]), links=links).toarray(),
                               [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 1.0]])


def test_sparse_combination_equals_the_dense_product_and_scales() -> None:
    """W <- A^T Phi with sparse A equals the dense product; a ring of 100,000 agents is built
    from its edge list (a dense A would be 80 GB)."""
    graph = make_graph("small-world", 200, k=4, p=0.2, seed=3)
    phi = np.random.default_rng(0).normal(size=(200, 7))
    for rule in ("metropolis", "uniform", "max-degree"):
        A = combination_matrix(rule, graph)
        assert sp.issparse(A) and A.nnz == 200 + 2 * graph.number_of_edges()
        np.testing.assert_allclose(A.T @ phi, A.toarray().T @ phi, rtol=1e-13, atol=1e-13)
    dense_graph = make_graph("erdos-renyi", 200, p=0.3, seed=3)
    for A in (combination_matrix("metropolis", graph), combination_matrix("metropolis", dense_graph)):
        for dtype in (np.float64, np.float32):
            combined = combine(A, phi.astype(dtype))
            assert combined.dtype == dtype
            np.testing.assert_allclose(combined, A.toarray().T @ phi, rtol=1e-5 if dtype == np.float32 else 1e-13, atol=1e-5)
    message = phi.copy()
    message.flags.writeable = False  # a model decoded from a Flower message is read-only
    np.testing.assert_array_equal(combine(A, message), combine(A, phi))
    ring = metropolis_weights(make_graph("ring", 100_000))
    assert ring.nnz == 300_000 and np.allclose(ring.sum(axis=0), 1.0) and ring[0, 1] == pytest.approx(1 / 3)
    assert combination_report(ring) == {"slem": None, "perron": None}


def test_dropping_links_apply_the_rule_to_each_rounds_graph() -> None:
    from flower_difmaml.network.faults import DroppingLinks

    graph = make_graph("ring", 6)
    links = DroppingLinks(graph, "metropolis", metropolis_weights(graph), 0.5, seed=1)
    A_3 = links(3).toarray()
    up = nx.Graph()
    up.add_nodes_from(range(6))
    up.add_edges_from(links.edges_up(3))
    np.testing.assert_array_equal(A_3, metropolis_weights(up).toarray())
    assert links.links_down(3) == 6 - up.number_of_edges()
    assert any(not np.array_equal(links(r).toarray(), A_3) for r in range(4, 10))
    np.testing.assert_array_equal(DroppingLinks(graph, "metropolis", metropolis_weights(graph), 0.5, seed=1)(3).toarray(), A_3)
    never = DroppingLinks(graph, "metropolis", metropolis_weights(graph), 0.0, seed=1)
    np.testing.assert_array_equal(never(3).toarray(), metropolis_weights(graph).toarray())


def test_dropping_links_renormalise_a_matrix_file_over_the_edges_that_are_up() -> None:
    from flower_difmaml.network.faults import DroppingLinks

    graph = make_graph("complete", 3)
    A = uniform_weights(graph)
    links = DroppingLinks(graph, "weights.csv", A, 1.0, seed=0)  # every link down
    np.testing.assert_allclose(links(1).toarray(), np.eye(3))
