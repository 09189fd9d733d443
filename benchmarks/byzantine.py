"""Benchmark: Dif-MAML's combination rules under Byzantine attacks (vectorised engine).

The default experiment (10 agents, the default graph, 500 rounds), with 2 Byzantine
agents (``byzantine-fraction`` 0.2, drawn per seed) and each attack, for the rules
metropolis, resilient, resilient with ``resilient-score = "fresh"``, median and
trimmed-mean (trim 1), and non-coop; and each rule without attack. Seeds 0-2. Every number is over the normal agents of the attacked runs: a run
without attack is averaged over the same 8 agents (per-agent values of its last
evaluation), so rows compare the same agents. Non-coop runs only without attack: its
normal agents never see another agent's model, so an attack cannot change them.

Writes benchmarks/results/byzantine.json (byzantine-<heterogeneity>.json for another
``--heterogeneity``) and prints the markdown tables of byzantine.md.

    python benchmarks/byzantine.py [--rounds 500] [--seeds 0,1,2] [--workers 2]
        [--rules metropolis,resilient,...] [--attacks none,random,...] [--heterogeneity phase]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "byzantine.json"
RULES = ("metropolis", "resilient", "resilient-fresh", "median", "trimmed-mean")
ATTACKS = ("none", "gaussian", "sign-flip", "random", "fixed")
FRACTION = 0.2


def one_run(rounds: int, rule: str, attack: str, seed: int, heterogeneity: str, root: str) -> dict:
    """Run one config; return its per-agent final MSEs and the resilient rule's link counts."""
    import torch

    torch.set_num_threads(1)
    from flower_difmaml.network.attacks import byzantine_agents
    from flower_difmaml.config import RunConfig
    from flower_difmaml.runner.results import read_metrics
    from flower_difmaml.runner.vectorized import run_vectorized

    keys = {
        "non-coop": dict(strategy="non-coop"), "resilient-fresh": dict(aggregation="resilient", resilient_score="fresh")
    }.get(rule, dict(combination=rule) if rule == "metropolis" else dict(aggregation=rule))
    if attack != "none":
        keys.update(byzantine_fraction=FRACTION, attack=attack)
    name = f"{rule}-{attack}-seed{seed}"
    config = RunConfig(
        num_rounds=rounds, eval_every=100, eval_tasks=100, seed=seed, heterogeneity=heterogeneity, results_dir=root, run_name=name, **keys
    )
    start = time.perf_counter()
    try:
        run_vectorized(config, 10, progress=lambda line: None)
        stopped = None
    except RuntimeError as error:  # every model diverged to NaN/Inf: the round loop stops the run
        stopped = str(error)
    lines = read_metrics(Path(root) / name)
    last = lines[-1]
    tail = [line for line in lines[1:] if line["round"] > rounds - 100]
    return {
        "rule": rule,
        "attack": attack,
        "seed": seed,
        "byzantine": sorted(byzantine_agents((), FRACTION, seed, 10)),
        "stopped": stopped,
        "agents": {key: [None] * 10 if stopped else last["agents"][key] for key in ("full-mse-1", "own-mse-1")},
        "kept": float(np.mean([line["kept"] for line in tail])) if tail and "kept" in last else None,
        "byzantine-kept": float(np.mean([line["byzantine-kept"] for line in tail])) if tail and "kept" in last else None,
        "wall_s": time.perf_counter() - start,
    }


def normal_mean(run: dict, key: str) -> float:
    """Mean of ``key`` over the agents that are normal in the attacked runs of this seed (NaN: diverged)."""
    values = [v for k, v in enumerate(run["agents"][key]) if k not in run["byzantine"]]
    return float(np.mean([np.nan if v is None else v for v in values]))


def cell(values: list[float]) -> str:
    if not np.all(np.isfinite(values)):
        return f"diverged ({int(np.sum(~np.isfinite(values)))}/{len(values)} seeds)"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def tables(runs: list[dict], seeds: list[int]) -> str:
    rows = [rule for rule in (*RULES, "non-coop") if any(r["rule"] == rule for r in runs)]
    attacks = [attack for attack in ATTACKS if any(r["attack"] == attack for r in runs)]
    out = []
    for key in ("full-mse-1", "own-mse-1"):
        out += [f"\n{key} of the normal agents (mean ± std over seeds {seeds})\n",
                "| rule | " + " | ".join(attacks) + " |", "|---|" + "---:|" * len(attacks)]
        for rule in rows:
            cells = []
            for attack in attacks:
                values = [normal_mean(r, key) for r in runs if r["rule"] == rule and r["attack"] == attack]
                cells.append(cell(values) if values else "(as none)")
            out.append(f"| {rule} | " + " | ".join(cells) + " |")
    out += [("\nresilient: models kept per normal agent (its own included) and (normal, Byzantine) links kept, "
             "mean over the last 100 rounds and seeds\n"), "| rule | attack | kept | Byzantine links kept |",
            "|---|---|---:|---:|"]
    for rule in ("resilient", "resilient-fresh"):
        for attack in attacks:
            chosen = [r for r in runs if r["rule"] == rule and r["attack"] == attack]
            if chosen:
                out.append(f"| {rule} | {attack} | {np.mean([r['kept'] for r in chosen]):.2f} | "
                           f"{np.mean([r['byzantine-kept'] for r in chosen]):.2f} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rules", default=",".join((*RULES, "non-coop")))
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--heterogeneity", default="phase")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rules, attacks = args.rules.split(","), args.attacks.split(",")
    plan = [(rule, attack, seed) for rule in rules if rule != "non-coop" for attack in attacks for seed in seeds]
    plan += [("non-coop", "none", seed) for seed in seeds if "non-coop" in rules]
    results = RESULTS if args.heterogeneity == "phase" else RESULTS.with_name(f"byzantine-{args.heterogeneity}.json")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as root, ProcessPoolExecutor(args.workers) as pool:
        futures = [
            pool.submit(one_run, args.rounds, rule, attack, seed, args.heterogeneity, root) for rule, attack, seed in plan
        ]
        runs = []
        for i, future in enumerate(futures, 1):
            runs.append(future.result())
            r = runs[-1]
            print(f"[{i}/{len(plan)}] {r['rule']} {r['attack']} seed {r['seed']}: "
                  f"full-mse-1 {normal_mean(r, 'full-mse-1'):.4f} ({r['wall_s']:.0f} s)", flush=True)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({"benchmark": __doc__.splitlines()[0], "rounds": args.rounds, "seeds": seeds,
                                   "heterogeneity": args.heterogeneity, "wall_s": time.perf_counter() - start,
                                   "runs": runs}, indent=2) + "\n")
    print(tables(runs, seeds))
    print(f"\n{len(plan)} runs in {time.perf_counter() - start:.0f} s; wrote {results}")


if __name__ == "__main__":
    main()
