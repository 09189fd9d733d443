"""Benchmark: one Dif-MAML training round on few-shot images, vectorised vs a plain loop.

6 agents x 2 tasks, Omniglot-sized Conv-4 (28x28 grey images, 64 filters), 5-way 1-shot
(1 query per class, as the Dif-MAML authors' Omniglot code), 5 inner steps, second order,
float32, Adam per agent; images from the offline `digits` family (the same tensor shapes
as Omniglot). Side by side in one process, interleaved:

- vectorised: the engine's step, ``vmap(learner.meta_step)`` over agents (and inside it
  over tasks): what a vectorised round computes for training;
- loop: for each agent, ``meta_gradient_loop`` (plain autograd, a Python loop over tasks)
  and its Adam step.

Peak memory: each method alone in a fresh process (VmHWM, the high-water resident set of
that process's own memory: ``ru_maxrss`` would carry the parent's peak over ``exec``). On the CPU;
results go to benchmarks/results/image_round.json.

    python benchmarks/image_round.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.func import vmap

from flower_difmaml.config import RunConfig
from flower_difmaml.learner import MetaLearner
from flower_difmaml.meta import meta_gradient_loop

RESULTS = Path(__file__).parent / "results"
NUM_AGENTS = 6
CONFIG = RunConfig(
    task="digits", heterogeneity="classes", n_way=5, shots=1, queries=1, tasks_per_agent=2, inner_steps=5,
    inner_lr=0.4, meta_optimizer="adam", meta_lr=0.001, filters=64, dtype="float32", topology="difmaml-paper",
    combination="uniform",
)


def round_inputs(learner: MetaLearner, round_: int) -> tuple[dict, dict, object]:
    """Every agent's parameters and Adam state, stacked, and their tasks of ``round_``."""
    params = learner.initial_parameters()
    state = learner.optimizer.init(params)
    stacked = {n: p.expand(NUM_AGENTS, *p.shape).clone() for n, p in params.items()}
    states = {n: v.expand(NUM_AGENTS, *v.shape).clone() for n, v in state.items()}
    batch = learner.train_batches(range(NUM_AGENTS), round_)
    return stacked, states, batch


def make_methods(learner: MetaLearner) -> dict:
    c = learner.config
    vectorised = vmap(learner.meta_step)

    def loop(params: dict, states: dict, batch: object) -> None:
        for k in range(NUM_AGENTS):
            p = {n: v[k] for n, v in params.items()}
            task_batch = type(batch)(*(t[k] for t in batch))
            grads, _ = meta_gradient_loop(
                learner.model, p, task_batch, inner_lr=c.inner_lr, inner_steps=c.inner_steps,
                first_order=c.first_order, loss_fn=learner.family.loss_fn,
            )
            learner.optimizer.step(p, grads, {n: v[k] for n, v in states.items()})

    return {"vectorised": lambda p, s, b: vectorised(p, s, b), "loop": loop}


def high_water_rss_gb() -> float:
    """This process's peak resident set (Linux ``VmHWM``), in GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1e6  # kB -> GB
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def peak_rss_gb(method: str) -> float:
    """Peak resident memory of a fresh process that runs only ``method`` a few times."""
    done = subprocess.run([sys.executable, __file__, "--only", method], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--only", choices=("vectorised", "loop"), help="(internal) run one method, print peak RSS")
    args = parser.parse_args()
    learner = MetaLearner.from_config(CONFIG, NUM_AGENTS)
    methods = make_methods(learner)

    if args.only:
        for round_ in range(3):
            methods[args.only](*round_inputs(learner, round_))
        print(high_water_rss_gb())
        return

    times: dict[str, list[float]] = {name: [] for name in methods}
    for round_ in range(args.repeats + 2):
        params, states, batch = round_inputs(learner, round_)
        for name, method in methods.items():
            start = time.perf_counter()
            method(params, states, batch)
            if round_ >= 2:  # warm-up
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    result = {
        "benchmark": "one Dif-MAML training round: 6 agents x 2 tasks, Conv-4 64 filters 28x28, 5-way 1-shot, "
                     "1 query per class, 5 inner steps, second order, float32, Adam",
        "device": "cpu",
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "median_ms": medians,
        "loop_over_vectorised": medians["loop"] / medians["vectorised"],
        "peak_rss_gb": {name: peak_rss_gb(name) for name in methods},
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
    }
    path = RESULTS / "image_round.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
