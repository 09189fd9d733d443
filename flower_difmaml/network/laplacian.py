"""Task graphs as Laplacians (Wan and Vlaski, "Multitask Learning with Learned Task
Relationships", arXiv 2510.10570, and "Decentralized Multitask Learning over Learned Task
Graphs").

The agents' true models W = col{w_k} (N x M) are a Gaussian Markov random field whose
precision is a generalised graph Laplacian L = D - A + V (A >= 0 the task relations on the
graph's edges, D = diag(A 1), V = diag(v) >= 0): W ~ N(0, L^-1 kron I_M). The MAP estimate
regularises the agents' risks, sum_k J_k(w_k) + (eta / 2) W^T (L kron I) W, and its
gradient step is the multitask diffusion

    psi_k = w_k - mu' grad J_k(w_k),     w_k = psi_k - mu' eta sum_{l in N_k} L_kl psi_l,

i.e. W <- (I - c L) Psi with c = mu' eta, stable for c <= 2 / lambda_max(L).

Local estimate of agent k, from the models of its closed neighbourhood N_k only: X_k
(|N_k| x M) stacks them, Sigma_k = X_k X_k^T / M, Gamma_k = Sigma_k^-1; by the Schur
complement the row of Gamma_k that belongs to k is row k of L restricted to N_k (the GMRF's
conditional of w_k given the others depends on N_k only). Row k of L' is that row (zero
outside N_k); the estimate is L_hat = (L' + L'^T) / 2.

A Laplacian (V = 0, L 1 = 0) is an intrinsic GMRF: the density does not change when every
model moves by one common vector, so the models carry no information on their common mean.
For form ``laplacian`` the neighbourhood's models are centred first (X_k - 1 m_k^T, m_k their
mean) and Gamma_k is the pseudo-inverse of the centred Sigma_k, whose rows sum to zero as
L's do. The learned weights are then kept only between agents whose partial correlation
rho_kl = -L_kl / sqrt(L_kk L_ll) is at least a threshold (key ``graph-threshold``): every
positive weight left in L mixes its two agents towards one consensus over enough rounds, so a
weak relation estimated between unrelated tasks costs more than a weak true one gains
(benchmarks/learned_graph.md (e)). Models of one group are near copies, so the centred Sigma_k
has near-zero eigenvalues along their differences, and its pseudo-inverse amplifies whatever
noise lies there: for form ``laplacian`` Sigma_k is shrunk towards a multiple of the projector
P = I - 1 1^T / n (Ledoit and Wolf's target, restricted to the space the centred models span),

    Sigma_k <- (1 - s) Sigma_k + s (tr Sigma_k / (n - 1)) P,     s = key ``graph-shrinkage``,

which keeps the rows summing to zero and bounds the precision's noise; the partial correlations
then separate the groups (learned_graph.md (f)).

The step. With the paper's eta every agent takes the same c = mu' eta. The scale-free choice
(key ``graph-step``) preconditions the regulariser's gradient by its diagonal (a Jacobi step),
c_k = s / L_kk, so that each agent moves the same fraction s of the way to its neighbours'
weighted mean however strong its own relations are:

    w_k = psi_k - (s / L_kk) sum_l L_kl psi_l = (1 - s) psi_k + s sum_{l != k} (a_kl / d_k) psi_l,

stable for s <= 2 / lambda_max(D^-1/2 L D^-1/2) (D = diag(L); I - s D^-1 L is similar to
I - s D^-1/2 L D^-1/2). One c for all agents, 1 / lambda_max(L), leaves every agent but the
most strongly related one nearly alone (learned_graph.md (f)).

Everything here is sparse on the graph's support (N_k from a combination matrix's columns).
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError, check_choice, one_line

GRAPH_FORMS = ("laplacian", "ggl")  # key graph-form
# lambda_min below -this * lambda_max: the multitask step grows a mode, for any c > 0, faster than
# an LMS step contracts it (an estimated ggl from neural-network models: -0.024; linear
# regression, M = 100: -2.4e-4 at worst of 6 runs, and stable)
INDEFINITE_TOLERANCE = 1e-3


def local_laplacian_row(models: np.ndarray, own: int, *, centred: bool = False, shrinkage: float = 0.0) -> np.ndarray:
    """Row ``own`` of Gamma_k = Sigma_k^-1, Sigma_k = X X^T / M for the neighbourhood's models X
    (|N_k| x M), X - 1 m^T (m the models' mean) if ``centred``, shrunk by ``shrinkage`` s:
    (1 - s) Sigma_k + s (tr Sigma_k / r) T, with T = I (r = n) or, centred, P = I - 1 1^T / n
    (r = n - 1).

    A pseudo-inverse where Sigma_k is singular (more neighbours than parameters, equal models,
    or centred models: 1 is in the null space, and the row sums to zero).
    """
    x = np.asarray(models, dtype=np.float64)
    n = x.shape[0]
    if centred:
        x = x - x.mean(axis=0)
    sigma = x @ x.T / x.shape[1]
    if shrinkage > 0 and n > 1:
        target = np.eye(n) - 1.0 / n if centred else np.eye(n)
        sigma = (1 - shrinkage) * sigma + shrinkage * np.trace(sigma) / np.trace(target) * target
    return np.linalg.pinv(sigma, hermitian=True)[own]


def estimate_laplacian(models: np.ndarray, support: sp.csc_array, *, centred: bool = False,
                       shrinkage: float = 0.0) -> sp.csc_array:
    """L_hat = (L' + L'^T) / 2, row k of L' from agent k's closed neighbourhood (the support of
    column k of ``support``, which must hold the diagonal) and the models (N x M) there,
    centred in each neighbourhood if ``centred`` and shrunk by ``shrinkage`` (see
    ``local_laplacian_row``)."""
    rows, cols, values = [], [], []
    for k in range(support.shape[0]):
        neighbours = np.sort(support.indices[support.indptr[k] : support.indptr[k + 1]])
        own = int(np.searchsorted(neighbours, k))
        if own >= len(neighbours) or neighbours[own] != k:
            raise ValueError(f"estimate_laplacian: column {k} of the support lacks the diagonal")
        rows.append(np.full(len(neighbours), k))
        cols.append(neighbours)
        values.append(local_laplacian_row(models[neighbours], own, centred=centred, shrinkage=shrinkage))
    n = support.shape[0]
    one_sided = sp.coo_array((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return ((one_sided + one_sided.T) / 2).tocsc()


def partial_correlations(estimate: sp.sparray) -> sp.csc_array:
    """rho_kl = -L_kl / sqrt(L_kk L_ll) off the diagonal (0 on it and where L_kk <= 0): the
    correlation of w_k and w_l given the other models, for a GMRF of precision L."""
    diagonal = estimate.diagonal()
    scale = np.where(diagonal > 0, 1.0 / np.sqrt(np.where(diagonal > 0, diagonal, 1.0)), 0.0)
    off_diagonal = sp.csc_array(estimate) - sp.diags_array(diagonal)
    return (-(sp.diags_array(scale) @ off_diagonal @ sp.diags_array(scale))).tocsc()


def laplacian_of_positive_weights(estimate: sp.sparray, threshold: float = 0.0) -> sp.csc_array:
    """Form ``laplacian``: the learned positive weights a_kl = -L_hat_kl (k != l) of the pairs
    whose partial correlation rho_kl is positive and at least ``threshold`` (key
    ``graph-threshold``), and their Laplacian D - A, whose rows sum to zero (no shrinkage of the
    models towards 0)."""
    estimate = sp.csc_array(estimate)
    kept = partial_correlations(estimate)  # 1 where a weight is kept, on rho's own sparsity
    kept.data = ((kept.data > 0) & (kept.data >= threshold)).astype(np.float64)
    weights = (-(estimate - sp.diags_array(estimate.diagonal()))).multiply(kept).tocsc()
    weights.eliminate_zeros()
    return (sp.diags_array(weights.sum(axis=1)) - weights).tocsc()


def graph_form(estimate: sp.sparray, form: str, threshold: float = 0.0) -> sp.csc_array:
    """Key ``graph-form``: ``ggl`` the estimate itself (the paper), ``laplacian`` its positive
    weights' Laplacian, of the pairs whose partial correlation is at least ``threshold``."""
    check_choice("graph-form", form, GRAPH_FORMS)
    return sp.csc_array(estimate) if form == "ggl" else laplacian_of_positive_weights(estimate, threshold)


def extreme_eigenvalues(laplacian: sp.sparray) -> tuple[float, float]:
    """(lambda_min, lambda_max) of a symmetric matrix. With lambda_min < 0 (an estimated ggl
    can be indefinite) I - c L has an eigenvalue above 1 for every c > 0: no step is stable."""
    dense = laplacian.toarray() if sp.issparse(laplacian) else np.asarray(laplacian)
    values = np.linalg.eigvalsh(dense)
    return float(values[0]), float(values[-1])


def _checked_definite(matrix: sp.sparray) -> float:
    """lambda_max of a symmetric ``matrix``, refused where it is clearly indefinite
    (``INDEFINITE_TOLERANCE``): I - c L then grows a mode for every step c > 0."""
    lam_min, lam = extreme_eigenvalues(matrix)
    if lam_min < -INDEFINITE_TOLERANCE * lam:
        raise ConfigError(
            f"graph-form: the task graph's L has lambda_min = {lam_min:.4g} < 0 (lambda_max {lam:.4g}), so "
            "I - c L grows a mode for every step c > 0; use graph-form = 'laplacian'"
        )
    return lam


def multitask_steps(laplacian: sp.sparray, meta_lr: float, eta: float, step: float) -> np.ndarray:
    """Each agent's step c_k of w_k = psi_k - c_k sum_l L_kl psi_l (W <- (I - C L) Psi).

    ``eta`` > 0 (key graph-eta, the paper's): c_k = ``meta_lr * eta`` for all k, which must be
    stable, c <= 2 / lambda_max(L). ``eta`` = 0: the Jacobi step c_k = s / L_kk (0 where
    L_kk = 0: an agent without relations stays alone), s = ``step`` (key graph-step) of its
    stable range, s = step * 2 / lambda_max(D^-1/2 L D^-1/2). An L that is clearly indefinite
    has no stable step: refused (the normalised matrix has L's inertia, Sylvester's law)."""
    laplacian = sp.csc_array(laplacian)
    n = laplacian.shape[0]
    if eta > 0:
        lam, c = _checked_definite(laplacian), meta_lr * eta
        if lam > 0 and c > 2.0 / lam:
            raise ConfigError(
                f"graph-eta: meta-lr * graph-eta = {c:.4g} above the stable 2 / lambda_max(L) = {2.0 / lam:.4g} of "
                "the task graph; lower graph-eta or meta-lr, or set graph-eta = 0 to step by graph-step"
            )
        return np.full(n, c)
    diagonal = laplacian.diagonal()
    inverse = np.where(diagonal > 0, 1.0 / np.where(diagonal > 0, diagonal, 1.0), 0.0)
    root = sp.diags_array(np.sqrt(inverse))
    lam = _checked_definite(root @ laplacian @ root)
    return (step * 2.0 / lam) * inverse if lam > 0 else np.zeros(n)


def multitask_combination(laplacian: sp.sparray, steps: np.ndarray) -> sp.csc_array:
    """A = I - L diag(c) (``steps`` c), the combination of the multitask step: W <- A^T Psi is
    w_k = psi_k - c_k sum_l L_kl psi_l. A Laplacian's A has columns summing to one."""
    n = laplacian.shape[0]
    return (sp.eye_array(n) - sp.csc_array(laplacian) @ sp.diags_array(np.asarray(steps, dtype=np.float64))).tocsc()


def load_laplacian(path: str, support: sp.sparray) -> sp.csc_array:
    """Key ``graph-laplacian``: a known task graph's L from a .npy file, checked against the
    graph (``support``: its closed neighbourhoods): N x N, finite, symmetric, zero off the
    graph."""
    source = f"graph-laplacian: {path}"
    try:
        matrix = np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
    except (OSError, ValueError) as error:
        raise ConfigError(f"{source}: cannot read a .npy matrix: {one_line(error)}") from None
    n = support.shape[0]
    if matrix.shape != (n, n):
        raise ConfigError(f"{source}: shape {matrix.shape} does not match the graph; expected ({n}, {n})")
    if not np.isfinite(matrix).all() or not np.allclose(matrix, matrix.T, rtol=0, atol=1e-10):
        raise ConfigError(f"{source}: the matrix must be finite and symmetric")
    outside = (matrix != 0) & (sp.csc_array(support).toarray() == 0)
    if outside.any():
        l, k = np.argwhere(outside)[0]
        raise ConfigError(f"{source}: entry ({l}, {k}) = {float(matrix[l, k])!r} but ({l}, {k}) is not an edge of the graph")
    return sp.csc_array(matrix)


def laplacian_error(estimate: sp.sparray | np.ndarray, truth: np.ndarray) -> float:
    """||L_hat - L||_F^2 / ||L||_F^2."""
    dense = estimate.toarray() if sp.issparse(estimate) else np.asarray(estimate)
    return float(np.sum((dense - truth) ** 2) / np.sum(truth**2))


def gmrf_laplacian(graph: nx.Graph, weights: np.ndarray, v: float) -> np.ndarray:
    """L = D - A + v I, with A's edge weights ``weights`` in the order of ``graph.edges``."""
    n = graph.number_of_nodes()
    adjacency = np.zeros((n, n))
    for (l, k), weight in zip(((l, k) for l, k in graph.edges if l != k), weights):
        adjacency[l, k] = adjacency[k, l] = weight
    return np.diag(adjacency.sum(axis=1)) - adjacency + v * np.eye(n)


def gmrf_models(laplacian: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """W = C^-T Z ~ N(0, L^-1 kron I_M) for L = C C^T (Cholesky) and Z (N x M) standard normal."""
    cholesky = np.linalg.cholesky(laplacian)
    return np.linalg.solve(cholesky.T, normal)
