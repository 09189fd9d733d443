"""Benchmark: Flower's own strategies as comparisons (vectorised engine, the project's runs).

Part 1, the Byzantine study: the default experiment (10 agents, the default graph, phase
heterogeneity, 500 rounds), agents 2 and 7 Byzantine with the ``random`` attack, for
resilient Dif-MAML, non-coop, Dif-MAML with Metropolis weights, fedavg-maml, and Flower's
Krum, MultiKrum, FedMedian, FedTrimmedAvg (``flwr:<Class>``) over the same agents; Bulyan
with one attacker (agent 2), where its assumption n >= 4f + 3 holds. Each also without
attack, averaged over the same normal agents. Part 2, no attack: Flower's FedAdam and
FedYogi (each at its default server learning rate and one ten times smaller) against
fedavg-maml on the default experiment. Seeds 0-2.

Writes benchmarks/results/flower_strategies.json and benchmarks/results/flower_strategies.png
and prints the table of benchmarks/flower_strategies.md.

    python benchmarks/flower_strategies.py [--rounds 500] [--seeds 0,1,2] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from byzantine import cell

RESULTS = Path(__file__).parent / "results" / "flower_strategies.json"
PLOT = RESULTS.with_suffix(".png")
TWO = "2,7"  # the Byzantine agents of part 1
BYZANTINE = {  # name -> (run-config keys, Byzantine agents)
    "dif-maml resilient": (dict(aggregation="resilient"), TWO),
    "non-coop": (dict(strategy="non-coop"), TWO),
    "dif-maml metropolis": (dict(), TWO),
    "fedavg-maml": (dict(strategy="fedavg-maml"), TWO),
    "flwr:Krum f=2": (dict(strategy="flwr:Krum", strategy_args="num-malicious-nodes=2"), TWO),
    "flwr:MultiKrum f=2 m=6": (dict(strategy="flwr:MultiKrum", strategy_args="num-malicious-nodes=2, num-nodes-to-select=6"), TWO),
    "flwr:FedMedian": (dict(strategy="flwr:FedMedian"), TWO),
    "flwr:FedTrimmedAvg beta=0.2": (dict(strategy="flwr:FedTrimmedAvg", strategy_args="beta=0.2"), TWO),
    "flwr:Bulyan f=1 (one attacker)": (dict(strategy="flwr:Bulyan", strategy_args="num-malicious-nodes=1"), "2"),
}
ADAPTIVE = {  # name -> run-config keys (no attack)
    "fedavg-maml": dict(strategy="fedavg-maml"),
    "flwr:FedAdam eta=0.1 (default)": dict(strategy="flwr:FedAdam"),
    "flwr:FedAdam eta=0.01": dict(strategy="flwr:FedAdam", strategy_args="eta=0.01"),
    "flwr:FedYogi eta=0.01 (default)": dict(strategy="flwr:FedYogi"),
    "flwr:FedYogi eta=0.001": dict(strategy="flwr:FedYogi", strategy_args="eta=0.001"),
}
KEYS = ("own-mse-1", "full-mse-1")


def one_run(rounds: int, part: str, name: str, attacked: bool, seed: int, root: str) -> dict:
    """One run; its per-agent final MSEs and its full-mse-1 curve."""
    import torch

    torch.set_num_threads(1)
    from flower_difmaml.config import RunConfig
    from flower_difmaml.runner.results import read_metrics
    from flower_difmaml.runner.vectorized import run_vectorized

    keys, byzantine = BYZANTINE[name] if part == "byzantine" else (ADAPTIVE[name], "")
    if attacked:
        keys = {**keys, "byzantine": byzantine, "attack": "random"}
    folder = f"{part}-{name}-{attacked}-{seed}".replace(" ", "_").replace(":", "-")
    config = RunConfig(num_rounds=rounds, eval_every=50, eval_tasks=100, seed=seed, results_dir=root, run_name=folder, **keys)
    start = time.perf_counter()
    try:
        run_vectorized(config, 10, progress=lambda line: None)
        stopped = None
    except RuntimeError as error:  # every model diverged: the round loop stops the run
        stopped = str(error)
    lines = read_metrics(Path(root) / folder)
    return {
        "part": part, "name": name, "attacked": attacked, "seed": seed, "stopped": stopped,
        "byzantine": [int(k) for k in byzantine.split(",")] if byzantine else [],
        "agents": {key: [None] * 10 if stopped else lines[-1]["agents"][key] for key in KEYS},
        "curve": [[line["round"], line.get("full-mse-1")] for line in lines if "full-mse-1" in line],
        "wall_s": time.perf_counter() - start,
    }


def normal_mean(run: dict, key: str) -> float:
    """Mean of ``key`` over the agents that are normal in the attacked runs of this rule."""
    values = [v for k, v in enumerate(run["agents"][key]) if k not in run["byzantine"]]
    return float(np.mean([np.nan if v is None else v for v in values]))


def table(runs: list[dict], seeds: list[int]) -> str:
    out = [f"\nPart 1: the normal agents' error, agents {TWO} Byzantine (random models); mean ± std over seeds {seeds}\n",
           "| strategy | own-mse-1, attack | own-mse-1, none | full-mse-1, attack | full-mse-1, none |",
           "|---|---:|---:|---:|---:|"]
    for name in BYZANTINE:
        cells = []
        for key in KEYS:
            for attacked in (True, False):
                values = [normal_mean(r, key) for r in runs
                          if r["part"] == "byzantine" and r["name"] == name and r["attacked"] == attacked]
                cells.append(cell(values) if values else "")
        out.append(f"| {name} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} |")
    out += [f"\nPart 2: no attack, every agent; mean ± std over seeds {seeds}\n",
            "| strategy | own-mse-1 | full-mse-1 |", "|---|---:|---:|"]
    for name in ADAPTIVE:
        chosen = [r for r in runs if r["part"] == "adaptive" and r["name"] == name]
        out.append(f"| {name} | " + " | ".join(cell([normal_mean(r, key) for r in chosen]) for key in KEYS) + " |")
    return "\n".join(out)


def plot(runs: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    names = list(BYZANTINE)
    for offset, attacked, label in ((-0.2, True, "attack (random models)"), (0.2, False, "no attack")):
        values = [[normal_mean(r, "own-mse-1") for r in runs if r["part"] == "byzantine" and r["name"] == name
                   and r["attacked"] == attacked] for name in names]
        means = [np.mean(v) if np.all(np.isfinite(v)) else np.nan for v in values]
        left.bar(np.arange(len(names)) + offset, means, 0.4, yerr=[np.std(v) for v in values], label=label)
    left.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
    left.set(ylabel="own-mse-1 of the normal agents", yscale="log", title="Byzantine agents 2, 7 (Bulyan: 2)")
    left.legend()
    for name in ADAPTIVE:
        curves = np.array([[v if v is not None else np.nan for _, v in r["curve"]] for r in runs
                           if r["part"] == "adaptive" and r["name"] == name], dtype=float)
        rounds = [x for x, _ in next(r for r in runs if r["part"] == "adaptive" and r["name"] == name)["curve"]]
        right.plot(rounds, curves.mean(axis=0), marker="o", markersize=3, label=name)
    right.set(xlabel="round", ylabel="full-mse-1 (mean over seeds)", yscale="log", title="no attack: server-side adaptive")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    plan = [("byzantine", name, attacked, seed) for name in BYZANTINE for attacked in (True, False) for seed in seeds]
    plan += [("adaptive", name, False, seed) for name in ADAPTIVE for seed in seeds]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as root, ProcessPoolExecutor(args.workers) as pool:
        futures = [pool.submit(one_run, args.rounds, *item, root) for item in plan]
        runs = []
        for i, future in enumerate(futures, 1):
            runs.append(future.result())
            r = runs[-1]
            print(f"[{i}/{len(plan)}] {r['name']} attacked={r['attacked']} seed {r['seed']}: "
                  f"own-mse-1 {normal_mean(r, 'own-mse-1'):.4f} ({r['wall_s']:.0f} s)", flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"benchmark": __doc__.splitlines()[0], "rounds": args.rounds, "seeds": seeds,
                                   "wall_s": time.perf_counter() - start, "runs": runs}, indent=1) + "\n")
    plot(runs)
    print(table(runs, seeds))
    print(f"\n{len(plan)} runs in {time.perf_counter() - start:.0f} s; wrote {RESULTS} and {PLOT}")


if __name__ == "__main__":
    main()
