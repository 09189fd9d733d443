"""Benchmark: one agent's MAML meta-step, vmapped over tasks vs a plain autograd loop.

10 sinusoid tasks, MLP 1-40-40-1 (float64), K = Q = 10, 1 inner step, second order.
Both are timed interleaved in one run; the medians and their ratio go to
benchmarks/results/meta_step.json.

    python benchmarks/meta_step.py [--repeats 200]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from flower_difmaml.meta import meta_gradient, meta_gradient_loop
from flower_difmaml.models import initial_parameters
from flower_difmaml.tasks.sinusoid import SinusoidTasks
from flower_difmaml.streams import DrawKey, Stream

RESULTS = Path(__file__).parent / "results" / "meta_step.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    family = SinusoidTasks(num_agents=10, heterogeneity="phase", shots=10, queries=10)
    model = family.make_model()
    params = initial_parameters(model, 0)
    kwargs = dict(inner_lr=0.01, inner_steps=1, first_order=False)
    candidates = {"vmap": meta_gradient, "loop": meta_gradient_loop}
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for i in range(args.repeats + 10):
        batch = family.sample(DrawKey(0, i, Stream.TRAIN), 10, [0]).agent(0)
        for name, step in candidates.items():
            start = time.perf_counter()
            step(model, params, batch, **kwargs)
            if i >= 10:  # warm-up
                times[name].append(time.perf_counter() - start)

    medians = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    result = {
        "benchmark": "one agent's meta-step: 10 sinusoid tasks, MLP 1-40-40-1 float64, K=Q=10, 1 inner step, second order",
        "repeats": args.repeats,
        "torch_threads": args.threads,
        "median_ms": medians,
        "loop_over_vmap": medians["loop"] / medians["vmap"],
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
