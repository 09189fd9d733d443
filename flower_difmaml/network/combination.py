"""Combination matrices for diffusion (adapt-then-combine) learning.

Convention (Sayed, 2014): ``A`` is an ``N x N`` float64 array with
``A[l, k] = a_lk``, the weight agent ``k`` gives to the model of agent ``l``.
Agent ``k`` combines its neighbours' intermediate models as

    w_k = sum_{l in N_k} a_lk * phi_l,

so ``A`` is left-stochastic (``A.T @ 1 = 1``: every column sums to 1) and
``a_lk > 0`` only if ``l == k`` or ``(l, k)`` is an edge. ``N_k`` is the closed
neighbourhood of ``k`` (its neighbours and ``k`` itself), ``n_k = |N_k|``.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np

from ..errors import ConfigError, one_line
from .graphs import closed_degrees

COMBINATION_RULES = ("metropolis", "uniform", "max-degree", "identity")
MATRIX_FILE_SUFFIXES = (".csv", ".npy")
COLUMN_SUM_ATOL = 1e-8


def metropolis_weights(graph: nx.Graph) -> np.ndarray:
    """Metropolis rule: ``a_lk = 1 / max(n_k, n_l)`` for ``l in N_k \\ {k}``, ``a_kk = 1 - sum_{l != k} a_lk``.

    Symmetric and doubly stochastic, so its Perron vector is uniform ``1/N``.
    """
    degrees = closed_degrees(graph)
    weights = np.zeros((len(degrees), len(degrees)), dtype=np.float64)
    for l, k in _edges(graph):
        weights[l, k] = weights[k, l] = 1.0 / max(degrees[k], degrees[l])
    np.fill_diagonal(weights, 1.0 - weights.sum(axis=0))
    return weights


def uniform_weights(graph: nx.Graph) -> np.ndarray:
    """Uniform (averaging) rule: ``a_lk = 1 / n_k`` for ``l in N_k`` (the Dif-MAML authors' code).

    Left-stochastic but not doubly stochastic; its Perron vector is ``n_k / sum_l n_l``.
    """
    degrees = closed_degrees(graph)
    adjacency = _closed_adjacency(graph)
    return adjacency / degrees[np.newaxis, :]


def max_degree_weights(graph: nx.Graph) -> np.ndarray:
    """Maximum-degree rule: ``a_lk = 1 / (d_max + 1)`` for neighbours, ``a_kk = 1 - d_k / (d_max + 1)``.

    ``d`` is the open degree (without self). Symmetric and doubly stochastic.
    """
    open_degrees = closed_degrees(graph) - 1
    weight = 1.0 / (open_degrees.max() + 1)
    weights = (_closed_adjacency(graph) - np.eye(len(open_degrees))) * weight
    np.fill_diagonal(weights, 1.0 - open_degrees * weight)
    return weights


def identity_weights(graph: nx.Graph) -> np.ndarray:
    """Non-cooperative agents: ``A = I`` (each agent keeps its own model)."""
    return np.eye(len(closed_degrees(graph)), dtype=np.float64)


_RULES = {
    "metropolis": metropolis_weights,
    "uniform": uniform_weights,
    "max-degree": max_degree_weights,
    "identity": identity_weights,
}


def check_combination(rule: str, also: tuple[str, ...] = ()) -> None:
    """Key ``combination``: one of ``COMBINATION_RULES`` (or of ``also``: rules that are not a
    matrix, e.g. the robust ones), or a path ending in .csv or .npy."""
    if rule.strip().lower() not in COMBINATION_RULES + also and not rule.strip().lower().endswith(MATRIX_FILE_SUFFIXES):
        raise ConfigError(
            f"combination: unknown {rule!r}; allowed: {', '.join(COMBINATION_RULES + also)}, "
            "or a path to a .csv/.npy matrix file"
        )


def combination_matrix(rule: str, graph: nx.Graph, path: str | None = None) -> np.ndarray:
    """The combination matrix for ``rule`` on ``graph``.

    ``rule`` is one of ``COMBINATION_RULES``; otherwise the matrix is loaded from
    ``path`` if given, else from ``rule`` itself when it ends with .csv or .npy.
    """
    name = rule.strip().lower()
    if name in _RULES:
        return _RULES[name](graph)
    if path:
        return load_combination_matrix(path, graph)
    check_combination(rule)
    return load_combination_matrix(rule.strip(), graph)


def restricted_combination(A: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """The weights renormalised over the usable links (``usable[l, k]``: l's model reaches k):

        a'_lk = a_lk / sum_{m usable for k} a_mk     for usable (l, k), else 0,

    so every column still sums to 1. ``usable`` broadcasts against ``A``: a column
    ``senders[:, None]`` says which agents sent at all. A column with no weight left (no
    neighbour of k, nor k itself, reached k) becomes e_k: agent k keeps its own model.
    ``A`` itself is returned when every link is usable.
    """
    usable = np.broadcast_to(np.asarray(usable, dtype=bool), A.shape)
    if usable.all():
        return A
    weights = A * usable
    totals = weights.sum(axis=0)
    alone = totals <= 0
    weights[:, ~alone] /= totals[~alone]
    weights[:, alone] = np.eye(len(A))[:, alone]
    return weights


def load_combination_matrix(path: str, graph: nx.Graph) -> np.ndarray:
    """Read ``A`` from a .csv (comma-separated, '#' comments) or .npy file and validate it against ``graph``."""
    source = f"combination: {path}"
    suffix = Path(path).suffix.lower()
    if suffix not in MATRIX_FILE_SUFFIXES:
        raise ConfigError(f"{source}: unsupported file type {suffix!r}; allowed: .csv, .npy")
    try:
        if suffix == ".npy":
            matrix = np.load(path, allow_pickle=False)
        else:
            matrix = np.loadtxt(path, delimiter=",", comments="#", dtype=np.float64, ndmin=2)
    except OSError as error:
        raise ConfigError(f"{source}: cannot read the matrix file: {one_line(error)}") from None
    except ValueError as error:
        raise ConfigError(f"{source}: cannot parse a numeric matrix: {one_line(error)}") from None
    return validate_combination_matrix(matrix, graph, source=source)


def validate_combination_matrix(A: np.ndarray, graph: nx.Graph, source: str = "combination") -> np.ndarray:
    """Check that ``A`` is a left-stochastic matrix supported on ``graph``; return a float64 copy.

    Requires shape ``(N, N)``, finite entries, ``a_lk >= 0``, ``a_lk = 0`` unless
    ``l == k`` or ``(l, k)`` is an edge, and ``sum_l a_lk = 1`` for every column ``k``.
    A positive diagonal is not required.
    """
    num_agents = len(closed_degrees(graph))
    try:
        matrix = np.array(A, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{source}: not a numeric matrix: {one_line(error)}") from None

    if matrix.shape != (num_agents, num_agents):
        raise ConfigError(
            f"{source}: shape {matrix.shape} does not match the graph; expected ({num_agents}, {num_agents})"
        )
    bad = np.argwhere(~np.isfinite(matrix))
    if len(bad):
        l, k = bad[0]
        raise ConfigError(f"{source}: entry ({l}, {k}) is {float(matrix[l, k])}; all entries must be finite")
    bad = np.argwhere(matrix < 0)
    if len(bad):
        l, k = bad[0]
        raise ConfigError(f"{source}: entry ({l}, {k}) = {float(matrix[l, k])!r} is negative; weights must be >= 0")
    bad = np.argwhere((matrix != 0) & (_closed_adjacency(graph) == 0))
    if len(bad):
        l, k = bad[0]
        raise ConfigError(
            f"{source}: entry ({l}, {k}) = {float(matrix[l, k])!r} but ({l}, {k}) is not an edge of the graph; "
            "weights must be 0 off the edges and the diagonal"
        )
    column_sums = matrix.sum(axis=0)
    bad = np.flatnonzero(np.abs(column_sums - 1.0) > COLUMN_SUM_ATOL)
    if len(bad):
        k = bad[0]
        raise ConfigError(
            f"{source}: column {k} sums to {float(column_sums[k])!r}; every column must sum to 1 "
            "(A[l, k] is the weight agent k gives agent l)"
        )
    return matrix


def second_largest_eigenvalue_modulus(A: np.ndarray) -> float:
    """SLEM: the second-largest ``|lambda_i(A)|``; ``< 1`` for a primitive ``A`` on a connected graph."""
    moduli = np.sort(np.abs(np.linalg.eigvals(np.asarray(A, dtype=np.float64))))[::-1]
    return float(moduli[1]) if len(moduli) > 1 else 0.0


def perron_vector(A: np.ndarray) -> np.ndarray:
    """The Perron vector ``p``: ``A p = p``, ``p > 0``, ``sum_k p_k = 1`` (right eigenvector for eigenvalue 1)."""
    eigenvalues, eigenvectors = np.linalg.eig(np.asarray(A, dtype=np.float64))
    vector = np.real(eigenvectors[:, np.argmin(np.abs(eigenvalues - 1.0))])
    total = vector.sum()
    if abs(total) < 1e-12:
        raise ConfigError("combination: no Perron vector (the eigenvector for eigenvalue 1 sums to 0)")
    return vector / total


def combination_report(A: np.ndarray) -> dict[str, float | list[float]]:
    """Summary for logging: ``{"slem": float, "perron": [p_0, ..., p_{N-1}]}``."""
    return {
        "slem": second_largest_eigenvalue_modulus(A),
        "perron": [float(value) for value in perron_vector(A)],
    }


def _edges(graph: nx.Graph) -> list[tuple[int, int]]:
    """Edges ``(l, k)`` of the graph without self-loops."""
    return [(int(l), int(k)) for l, k in graph.edges() if l != k]


def _closed_adjacency(graph: nx.Graph) -> np.ndarray:
    """0/1 matrix with ones on the edges (both directions) and on the diagonal."""
    num_agents = len(closed_degrees(graph))
    adjacency = np.eye(num_agents, dtype=np.float64)
    for l, k in _edges(graph):
        adjacency[l, k] = adjacency[k, l] = 1.0
    return adjacency

