"""Issue 26's digits study through the project: Dif-MAML vs non-coop with the authors' Conv-4.

The setting: scikit-learn's digits (28x28, rotations), 4 agents on a ring, Metropolis
weights, heterogeneity 'classes', 5-way 1-shot, 5 queries, 2 tasks per agent per round,
1 second-order inner step (lr 0.4), Adam 1e-3 per agent, Conv-4 with 64 filters, float32,
100 rounds; evaluation with 10 SGD steps (lr 0.4) on unseen digits (7, 8, 9 and rotations).

    python benchmarks/digits_conv4.py                                   # seeds 0-2, both strategies
    python benchmarks/digits_conv4.py --name final-600 --final-eval-tasks 600
    python benchmarks/digits_conv4.py --name variant --seeds 0 -c "eval-inner-steps=10"
    python benchmarks/digits_conv4.py --name test-lr-0.1 --final-eval-tasks 600 -c "eval-inner-lr=0.1"

Runs in the vectorised engine (``run_in_process``) with ``compare``; writes
benchmarks/results/digits_conv4/<name>/ (runs, comparison.md/.csv, plots, wall_seconds.json).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from flower_difmaml.cli import parse_overrides, run_in_process
from flower_difmaml.config import RunConfig
from flower_difmaml.runner.compare import compare

OUT = Path(__file__).parent / "results" / "digits_conv4"
STRATEGIES = ("dif-maml", "non-coop")
NUM_AGENTS = 4
SETTING = dict(
    task="digits", topology="ring", combination="metropolis", heterogeneity="classes", n_way=5, shots=1, queries=5,
    tasks_per_agent=2, inner_steps=1, inner_lr=0.4, meta_optimizer="adam", meta_lr=0.001, filters=64,
    dtype="float32", num_rounds=100, eval_every=100,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="final")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--final-eval-tasks", type=int, default=200,
                        help="tasks over the network in the last evaluation (the project's default is 600)")
    parser.add_argument("-c", "--run-config", default="", help="more keys, 'key=value ...' (a variant)")
    args = parser.parse_args()
    keys = {**SETTING, "final_eval_tasks": args.final_eval_tasks}
    keys.update({k.replace("-", "_"): v for k, v in parse_overrides(args.run_config).items()})
    config = RunConfig(**keys)
    folder = OUT / args.name
    start = time.perf_counter()
    failed = compare(config, args.strategies.split(","), [int(s) for s in args.seeds.split(",")], folder,
                     num_agents=NUM_AGENTS, run=run_in_process)
    wall = {"wall_s": round(time.perf_counter() - start, 1), "threads": torch.get_num_threads(),
            "cpus": sorted(os.sched_getaffinity(0)), "overrides": args.run_config}
    (folder / "wall_seconds.json").write_text(json.dumps(wall) + "\n")
    if failed:
        raise SystemExit(f"failed runs: {failed}")


if __name__ == "__main__":
    main()
