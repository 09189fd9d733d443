"""Reproduction of the Dif-MAML sinusoid experiment with the comparison runner.

(a) the default experiment (10 agents, Erdos-Renyi, Metropolis, phase heterogeneity) at
    5000 rounds, seeds 0-2, dif-maml / fedavg-maml / non-coop;
(b) the authors' own setting: the 6-agent `difmaml-paper` graph, `uniform` weights,
    amplitude heterogeneity, 1 task per agent per round, Adam meta-lr 0.001, inner lr 0.01,
    1 inner step, 20,000 rounds (their 4000 tasks x 5 epochs), seeds 0-2.

Both in the vectorised engine (the same numbers as Flower's, see tests); the tables and plots
go to benchmarks/results/reproduce_difmaml/{a,b}/ (the per-run folders are not committed).

    python benchmarks/reproduce_difmaml.py [--only a|b]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from flower_difmaml.cli import run_in_process
from flower_difmaml.config import RunConfig
from flower_difmaml.runner.compare import compare

OUT = Path(__file__).parent / "results" / "reproduce_difmaml"
STRATEGIES = ["dif-maml", "fedavg-maml", "non-coop"]
SEEDS = [0, 1, 2]
SETTINGS = {
    "a": (RunConfig(num_rounds=5000, eval_every=250, eval_tasks=100), 10),
    "b": (
        RunConfig(
            topology="difmaml-paper", combination="uniform", heterogeneity="amplitude", tasks_per_agent=1,
            meta_optimizer="adam", meta_lr=0.001, inner_lr=0.01, inner_steps=1, num_rounds=20000, eval_every=1000, eval_tasks=100,
        ),
        6,
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(SETTINGS))
    args = parser.parse_args()
    for name, (config, num_agents) in SETTINGS.items():
        if args.only and name != args.only:
            continue
        start = time.perf_counter()
        failed = compare(config, STRATEGIES, SEEDS, OUT / name, num_agents=num_agents, run=run_in_process)
        wall = time.perf_counter() - start
        (OUT / name / "wall_time.json").write_text(json.dumps({"seconds": wall, "failed": failed}) + "\n")
        print(f"({name}) {len(STRATEGIES) * len(SEEDS)} runs in {wall:.0f} s")


if __name__ == "__main__":
    main()
