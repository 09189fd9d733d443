"""The learned task graph (Wan and Vlaski): local Laplacian estimate, its forms and step,
the learned-graph strategy, clustered tasks, and the linear-regression family."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from helpers import agent_tasks
from flower_difmaml.learner import MetaLearner
from flower_difmaml.config import ConfigError, RunConfig
from flower_difmaml.network.combination import closed_adjacency
from flower_difmaml.network.laplacian import (
    estimate_laplacian,
    gmrf_laplacian,
    gmrf_models,
    graph_form,
    laplacian_error,
    local_laplacian_row,
    multitask_combination,
    multitask_steps,
    partial_correlations,
)
from flower_difmaml.runner.results import read_metrics
from flower_difmaml.runner.vectorized import run_vectorized
from flower_difmaml.strategies.learned_graph import LearnedGraph
from flower_difmaml.strategies.non_cooperative import NonCooperative
from flower_difmaml.tasks.linear_regression import LinearRegressionTasks
from flower_difmaml.tasks.sinusoid import SinusoidTasks

PATH = nx.path_graph(3)
L_PATH = np.array([[2.0, -1.0, 0.0], [-1.0, 3.0, -1.0], [0.0, -1.0, 2.0]])  # D - A + I, weights 1
QUIET = dict(progress=lambda line: None)


def models_with_covariance(covariance: np.ndarray, m: int) -> np.ndarray:
    """X (N x M) with X X^T / M equal to ``covariance`` exactly."""
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(m, len(covariance))))
    return np.linalg.cholesky(covariance) @ (np.sqrt(m) * q.T)


def test_local_estimate_on_a_path_recovers_the_laplacian() -> None:
    """Sigma = L^-1: row k of (Sigma restricted to N_k)^-1 is row k of L on N_k (Schur complement)."""
    x = models_with_covariance(np.linalg.inv(L_PATH), 50)
    np.testing.assert_allclose(x @ x.T / 50, np.linalg.inv(L_PATH), atol=1e-12)
    np.testing.assert_allclose(local_laplacian_row(x[[0, 1]], 0), [2.0, -1.0], atol=1e-10)
    np.testing.assert_allclose(local_laplacian_row(x, 1), [-1.0, 3.0, -1.0], atol=1e-10)
    estimate = estimate_laplacian(x, closed_adjacency(PATH))
    np.testing.assert_allclose(estimate.toarray(), L_PATH, atol=1e-10)
    assert laplacian_error(estimate, L_PATH) < 1e-20


def test_estimate_is_the_symmetrised_rows_and_zero_off_the_graph() -> None:
    x = np.random.default_rng(1).normal(size=(3, 40))
    estimate = estimate_laplacian(x, closed_adjacency(PATH)).toarray()
    row0, row1 = local_laplacian_row(x[[0, 1]], 0), local_laplacian_row(x, 1)
    assert estimate[0, 1] == estimate[1, 0] == pytest.approx((row0[1] + row1[0]) / 2)
    assert estimate[0, 0] == pytest.approx(row0[0]) and estimate[1, 1] == pytest.approx(row1[1])
    assert estimate[0, 2] == estimate[2, 0] == 0.0  # not neighbours: agent 0 never sees agent 2


def test_forms_and_the_multitask_step() -> None:
    estimate = sp.csc_array([[2.0, -1.0, 0.5], [-1.0, 3.0, -2.0], [0.5, -2.0, 4.0]])
    laplacian = graph_form(estimate, "laplacian").toarray()  # positive weights 1 (0-1) and 2 (1-2); 0-2 dropped
    np.testing.assert_allclose(laplacian, [[1.0, -1.0, 0.0], [-1.0, 3.0, -2.0], [0.0, -2.0, 2.0]])
    np.testing.assert_allclose(laplacian.sum(axis=1), 0.0)
    np.testing.assert_array_equal(graph_form(estimate, "ggl").toarray(), estimate.toarray())
    # graph-step: c_k = s / L_kk; the path 0-1-2 is bipartite, so lambda_max(D^-1/2 L D^-1/2) = 2 and s = 0.5
    np.testing.assert_allclose(multitask_steps(sp.csc_array(laplacian), meta_lr=0.1, eta=0.0, step=0.5),
                               [0.5 / 1, 0.5 / 3, 0.5 / 2])
    np.testing.assert_allclose(multitask_steps(sp.csc_array(laplacian), meta_lr=0.1, eta=2.0, step=0.5), [0.2] * 3)
    with pytest.raises(ConfigError, match=r"^graph-eta: meta-lr \* graph-eta = 1 above the stable 2 / lambda_max"):
        multitask_steps(sp.csc_array(laplacian), meta_lr=0.1, eta=10.0, step=0.5)
    A = multitask_combination(sp.csc_array(laplacian), np.full(3, 0.2)).toarray()
    np.testing.assert_allclose(A, np.eye(3) - 0.2 * laplacian)
    np.testing.assert_allclose(A.sum(axis=0), 1.0)  # the laplacian form keeps the models' mean
    with pytest.raises(ValueError, match=r"^graph-form: unknown 'dense'; allowed: laplacian, ggl"):
        graph_form(estimate, "dense")


def _replies(round_: int, n: int = 3, size: int = 4) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(round_)
    return {k: rng.normal(size=size) for k in range(n)}


def test_learned_graph_is_non_cooperative_in_warmup_and_with_a_zero_laplacian() -> None:
    support = closed_adjacency(nx.complete_graph(3))
    learned = LearnedGraph(np.zeros(4), support, warmup=2)
    alone = NonCooperative(3, np.zeros(4))
    for round_ in (1, 2):
        for strategy in (learned, alone):
            strategy.train_plan(round_)
            strategy.aggregate_train(round_, _replies(round_), {})
        np.testing.assert_array_equal(learned.current_models(), alone.current_models())
    assert learned.estimate is None and learned.round_metrics(2) == {}
    state = learned.state()
    learned.load_state({**state, "laplacian": np.zeros((3, 3)), "estimated-at": np.array(3)})
    for round_ in (3, 4):
        for strategy in (learned, alone):
            strategy.train_plan(round_)
            strategy.aggregate_train(round_, _replies(round_), {})
        np.testing.assert_array_equal(learned.current_models(), alone.current_models())


def test_learned_graph_estimates_after_warmup_and_combines_with_i_minus_c_l() -> None:
    support = closed_adjacency(PATH)
    strategy = LearnedGraph(np.zeros(40), support, warmup=1, reestimate_every=2, step=0.5)
    strategy.train_plan(1)
    strategy.aggregate_train(1, _replies(1, size=40), {})
    w1 = strategy.current_models().copy()
    strategy.train_plan(2)  # the estimate, from the models at the start of round 2
    np.testing.assert_allclose(strategy.estimate.toarray(),
                               estimate_laplacian(w1, support, centred=True, shrinkage=0.1).toarray())
    laplacian = graph_form(strategy.estimate, "laplacian", strategy.threshold).toarray()
    c = strategy.graph_steps
    diagonal = np.diag(laplacian)
    normalised = laplacian / np.sqrt(np.outer(diagonal, diagonal))
    np.testing.assert_allclose(c, 0.5 * 2 / np.linalg.eigvalsh(normalised)[-1] / diagonal)
    psi = _replies(2, size=40)
    strategy.aggregate_train(2, psi, {})
    expected = (np.eye(3) - c[:, None] * laplacian) @ np.stack([psi[k] for k in range(3)])
    np.testing.assert_allclose(strategy.current_models(), expected, rtol=1e-12)
    metrics = strategy.round_metrics(2)
    assert [w[:2] for w in metrics["graph-weights"]] == [[0, 1], [1, 2]]  # the path's edges only
    assert metrics["graph-step"] == list(c) and strategy.artifacts()["laplacian"].shape == (3, 3)
    assert [strategy.due(r) for r in (3, 4, 5, 6)] == [False, True, False, True]


# Two groups {0, 1} and {2, 3} on the path 0-1-2-3; an estimate whose partial correlations are
# 0.8 inside each group and 0.1 across (rho_kl = -L_kl / sqrt(L_kk L_ll), all L_kk = 2).
TWO_GROUPS = np.array([[2.0, -1.6, 0, 0], [-1.6, 2.0, -0.2, 0], [0, -0.2, 2.0, -1.6], [0, 0, -1.6, 2.0]])


def test_a_weak_cross_group_weight_merges_the_groups_and_the_threshold_removes_it() -> None:
    estimate = sp.csc_array(TWO_GROUPS)
    np.testing.assert_allclose(partial_correlations(estimate).toarray(),
                               [[0, 0.8, 0, 0], [0.8, 0, 0.1, 0], [0, 0.1, 0, 0.8], [0, 0, 0.8, 0]])
    # threshold 0.25: weights 1.6 inside the groups only; D^-1/2 L D^-1/2 has lambda_max 2, so s = 0.5,
    # c_k = 0.5 / 1.6, and A = I - L diag(c) averages each group in one step and never mixes them
    kept = graph_form(estimate, "laplacian", 0.25)
    np.testing.assert_allclose(kept.toarray(), [[1.6, -1.6, 0, 0], [-1.6, 1.6, 0, 0], [0, 0, 1.6, -1.6], [0, 0, -1.6, 1.6]])
    c = multitask_steps(kept, 0.03, 0.0, 0.5)
    np.testing.assert_allclose(c, [0.3125] * 4)
    halves = np.kron(np.eye(2), np.full((2, 2), 0.5))
    A = multitask_combination(kept, c).toarray()
    np.testing.assert_allclose(A, halves, atol=1e-15)
    np.testing.assert_allclose(np.linalg.matrix_power(A, 1000), halves, atol=1e-12)
    # threshold 0: the 0.1 relation stays (weight 0.2), and I - cL drives all four to one consensus
    every = graph_form(estimate, "laplacian", 0.0)
    assert every.toarray()[1, 2] == pytest.approx(-0.2)
    A = multitask_combination(every, multitask_steps(every, 0.03, 0.0, 0.5)).toarray()
    # (the Jacobi step's consensus weighs agent l by L_ll: (1.6, 1.8, 1.8, 1.6) / 6.8)
    consensus = np.outer(np.array([1.6, 1.8, 1.8, 1.6]) / 6.8, np.ones(4))
    np.testing.assert_allclose(np.linalg.matrix_power(A, 1000), consensus, atol=1e-6)


def test_the_jacobi_step_moves_every_agent_the_same_fraction_to_its_neighbours() -> None:
    # path 0-1-2 with weights 10 (0-1) and 1 (1-2): one c = 1 / lambda_max(L) would move agent 2 by
    # 1 / lambda_max (about 1/21) towards agent 1; c_k = s / L_kk with s = 0.5 (bipartite: lambda_max 2)
    # moves every agent half way to its neighbours' weighted mean
    laplacian = sp.csc_array([[10.0, -10.0, 0.0], [-10.0, 11.0, -1.0], [0.0, -1.0, 1.0]])
    c = multitask_steps(laplacian, 0.03, 0.0, 0.5)
    np.testing.assert_allclose(c, [0.05, 0.5 / 11, 0.5])
    A = multitask_combination(laplacian, c).toarray()
    np.testing.assert_allclose(A.T, [[0.5, 0.5, 0.0], [0.5 * 10 / 11, 0.5, 0.5 / 11], [0.0, 0.5, 0.5]], atol=1e-15)
    np.testing.assert_allclose(A.sum(axis=0), 1.0)  # w = A^T psi: each agent a weighted mean
    assert max(abs(np.linalg.eigvals(A))) == pytest.approx(1.0)  # stable: the consensus mode only
    assert multitask_steps(sp.csc_array((3, 3)), 0.03, 0.0, 0.5).tolist() == [0.0] * 3  # no relations: alone


def test_shrinkage_towards_the_projector_bounds_the_centred_precision() -> None:
    # centred Sigma = 3 u1 u1^T + 0.01 u2 u2^T, u1 = (1, 1, -2) / sqrt 6, u2 = (1, -1, 0) / sqrt 2 (agents 0
    # and 1 near copies); s = 0.1, target (tr Sigma / 2) P = 1.505 P: eigenvalues 0.9 * 3 + 0.1505 = 2.8505
    # and 0.9 * 0.01 + 0.1505 = 0.1595, so Gamma = u1 u1^T / 2.8505 + u2 u2^T / 0.1595
    u = np.array([[1, 1, -2], [1, -1, 0]]) / np.sqrt([[6], [2]])
    m = 50
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(m, 2)))
    models = np.sqrt(m) * u.T @ np.diag(np.sqrt([3.0, 0.01])) @ q.T  # X X^T / M = Sigma, rows' mean 0
    expected = np.outer(u[0], u[0]) / 2.8505 + np.outer(u[1], u[1]) / 0.1595
    for own in range(3):
        row = local_laplacian_row(models + 5.0, own, centred=True, shrinkage=0.1)
        np.testing.assert_allclose(row, expected[own], atol=1e-12)
        assert abs(row.sum()) < 1e-12
    unshrunk = local_laplacian_row(models, 0, centred=True)
    assert unshrunk[0] == pytest.approx(1 / 18 + 50) and row[0] < 3.2  # 1 / 0.01 / 2 + ... against 1 / 0.1595 / 2 + ...
    two = np.array([[1.0, 0.0], [-1.0, 0.0]])  # two agents: the centred Sigma is its own target
    np.testing.assert_allclose(local_laplacian_row(two, 0, centred=True, shrinkage=0.5), [0.5, -0.5])


def test_the_centred_estimate_ignores_a_common_shift_and_its_rows_sum_to_zero() -> None:
    # two agents, models (1, 0) and (-1, 0): centred Sigma = [[1/2, -1/2], [-1/2, 1/2]], pinv [[1/2, -1/2], ...]
    support = closed_adjacency(nx.path_graph(2))
    models = np.array([[1.0, 0.0], [-1.0, 0.0]])
    expected = [[0.5, -0.5], [-0.5, 0.5]]
    np.testing.assert_allclose(estimate_laplacian(models, support, centred=True).toarray(), expected)
    np.testing.assert_allclose(estimate_laplacian(models + [3.0, 7.0], support, centred=True).toarray(), expected)
    rng = np.random.default_rng(0)
    many = rng.standard_normal((3, 50)) + rng.standard_normal(50)
    row = local_laplacian_row(many, 1, centred=True)
    assert abs(row.sum()) < 1e-10 * np.abs(row).max()
    assert not np.allclose(estimate_laplacian(models + [3.0, 7.0], support).toarray(), expected)  # uncentred moves


def test_gmrf_models_have_the_precision_l() -> None:
    rng = np.random.default_rng(0)
    w = gmrf_models(L_PATH, rng.standard_normal((3, 200_000)))
    np.testing.assert_allclose(w @ w.T / 200_000, np.linalg.inv(L_PATH), atol=0.01)
    np.testing.assert_allclose(gmrf_laplacian(PATH, np.array([1.0, 5.0]), 0.5),
                               [[1.5, -1.0, 0.0], [-1.0, 6.5, -5.0], [0.0, -5.0, 5.5]])


def test_linear_regression_family_draws_its_true_models() -> None:
    config = RunConfig(task="linear-regression", heterogeneity="gmrf", topology="ring", dims=5, shots=3,
                       queries=400, noise_std=0.1, regressor_std=2.0, edge_weight_scale=10.0)
    family = LinearRegressionTasks.from_config(config, 6)
    L = family.laplacian
    off = -L[np.triu_indices(6, 1)]
    assert set(off[off != 0].tolist()) <= {10.0, 50.0} and np.count_nonzero(off) == 6  # ring edges
    np.testing.assert_allclose(L.sum(axis=1), 1.0)  # V = graph-v I = I
    batch = agent_tasks(family.sample, 2, 4)
    assert batch.x_support.shape == (2, 3, 5) and batch.y_query.shape == (2, 400, 1)
    residual = batch.y_query - batch.x_query @ torch.as_tensor(family.true_models[4])[:, None]
    assert residual.std().item() == pytest.approx(0.1, rel=0.1) and batch.x_query.std().item() == pytest.approx(2.0, rel=0.1)
    truth = family.truth_metrics(family.true_models + 1.0, L)
    assert truth["msd"] == pytest.approx(5.0) and truth["laplacian-error"] == 0.0
    assert truth["msd-db"] == pytest.approx(10 * np.log10(5.0))
    with pytest.raises(ConfigError, match=r"^heterogeneity: unknown 'phase'; allowed: auto, gmrf"):
        RunConfig(task="linear-regression", heterogeneity="phase")
    assert MetaLearner.from_config(RunConfig(task="linear-regression", topology="ring"), 6).family.num_agents == 6  # auto


def test_clusters_share_a_phase_slice() -> None:
    family = SinusoidTasks(num_agents=6, heterogeneity="clusters", clusters=3)
    assert family.groups == (0, 0, 1, 1, 2, 2)
    assert family.ranges(0) == family.ranges(1) != family.ranges(2)
    assert family.ranges(5)[1] == pytest.approx((2 * np.pi / 3, np.pi))
    with pytest.raises(ValueError, match=r"^clusters: 7 out of range; allowed: 1\.\.6"):
        SinusoidTasks(num_agents=6, heterogeneity="clusters", clusters=7)
    assert SinusoidTasks(num_agents=6, heterogeneity="phase").groups is None


def test_learned_graph_run_writes_its_graph_and_truth_and_resumes(tmp_path: Path) -> None:
    keys = dict(strategy="learned-graph", task="linear-regression", heterogeneity="gmrf", topology="complete",
                dims=20, inner_steps=0, tasks_per_agent=1, shots=1, queries=5, meta_lr=0.05, eval_every=10,
                eval_tasks=5, eval_inner_steps=1, graph_warmup=10, graph_reestimate_every=10, fail_prob=0.2,
                checkpoint_every=5, results_dir=str(tmp_path))
    whole = run_vectorized(RunConfig(num_rounds=30, run_name="whole", **keys), 6, **QUIET)
    assert {"msd", "msd-db", "laplacian-error"} <= whole["final"].keys()
    lines = read_metrics(tmp_path / "whole")
    estimates = [line["round"] for line in lines if "graph-weights" in line]
    assert estimates == [11, 21] and all(len(lines[r]["graph-weights"]) == 15 for r in estimates)
    assert np.load(tmp_path / "whole" / "laplacian.npy").shape == (6, 6)
    assert lines[30]["msd"] < lines[0]["msd"]
    run_vectorized(RunConfig(num_rounds=15, run_name="short", **keys), 6, **QUIET)
    resumed = run_vectorized(RunConfig(num_rounds=30, run_name="short", **keys).replace(
        resume_from=str(tmp_path / "short"), run_name=""), 6, **QUIET)
    assert resumed["final"] == whole["final"]


def test_learned_graph_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"^link-drop-prob: not supported by strategy 'learned-graph'"):
        RunConfig(strategy="learned-graph", link_drop_prob=0.1)
    with pytest.raises(ConfigError, match=r"^graph-form: unknown 'x'; allowed: laplacian, ggl"):
        RunConfig(graph_form="x")
    with pytest.raises(ConfigError, match=r"^seed: 4294967296 out of range"):
        RunConfig(seed=2**32)


def test_resilient_agents_report_the_share_of_kept_links_inside_their_group(tmp_path: Path) -> None:
    config = RunConfig(aggregation="resilient", resilient_score="fresh", heterogeneity="clusters", clusters=2,
                       topology="complete", num_rounds=6, eval_every=6, eval_tasks=2, tasks_per_agent=2,
                       results_dir=str(tmp_path), run_name="r")
    run_vectorized(config, 6, **QUIET)
    shares = [line["kept-same-group"] for line in read_metrics(tmp_path / "r")[1:]]
    assert len(shares) == 6 and all(s is None or 0.0 <= s <= 1.0 for s in shares)


def test_a_known_task_graph_replaces_the_estimate_and_is_checked(tmp_path: Path) -> None:
    from flower_difmaml.runner.experiment import set_up_run

    keys = dict(strategy="learned-graph", task="linear-regression", heterogeneity="gmrf", topology="ring", dims=8,
                inner_steps=0, tasks_per_agent=1, shots=1, queries=4, meta_lr=0.05, num_rounds=12, eval_every=12,
                eval_tasks=2, eval_inner_steps=1, graph_warmup=5, graph_reestimate_every=2, graph_form="ggl",
                results_dir=str(tmp_path))
    truth = LinearRegressionTasks.from_config(RunConfig(**keys), 5).laplacian
    np.save(tmp_path / "L.npy", truth)
    summary = run_vectorized(RunConfig(run_name="known", graph_laplacian=str(tmp_path / "L.npy"), **keys), 5, **QUIET)
    assert summary["final"]["laplacian-error"] == 0.0
    assert [line["round"] for line in read_metrics(tmp_path / "known") if "graph-weights" in line] == [6]
    np.save(tmp_path / "bad.npy", np.ones((5, 5)))
    with pytest.raises(ConfigError, match=r"^graph-laplacian: .*bad\.npy: entry \(0, 2\) = 1\.0 but \(0, 2\) is not an edge"):
        set_up_run(RunConfig(graph_laplacian=str(tmp_path / "bad.npy"), **keys), 5)
    with pytest.raises(ConfigError, match=r"^graph-laplacian: .*missing\.npy: cannot read"):
        set_up_run(RunConfig(graph_laplacian=str(tmp_path / "missing.npy"), **keys), 5)


def test_an_indefinite_task_graph_is_refused_naming_the_key() -> None:
    indefinite = sp.csc_array([[1.0, 2.0], [2.0, 1.0]])  # eigenvalues -1 and 3
    with pytest.raises(ConfigError, match=r"^graph-form: the task graph's L has lambda_min = -1 < 0"):
        multitask_steps(indefinite, meta_lr=0.1, eta=0.0, step=0.5)
