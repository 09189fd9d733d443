"""Benchmark: multitask learning over a learned task graph (Wan and Vlaski), five studies.

(a) ``laplacian``: the paper's Laplacian experiment. 10 agents, Erdős–Rényi p = 0.5 with
    topology-seed 1 (max degree 8, 28 edges), edge weights from {1, 5}, V = I, true models
    from the GMRF (``task='linear-regression'``, drawn per seed). Phase I is simulated here in
    numpy (the engine's cost at M = 800 is drawing 10 x 800 regressors a round): each agent
    runs LMS w <- w + mu u (d - u^T w), u ~ N(0, I / M) (so tr R = 1 and every mu below is
    stable for every M), d = u^T w° + v, v ~ N(0, 0.1), from w = 0; then the package's
    estimate (``estimate_laplacian``) from the models at iteration 10,000 (the paper's) and
    100,000 (LMS converges in about M / mu iterations here), and ``laplacian_error`` against
    the true L, for M in {50, ..., 800}, mu in {0.2, 0.1, 0.05, 0.01}.
(b) ``two-phase``: the same graph, through the vectorised engine: LMS (inner-steps 0, one
    sample a round, u ~ N(0, I_100), noise-std 3, meta-lr 0.0025, i.e. an LMS step of 0.005;
    M = 100 because at M = 10 every ggl estimate was indefinite) for 6000 rounds, the switch
    after 3000: non-coop, consensus (dif-maml, Metropolis), multitask with the true L
    (``graph-laplacian``, form ggl), learned-graph (forms laplacian and ggl), the multitask runs
    with graph-eta 0.1; edge weights x10 and x1. MSD vs round.
(c) ``clusters``: sinusoid, 10 agents in 2 clusters (phase halves), the default graph,
    500 rounds: learned-graph (laplacian and ggl; warm-up 100, re-estimated every 100),
    dif-maml, non-coop, resilient with fresh scores; own-mse-1 and full-mse-1.
(e) ``oracle``: clustered sinusoids on ER p = 0.4, 600 rounds, learned-graph with warm-up 200 (the
    other keys at their defaults), against non-coop, Dif-MAML and the same-group oracle (Dif-MAML
    with a matrix file: Metropolis weights on the graph's same-group edges only,
    ``same_group_oracle_file``), in three settings: 10 agents in 2 clusters (topology-seed 1, the
    default), 12 in 3 (topology-seed 3: the first seed whose graph and each group's subgraph are
    connected) and 20 in 2 (topology-seed 1); in the first also learned-graph with
    ``graph-threshold`` 0 (every positive learned weight kept, the earlier method but for centring).
(d) ``byzantine``: (c) with agents 2 and 7 Byzantine (random attack, scale 1): resilient-fresh
    (share of kept links inside the group, Byzantine links kept), non-coop, dif-maml.

Seeds 0-2; mean and std over seeds. Writes benchmarks/results/learned_graph-<study>.json and
prints the markdown tables of benchmarks/learned_graph.md.

    python benchmarks/learned_graph.py laplacian|two-phase|clusters|byzantine|oracle [--seeds 0,1,2] [--workers 2]
        [--graph-eta 0.1] [--table]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
AGENTS = 10
GRAPH = dict(topology="erdos-renyi", topology_p=0.5, topology_seed=1)  # max degree 8
DIMS = (50, 100, 200, 400, 800)
MUS = (0.2, 0.1, 0.05, 0.01)
SNAPSHOTS = (10_000, 100_000)
NOISE_STD = 0.1**0.5  # v ~ N(0, 0.1): the steady-state iterates' noise (mu 0.1 / 2 a coordinate) shows in the estimate
CHUNK = 200  # LMS iterations drawn at once
LMS = dict(task="linear-regression", heterogeneity="gmrf", inner_steps=0, tasks_per_agent=1, shots=1, queries=1,
           eval_tasks=1, eval_inner_steps=1, checkpoint_every=0)
TWO_PHASE = dict(num_rounds=6000, graph_warmup=3000, meta_lr=0.0025, dims=100, noise_std=3.0, eval_every=250)
GRAPH_ETA = 0.1  # (b): eta of every multitask run, chosen on seed 0 among 0.01, 0.03, 0.1 (see learned_graph.md)
SINUSOID = dict(heterogeneity="clusters", clusters=2, num_rounds=500, eval_tasks=100, checkpoint_every=0)
LEARNED = dict(strategy="learned-graph", graph_warmup=100, graph_reestimate_every=100)
ORACLE = dict(heterogeneity="clusters", topology="erdos-renyi", topology_p=0.4, num_rounds=600, eval_tasks=100, checkpoint_every=0)
ORACLE_SETTINGS = ((10, 2, 1), (12, 3, 3), (20, 2, 1))  # agents, clusters, topology-seed


def laplacian_errors(seed: int, dims: int) -> dict:
    """Phase-I LMS of every mu at once; the estimate's error at each snapshot."""
    from flower_difmaml.config import RunConfig
    from flower_difmaml.network.combination import closed_adjacency
    from flower_difmaml.network.graphs import graph_of
    from flower_difmaml.network.laplacian import estimate_laplacian, laplacian_error
    from flower_difmaml.tasks.linear_regression import LinearRegressionTasks

    config = RunConfig(seed=seed, dims=dims, **GRAPH, **LMS)
    family = LinearRegressionTasks.from_config(config, AGENTS)
    support = closed_adjacency(graph_of(config, AGENTS))
    rng = np.random.default_rng([seed, dims])
    mu = np.array(MUS)[:, None, None]
    w = np.zeros((len(MUS), AGENTS, dims))
    out = {}
    for t in range(1, max(SNAPSHOTS) + 1):
        if t % CHUNK == 1:  # draws for the next CHUNK iterations at once
            regressors = rng.standard_normal((CHUNK, len(MUS), AGENTS, dims)) / np.sqrt(dims)
            noise = NOISE_STD * rng.standard_normal((CHUNK, len(MUS), AGENTS))
        u = regressors[(t - 1) % CHUNK]
        error = np.einsum("ikm,ikm->ik", u, family.true_models - w) + noise[(t - 1) % CHUNK]  # d - u^T w
        w += mu * u * error[..., None]
        if t in SNAPSHOTS:
            for i, m in enumerate(MUS):
                estimate = estimate_laplacian(w[i], support)
                out[f"{t}:{m}"] = {"laplacian_error": laplacian_error(estimate, family.laplacian),
                                   "msd": float(np.mean(np.sum((w[i] - family.true_models) ** 2, axis=1)))}
    return {"seed": seed, "dims": dims, "errors": out}


def engine_run(name: str, seed: int, keys: dict, root: str) -> dict:
    import torch

    torch.set_num_threads(1)
    from flower_difmaml.config import ConfigError, RunConfig
    from flower_difmaml.runner.results import read_metrics
    from flower_difmaml.runner.vectorized import run_vectorized

    keys = dict(keys)
    agents = keys.pop("agents", AGENTS)
    run_name = f"{name}-seed{seed}"
    start = time.perf_counter()
    try:
        final = run_vectorized(RunConfig(seed=seed, results_dir=root, run_name=run_name, **keys), agents,
                               progress=lambda line: None)["final"]
        stopped = None
    except (RuntimeError, ConfigError) as error:  # diverged to NaN/Inf, or an indefinite ggl refused
        final, stopped = {}, str(error)
    lines = read_metrics(Path(root) / run_name)
    curve = {line["round"]: line["msd"] for line in lines if "msd" in line}
    combine = [line for line in lines if "kept-same-group" in line]
    return {
        "name": name, "seed": seed, "wall_s": time.perf_counter() - start, "final": final, "stopped": stopped,
        "msd_curve": curve or None,
        "kept_same_group": float(np.mean([l["kept-same-group"] for l in combine[-100:] if l["kept-same-group"] is not None]))
        if combine else None,
        "byzantine_kept": float(np.mean([l["byzantine-kept"] for l in combine[-100:]])) if combine else None,
        "graph_edges": [line["graph-edges"] for line in lines if "graph-edges" in line],
        "last_graph_weights": next((line["graph-weights"] for line in reversed(lines) if "graph-weights" in line), None),
    }


def true_laplacian_file(seed: int, scale: float, root: str) -> str:
    from flower_difmaml.config import RunConfig
    from flower_difmaml.tasks.linear_regression import LinearRegressionTasks

    config = RunConfig(seed=seed, edge_weight_scale=scale, **GRAPH, **LMS, **TWO_PHASE)
    path = Path(root) / f"true-L-seed{seed}-x{scale:g}.npy"
    np.save(path, LinearRegressionTasks.from_config(config, AGENTS).laplacian)
    return str(path)


def same_group_oracle_file(keys: dict, agents: int, root: str) -> str:
    """A .npy combination matrix: Metropolis weights on the graph's edges between agents of one
    group (groups floor(kC/N)), the other edges at weight 0: Dif-MAML inside each group only."""
    import networkx as nx

    from flower_difmaml.config import RunConfig
    from flower_difmaml.network.combination import metropolis_weights
    from flower_difmaml.network.graphs import graph_of
    from flower_difmaml.tasks.base import cluster_groups

    config = RunConfig(**keys)
    graph = graph_of(config, agents)
    group = cluster_groups("clusters", agents, config.clusters)
    same_group = nx.Graph()
    same_group.add_nodes_from(graph.nodes)
    same_group.add_edges_from((l, k) for l, k in graph.edges if l != k and group[l] == group[k])
    path = Path(root) / f"oracle-{agents}-{config.clusters}-{config.topology_seed}.npy"
    np.save(path, metropolis_weights(same_group).toarray())
    return str(path)


def study_runs(study: str, seeds: list[int], root: str) -> list[tuple[str, int, dict]]:
    runs = []
    for seed in seeds:
        if study == "two-phase":
            for scale in (10.0, 1.0):
                common = dict(**GRAPH, **LMS, **TWO_PHASE, edge_weight_scale=scale)
                tag = f"x{scale:g}"
                runs += [
                    (f"non-coop-{tag}", seed, dict(strategy="non-coop", **common)),
                    (f"consensus-{tag}", seed, dict(strategy="dif-maml", combination="metropolis", **common)),
                    (f"true-L-{tag}", seed, dict(strategy="learned-graph", graph_form="ggl", graph_eta=GRAPH_ETA,
                                                 graph_laplacian=true_laplacian_file(seed, scale, root), **common)),
                    (f"learned-laplacian-{tag}", seed, dict(strategy="learned-graph", graph_eta=GRAPH_ETA, **common)),
                    (f"learned-ggl-{tag}", seed, dict(strategy="learned-graph", graph_form="ggl", graph_eta=GRAPH_ETA,
                                                      **common)),
                ]
        elif study == "clusters":
            runs += [
                ("learned-laplacian", seed, dict(**LEARNED, **SINUSOID)),
                ("learned-ggl", seed, dict(**LEARNED, graph_form="ggl", **SINUSOID)),
                ("dif-maml", seed, dict(**SINUSOID)),
                ("non-coop", seed, dict(strategy="non-coop", **SINUSOID)),
                ("resilient-fresh", seed, dict(aggregation="resilient", resilient_score="fresh", **SINUSOID)),
            ]
        elif study == "oracle":
            for agents, clusters, topology_seed in ORACLE_SETTINGS:
                common = dict(ORACLE, agents=agents, clusters=clusters, topology_seed=topology_seed)
                tag = f"{agents}x{clusters}"
                oracle = same_group_oracle_file({k: v for k, v in common.items() if k != "agents"}, agents, root)
                runs += [
                    (f"learned-graph-{tag}", seed, dict(strategy="learned-graph", graph_warmup=200, **common)),
                    (f"non-coop-{tag}", seed, dict(strategy="non-coop", **common)),
                    (f"dif-maml-{tag}", seed, dict(**common)),
                    (f"oracle-{tag}", seed, dict(combination=oracle, **common)),
                ]
                if agents == 10:
                    runs.append((f"learned-threshold0-{tag}", seed,
                                 dict(strategy="learned-graph", graph_warmup=200, graph_threshold=0.0, **common)))
        else:  # byzantine
            attack = dict(byzantine="2,7", attack="random", **SINUSOID)
            runs += [
                ("resilient-fresh", seed, dict(aggregation="resilient", resilient_score="fresh", **attack)),
                ("non-coop", seed, dict(strategy="non-coop", **attack)),
                ("dif-maml", seed, dict(**attack)),
            ]
    return runs


def same_over_cross_group_weight(result: dict) -> float | None:
    """Mean learned positive weight of pairs inside a cluster over that of pairs across
    (the last estimate of a clusters run; groups floor(2k / N))."""
    weights = result["last_graph_weights"]
    if not weights:
        return None
    from flower_difmaml.tasks.base import cluster_groups

    group = cluster_groups("clusters", AGENTS, SINUSOID["clusters"])
    same = [max(0.0, w) for l, k, w in weights if group[l] == group[k]]
    cross = [max(0.0, w) for l, k, w in weights if group[l] != group[k]]
    return float(np.mean(same) / np.mean(cross)) if same and cross and np.mean(cross) > 0 else None


def mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.4g} ± {np.std(values):.2g}"


def main() -> None:
    global GRAPH_ETA
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", choices=("laplacian", "two-phase", "clusters", "byzantine", "oracle"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--table", action="store_true", help="print the tables of the results file only")
    parser.add_argument("--graph-eta", type=float, default=GRAPH_ETA, help="(b): eta of the multitask runs")
    args = parser.parse_args()
    GRAPH_ETA = args.graph_eta
    suffix = "" if args.graph_eta == 0.1 else f"-eta{args.graph_eta:g}"
    path = RESULTS / f"learned_graph-{args.study}{suffix}.json"
    if args.table:
        print(table(args.study, json.loads(path.read_text())["results"]))
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as root, ProcessPoolExecutor(args.workers) as pool:
        if args.study == "laplacian":
            jobs = [pool.submit(laplacian_errors, seed, dims) for seed in seeds for dims in DIMS]
        else:
            jobs = [pool.submit(engine_run, name, seed, keys, root) for name, seed, keys in study_runs(args.study, seeds, root)]
        results = [job.result() for job in jobs]
    path.write_text(json.dumps({"benchmark": __doc__.splitlines()[0], "study": args.study, "seeds": seeds,
                                "wall_s": time.perf_counter() - start, "results": results}, indent=1) + "\n")
    print(f"wrote {path}")
    print(table(args.study, results))


def table(study: str, results: list[dict]) -> str:
    if study == "laplacian":
        lines = ["| M | " + " | ".join(f"μ = {m} ({t // 1000}k it.)" for t in SNAPSHOTS for m in MUS) + " |",
                 "|---|" + "---|" * (len(MUS) * len(SNAPSHOTS))]
        for dims in DIMS:
            cells = [mean_std([r["errors"][f"{t}:{m}"]["laplacian_error"] for r in results if r["dims"] == dims])
                     for t in SNAPSHOTS for m in MUS]
            lines.append(f"| {dims} | " + " | ".join(cells) + " |")
        return "\n".join(lines)
    if study == "two-phase":  # MSD in dB just before the switch and at the end, from each run's curve
        for r in results:
            curve = {int(k): v for k, v in (r["msd_curve"] or {}).items()}
            for at in (TWO_PHASE["graph_warmup"], TWO_PHASE["num_rounds"]):
                r[f"msd_db_at_{at}"] = 10 * np.log10(curve[at]) if at in curve else None
    names = list(dict.fromkeys(r["name"] for r in results))
    keys = {"two-phase": ("msd-db", "laplacian-error"), "clusters": ("own-mse-1", "full-mse-1"),
            "byzantine": ("own-mse-1", "full-mse-1"), "oracle": ("own-mse-1", "full-mse-1")}[study]
    for r in results:  # seed by seed, for the oracle study
        r["own-mse-1 by seed"] = f"{r['final']['own-mse-1']:.3f}" if "own-mse-1" in r["final"] else "–"
    extra = {"two-phase": (f"msd_db_at_{TWO_PHASE['graph_warmup']}",), "clusters": ("kept_same_group", "same_over_cross_group_weight"),
             "byzantine": ("kept_same_group", "byzantine_kept"), "oracle": ("own-mse-1 by seed",)}[study]
    for r in results:
        r["same_over_cross_group_weight"] = same_over_cross_group_weight(r) if study == "clusters" else None
    lines = ["| run | " + " | ".join(keys + extra) + " |", "|---|" + "---|" * (len(keys) + len(extra))]
    for name in names:
        rows = [r for r in results if r["name"] == name]
        stopped = sum(r.get("stopped") is not None for r in rows)
        cells = [mean_std([r["final"][k] for r in rows]) if all(k in r["final"] for r in rows)
                 else f"stopped in {stopped} of {len(rows)}" if stopped else "–" for k in keys]
        cells += [" / ".join(r[k] for r in rows) if k.endswith("by seed")
                  else mean_std([r[k] for r in rows]) if all(r[k] is not None for r in rows) else "–" for k in extra]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
