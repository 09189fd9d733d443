"""Benchmark: why the learned task graph fell short of the same-group oracle, and what each part
of the fix does (benchmarks/learned_graph.md (f)).

The setting of study (e) of learned_graph.py: clustered sinusoids, ER p = 0.4, 600 rounds,
learned-graph with warm-up 200, in its three settings (10 agents in 2 groups, 12 in 3, 20 in 2),
seeds 0-2. Two parts:

``separation``: the models the estimate reads (non-coop for 200 rounds: the warm-up is the
non-cooperative rule, so they are learned-graph's models at the start of round 201), and for
each shrinkage s of the centred Sigma_k (key graph-shrinkage) the partial correlations of the
estimate: the largest threshold that still keeps every group's same-group edges connected
(``connected_up_to``) against the largest partial correlation across groups (``cross_max``).
A threshold separates the groups where cross_max < connected_up_to.

``runs``: learned-graph through the vectorised engine with one part of the fix taken out:
``no-shrinkage`` (graph-shrinkage 0), ``uniform-step`` (one step c = graph-step * 2 /
lambda_max(L) for all agents, the step before the fix, patched into the strategy),
``before`` (both: the method before this fix), and the learned weights of the same-group edges
only (a known L from the warm-up models' unshrunk estimate: the edges an oracle would keep)
with either step, ``same-group-weights-uniform`` and ``same-group-weights-jacobi``.

    python benchmarks/learned_graph_ablation.py separation|runs [--workers 2] [--table]

Writes benchmarks/results/learned_graph-ablation-<part>.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import learned_graph  # noqa: E402  (the studies' settings and engine_run)

RESULTS = learned_graph.RESULTS
SEEDS = (0, 1, 2)
SHRINKAGES = (0.0, 0.01, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5)
VARIANTS = ("no-shrinkage", "uniform-step", "before", "same-group-weights-uniform", "same-group-weights-jacobi")
WARMUP = 200


def _setting_keys(agents: int, clusters: int, topology_seed: int) -> dict:
    return dict(learned_graph.ORACLE, agents=agents, clusters=clusters, topology_seed=topology_seed)


def _graph_and_groups(agents: int, clusters: int, topology_seed: int, seed: int):
    from flower_difmaml.config import RunConfig
    from flower_difmaml.network.combination import closed_adjacency
    from flower_difmaml.network.graphs import graph_of
    from flower_difmaml.tasks.base import cluster_groups

    keys = {k: v for k, v in _setting_keys(agents, clusters, topology_seed).items() if k != "agents"}
    config = RunConfig(seed=seed, **keys)
    graph = graph_of(config, agents)
    return graph, closed_adjacency(graph), np.array(cluster_groups("clusters", agents, clusters))


def warm_models(agents: int, clusters: int, topology_seed: int, seed: int, root: str) -> np.ndarray:
    """The agents' models after the 200 rounds alone that precede learned-graph's estimate."""
    path = Path(root) / f"warm-{agents}x{clusters}-seed{seed}" / "models.npy"
    if not path.exists():
        keys = dict(_setting_keys(agents, clusters, topology_seed), strategy="non-coop", num_rounds=WARMUP)
        learned_graph.engine_run(f"warm-{agents}x{clusters}", seed, keys, root)
    return np.load(path)


def connected_up_to(rho: np.ndarray, edges: list, group: np.ndarray) -> float:
    """The largest threshold tau for which the same-group edges with rho >= tau connect every group."""
    import networkx as nx

    same = [(l, k) for l, k in edges if group[l] == group[k]]
    for tau in sorted({rho[l, k] for l, k in same}, reverse=True):
        kept = nx.Graph()
        kept.add_nodes_from(range(len(group)))
        kept.add_edges_from((l, k) for l, k in same if rho[l, k] >= tau)
        if all(nx.is_connected(kept.subgraph(np.flatnonzero(group == g).tolist())) for g in set(group.tolist())):
            return float(tau)
    return float("nan")


def warm_job(job: tuple) -> None:
    import torch

    torch.set_num_threads(1)
    (agents, clusters, topology_seed), seed, root = job
    warm_models(agents, clusters, topology_seed, seed, root)


def separation_job(job: tuple) -> list[dict]:
    import torch

    torch.set_num_threads(1)
    from flower_difmaml.network.laplacian import estimate_laplacian, partial_correlations

    (agents, clusters, topology_seed), seed, root = job
    models = warm_models(agents, clusters, topology_seed, seed, root)
    graph, support, group = _graph_and_groups(agents, clusters, topology_seed, seed)
    edges = [(l, k) for l, k in graph.edges if l != k]
    rows = []
    for shrinkage in SHRINKAGES:
        rho = partial_correlations(estimate_laplacian(models, support, centred=True, shrinkage=shrinkage)).toarray()
        rows.append({
            "setting": f"{agents}x{clusters}", "seed": seed, "shrinkage": shrinkage,
            "connected_up_to": connected_up_to(rho, edges, group),
            "cross_max": float(max(rho[l, k] for l, k in edges if group[l] != group[k])),
        })
    return rows


def _uniform_step() -> None:
    """The step before the fix: c = step * 2 / lambda_max(L) for every agent (graph-eta = 0)."""
    from flower_difmaml.network import laplacian
    from flower_difmaml.strategies import learned_graph as strategy

    jacobi = laplacian.multitask_steps

    def uniform(matrix, meta_lr, eta, step):
        if eta > 0:
            return jacobi(matrix, meta_lr, eta, step)
        lam = laplacian.extreme_eigenvalues(matrix)[1]
        return np.full(matrix.shape[0], step * 2.0 / lam if lam > 0 else 0.0)

    strategy.multitask_steps = uniform


def same_group_weights_file(agents: int, clusters: int, topology_seed: int, seed: int, root: str) -> str:
    """A known L: the Laplacian of the positive learned weights (the warm-up models' centred,
    unshrunk estimate) on the graph's same-group edges only."""
    from flower_difmaml.network.laplacian import estimate_laplacian

    models = warm_models(agents, clusters, topology_seed, seed, root)
    _, support, group = _graph_and_groups(agents, clusters, topology_seed, seed)
    weights = -estimate_laplacian(models, support, centred=True).toarray()
    np.fill_diagonal(weights, 0.0)
    weights = np.where((group[:, None] == group[None, :]) & (weights > 0), weights, 0.0)
    path = Path(root) / f"same-group-weights-{agents}x{clusters}-seed{seed}.npy"
    np.save(path, np.diag(weights.sum(axis=1)) - weights)
    return str(path)


def run_job(job: tuple) -> dict:
    (agents, clusters, topology_seed), seed, variant, root = job
    keys = dict(_setting_keys(agents, clusters, topology_seed), strategy="learned-graph", graph_warmup=WARMUP)
    if variant in ("uniform-step", "before", "same-group-weights-uniform"):
        _uniform_step()  # a fresh worker for every job (max_tasks_per_child=1): the patch stays in it
    if variant in ("no-shrinkage", "before"):
        keys["graph_shrinkage"] = 0.0
    if variant.startswith("same-group-weights"):
        keys["graph_laplacian"] = same_group_weights_file(agents, clusters, topology_seed, seed, root)
    result = learned_graph.engine_run(f"{variant}-{agents}x{clusters}", seed, keys, root)
    return {"setting": f"{agents}x{clusters}", "seed": seed, "variant": variant,
            "own-mse-1": result["final"].get("own-mse-1"), "stopped": result["stopped"], "wall_s": result["wall_s"]}


def table(part: str, results: list[dict]) -> str:
    settings = [f"{a}x{c}" for a, c, _ in learned_graph.ORACLE_SETTINGS]
    if part == "separation":
        lines = ["| shrinkage | " + " | ".join(f"{s}: connected up to (cross max), seeds 0 / 1 / 2" for s in settings) + " |",
                 "|---|" + "---|" * len(settings)]
        for shrinkage in SHRINKAGES:
            cells = []
            for setting in settings:
                rows = sorted((r for r in results if r["setting"] == setting and r["shrinkage"] == shrinkage),
                              key=lambda r: r["seed"])
                cells.append(" / ".join(f"{r['connected_up_to']:.2f} ({r['cross_max']:.2f})" for r in rows))
            lines.append(f"| {shrinkage:g} | " + " | ".join(cells) + " |")
        return "\n".join(lines)
    lines = ["| variant | " + " | ".join(f"{s} own-mse-1 (seeds 0 / 1 / 2: mean)" for s in settings) + " |",
             "|---|" + "---|" * len(settings)]
    for variant in VARIANTS:
        cells = []
        for setting in settings:
            values = [r["own-mse-1"] for r in sorted(results, key=lambda r: r["seed"])
                      if r["setting"] == setting and r["variant"] == variant]
            cells.append(" / ".join(f"{v:.3f}" for v in values) + f": **{np.mean(values):.3f}**")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("separation", "runs"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--table", action="store_true", help="reprint the table from the results file")
    args = parser.parse_args()
    out = RESULTS / f"learned_graph-ablation-{args.part}.json"
    if args.table:
        print(table(args.part, json.loads(out.read_text())["results"]))
        return
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        with ProcessPoolExecutor(args.workers, max_tasks_per_child=1) as pool:  # the warm-up models, once each
            list(pool.map(warm_job, [(setting, seed, root) for setting in learned_graph.ORACLE_SETTINGS for seed in SEEDS]))
        if args.part == "separation":
            jobs = [(setting, seed, root) for setting in learned_graph.ORACLE_SETTINGS for seed in SEEDS]
            with ProcessPoolExecutor(args.workers, max_tasks_per_child=1) as pool:
                results = [row for rows in pool.map(separation_job, jobs) for row in rows]
        else:
            jobs = [(setting, seed, variant, root) for variant in VARIANTS
                    for setting in learned_graph.ORACLE_SETTINGS for seed in SEEDS]
            with ProcessPoolExecutor(args.workers, max_tasks_per_child=1) as pool:
                results = list(pool.map(run_job, jobs))
    out.write_text(json.dumps({"benchmark": "learned_graph_ablation", "part": args.part, "seeds": list(SEEDS),
                               "wall_s": time.perf_counter() - start, "results": results}, indent=1))
    print(table(args.part, results))


if __name__ == "__main__":
    main()
