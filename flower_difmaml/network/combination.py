"""Combination matrices for diffusion (adapt-then-combine) learning.

Convention (Sayed, 2014): ``A`` is an ``N x N`` matrix with ``A[l, k] = a_lk``, the
weight agent ``k`` gives to the model of agent ``l``. Agent ``k`` combines its
neighbours' intermediate models as

    w_k = sum_{l in N_k} a_lk * phi_l,

so ``A`` is left-stochastic (``A.T @ 1 = 1``: every column sums to 1) and
``a_lk > 0`` only if ``l == k`` or ``(l, k)`` is an edge. ``N_k`` is the closed
neighbourhood of ``k`` (its neighbours and ``k`` itself), ``n_k = |N_k|``.

``A`` is a sparse float64 ``scipy.sparse.csc_array`` (column k: agent k's weights), built
from the edge list: nothing here makes a dense N x N array, so a ring or a small-world
graph of 100,000 agents costs O(edges), and the combination W <- A^T Phi (``combine``) is a
sparse product where the graph is sparse. Only a matrix file (read dense, at the sizes one writes by hand) and the
spectral summary of small networks (``combination_report``) are dense.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import networkx as nx
import numpy as np
import scipy.sparse as sp
import torch

from ..agent_models import AgentModels, Rows, dtype_of, values_of
from ..errors import ConfigError, did_you_mean, one_line
from .graphs import closed_degrees

COMBINATION_RULES = ("metropolis", "uniform", "max-degree", "identity")
MATRIX_FILE_SUFFIXES = (".csv", ".npy")
COLUMN_SUM_ATOL = 1e-8
SPECTRUM_MAX_AGENTS = 1000  # combination_report's eigen-decompositions are dense: O(N^3), ~3 s at N = 1000
# Above this density W <- A^T Phi is a dense product: BLAS beats scipy's one-threaded sparse
# kernel there (N = 1000, Erdos-Renyi p = 0.3, 1761 float32 parameters, one thread:
# 400 ms sparse, 110 ms dense in float64).
DENSE_PRODUCT_DENSITY = 0.05


def metropolis_weights(graph: nx.Graph) -> sp.csc_array:
    """Metropolis rule: ``a_lk = 1 / max(n_k, n_l)`` for ``l in N_k \\ {k}``, ``a_kk = 1 - sum_{l != k} a_lk``.

    Symmetric and doubly stochastic, so its Perron vector is uniform ``1/N``.
    """
    degrees = closed_degrees(graph)
    l, k = _edges(graph)
    weight = 1.0 / np.maximum(degrees[l], degrees[k])
    off_diagonal = _symmetric(weight, l, k, len(degrees))
    return (off_diagonal + sp.diags_array(1.0 - off_diagonal.sum(axis=0))).tocsc()


def uniform_weights(graph: nx.Graph) -> sp.csc_array:
    """Uniform (averaging) rule: ``a_lk = 1 / n_k`` for ``l in N_k`` (the Dif-MAML authors' code).

    Left-stochastic but not doubly stochastic; its Perron vector is ``n_k / sum_l n_l``.
    """
    degrees = closed_degrees(graph)
    return (closed_adjacency(graph) @ sp.diags_array(1.0 / degrees)).tocsc()


def max_degree_weights(graph: nx.Graph) -> sp.csc_array:
    """Maximum-degree rule: ``a_lk = 1 / (d_max + 1)`` for neighbours, ``a_kk = 1 - d_k / (d_max + 1)``.

    ``d`` is the open degree (without self). Symmetric and doubly stochastic.
    """
    open_degrees = closed_degrees(graph) - 1
    weight = 1.0 / (open_degrees.max() + 1)
    l, k = _edges(graph)
    off_diagonal = _symmetric(np.full(len(l), weight), l, k, len(open_degrees))
    return (off_diagonal + sp.diags_array(1.0 - open_degrees * weight)).tocsc()


def identity_weights(graph: nx.Graph) -> sp.csc_array:
    """Non-cooperative agents: ``A = I`` (each agent keeps its own model)."""
    return sp.eye_array(len(closed_degrees(graph)), format="csc")


_RULES = {
    "metropolis": metropolis_weights,
    "uniform": uniform_weights,
    "max-degree": max_degree_weights,
    "identity": identity_weights,
}


def check_combination(rule: str) -> None:
    """Key ``combination``: one of ``COMBINATION_RULES``, or a path ending in .csv or .npy."""
    if rule.strip().lower() not in COMBINATION_RULES and not rule.strip().lower().endswith(MATRIX_FILE_SUFFIXES):
        raise ConfigError(
            f"combination: unknown {rule!r}{did_you_mean(rule, COMBINATION_RULES)}; allowed: {', '.join(COMBINATION_RULES)}, "
            "or a path to a .csv/.npy matrix file"
        )


def combination_matrix(rule: str, graph: nx.Graph, path: str | None = None) -> sp.csc_array:
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


def restricted_combination(
    A: sp.csc_array, senders: np.ndarray | None = None, links: sp.sparray | None = None
) -> sp.csc_array:
    """The weights renormalised over the usable links: (l, k) is usable if l sent at all
    (``senders[l]``, a boolean vector) and the link is up (``links[l, k]`` nonzero, a
    sparse matrix with the diagonal set), so that every column still sums to 1:

        a'_lk = a_lk / sum_{m usable for k} a_mk     for usable (l, k), else 0.

    A column with no weight left (no neighbour of k, nor k itself, reached k) becomes e_k:
    agent k keeps its own model. ``A`` itself is returned when every link is usable.
    """
    weights = A
    if senders is not None and not np.all(senders):
        weights = sp.diags_array(np.asarray(senders, dtype=np.float64)) @ weights
    if links is not None:
        weights = weights.multiply(links.astype(bool))
    if weights is A:
        return A
    weights = sp.csc_array(weights)
    weights.eliminate_zeros()
    totals = weights.sum(axis=0)
    columns = np.repeat(np.arange(A.shape[1]), np.diff(weights.indptr))
    weights.data /= totals[columns]
    return (weights + sp.diags_array((totals <= 0).astype(np.float64))).tocsc()


def product_weights(A: sp.csc_array, like: Rows) -> np.ndarray | sp.csr_array | torch.Tensor:
    """A^T in the dtype of the models ``like``, the left operand of :func:`combine`: dense where
    A is denser than ``DENSE_PRODUCT_DENSITY``, else sparse (a strategy with a fixed A keeps
    it); for models that are a tensor, a tensor on their device (sparse: COO)."""
    density = A.nnz / max(1, A.shape[0] * A.shape[1])
    dense = density > DENSE_PRODUCT_DENSITY
    weights = (A.toarray() if dense else A).astype(dtype_of(like)).T
    if not isinstance(like, torch.Tensor):
        return weights
    if dense:
        return torch.from_numpy(np.ascontiguousarray(weights)).to(like.device)
    coo = sp.coo_array(weights)
    indices = torch.from_numpy(np.stack([coo.row, coo.col]).astype(np.int64))
    return torch.sparse_coo_tensor(indices, torch.from_numpy(coo.data), size=coo.shape, check_invariants=False).coalesce().to(like.device)


def combine(A: sp.csc_array, models: Rows) -> Rows:
    """W = A^T Phi: row k is w_k = sum_l a_lk phi_l, for the models phi_l in the rows of
    ``models`` (N, P), computed in the models' dtype (an array, or a tensor on its device);
    a sparse product where A is sparse."""
    return product_weights(A, models) @ models


def weighted_mean(models: Mapping[int, np.ndarray], weights: Mapping[int, float]) -> Rows:
    """sum_k n_k x_k / sum_k n_k over the agents of ``models`` (FedAvg's average; n_k =
    ``weights[k]``, e.g. the number of tasks), in the models' dtype (the sum in float64). The
    sum runs over the agents in ascending order (one order for every engine and block split)."""
    stacked = AgentModels.of(models).ascending()
    n = values_of(weights, stacked.ids)
    rows = stacked.rows
    if isinstance(rows, torch.Tensor):
        return (torch.from_numpy(n).to(rows.device) @ rows.double() / n.sum()).to(rows.dtype)
    return (n @ rows / n.sum()).astype(rows.dtype)


def neighbourhood(A: sp.csc_array, k: int) -> np.ndarray:
    """The agents l with a_lk > 0 (whose models agent k combines), ascending."""
    rows = A.indices[A.indptr[k] : A.indptr[k + 1]]
    return np.sort(rows[A.data[A.indptr[k] : A.indptr[k + 1]] > 0])


def load_combination_matrix(path: str, graph: nx.Graph) -> sp.csc_array:
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


def validate_combination_matrix(A: np.ndarray, graph: nx.Graph, source: str = "combination") -> sp.csc_array:
    """Check that ``A`` (dense) is a left-stochastic matrix supported on ``graph``; return it, sparse.

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
    bad = np.argwhere((matrix != 0) & (closed_adjacency(graph).toarray() == 0))
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
    return sp.csc_array(matrix)


def second_largest_eigenvalue_modulus(A: sp.sparray | np.ndarray) -> float:
    """SLEM: the second-largest ``|lambda_i(A)|``; ``< 1`` for a primitive ``A`` on a connected graph."""
    moduli = np.sort(np.abs(np.linalg.eigvals(_dense(A))))[::-1]
    return float(moduli[1]) if len(moduli) > 1 else 0.0


def perron_vector(A: sp.sparray | np.ndarray) -> np.ndarray:
    """The Perron vector ``p``: ``A p = p``, ``p > 0``, ``sum_k p_k = 1`` (right eigenvector for eigenvalue 1)."""
    eigenvalues, eigenvectors = np.linalg.eig(_dense(A))
    vector = np.real(eigenvectors[:, np.argmin(np.abs(eigenvalues - 1.0))])
    total = vector.sum()
    if abs(total) < 1e-12:
        raise ConfigError("combination: no Perron vector (the eigenvector for eigenvalue 1 sums to 0)")
    return vector / total


def combination_report(A: sp.sparray) -> dict[str, float | list[float] | None]:
    """Summary for logging: ``{"slem": float, "perron": [p_0, ..., p_{N-1}]}``; both None
    above ``SPECTRUM_MAX_AGENTS`` agents (a dense eigen-decomposition would dominate the run)."""
    if A.shape[0] > SPECTRUM_MAX_AGENTS:
        return {"slem": None, "perron": None}
    return {
        "slem": second_largest_eigenvalue_modulus(A),
        "perron": [float(value) for value in perron_vector(A)],
    }


def _dense(A: sp.sparray | np.ndarray) -> np.ndarray:
    return A.toarray() if sp.issparse(A) else np.asarray(A, dtype=np.float64)


def _edges(graph: nx.Graph) -> tuple[np.ndarray, np.ndarray]:
    """Edges ``(l, k)`` of the graph without self-loops, as two index arrays."""
    pairs = np.array([(l, k) for l, k in graph.edges() if l != k], dtype=np.int64).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


def _symmetric(weights: np.ndarray, l: np.ndarray, k: np.ndarray, num_agents: int) -> sp.csc_array:
    """The sparse matrix with ``weights`` at (l, k) and at (k, l)."""
    entries = (np.concatenate([weights, weights]), (np.concatenate([l, k]), np.concatenate([k, l])))
    return sp.coo_array(entries, shape=(num_agents, num_agents)).tocsc()


def closed_adjacency(graph: nx.Graph) -> sp.csc_array:
    """0/1 matrix with ones on the edges (both directions) and on the diagonal."""
    num_agents = len(closed_degrees(graph))
    l, k = _edges(graph)
    return (_symmetric(np.ones(len(l)), l, k, num_agents) + sp.eye_array(num_agents)).tocsc()
