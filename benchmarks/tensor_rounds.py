"""Tensor-native rounds against numpy rounds in the vectorised engine, side by side in one run.

The default experiment's float32 sinusoid (Dif-MAML, Metropolis weights) through
``run_vectorized`` with ``tensor_rounds`` False and True, alternating, on the Erdős–Rényi graph
(a dense product) and a small-world graph (k = 4, a sparse one): the median training round
(from metrics.jsonl's wall-seconds, rounds 2..R-1: no evaluation in them).

    python benchmarks/tensor_rounds.py                       # CPU, N = 100, 1000
    python benchmarks/tensor_rounds.py --device cuda --agents 1000,10000

Writes benchmarks/results/tensor_rounds[-cuda].json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from flower_difmaml.config import RunConfig
from flower_difmaml.runner.vectorized import run_vectorized

RESULTS = Path(__file__).parent / "results"


def median_round_s(config: RunConfig, num_agents: int, tensor_rounds: bool) -> float:
    with tempfile.TemporaryDirectory() as folder:
        run_vectorized(config.replace(results_dir=folder, run_name="run"), num_agents, progress=lambda line: None,
                       tensor_rounds=tensor_rounds)
        walls = [json.loads(line)["wall-seconds"] for line in (Path(folder) / "run" / "metrics.jsonl").read_text().splitlines()]
    return float(np.median(np.diff(walls)[1:-1]))  # rounds 2..R-1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="100,1000")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    base = RunConfig(dtype="float32", device=args.device, num_rounds=args.rounds, eval_every=10**6, eval_tasks=1,
                     final_eval_tasks=0, eval_inner_steps=1, checkpoint_every=0)
    rows = []
    for topology in ("erdos-renyi", "small-world"):
        for num_agents in (int(n) for n in args.agents.split(",")):
            config = base.replace(topology=topology)
            times: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(args.repeats):
                for tensor_rounds in (False, True):
                    times[tensor_rounds].append(median_round_s(config, num_agents, tensor_rounds))
            numpy_s, tensor_s = min(times[False]), min(times[True])
            rows.append({"topology": topology, "agents": num_agents, "numpy_round_ms": round(1e3 * numpy_s, 2),
                         "tensor_round_ms": round(1e3 * tensor_s, 2), "tensor_over_numpy": round(tensor_s / numpy_s, 3)})
            print(rows[-1], flush=True)
    machine = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{os.cpu_count()} CPU cores"
    out = {"machine": machine, "torch": torch.__version__, "threads": torch.get_num_threads(), "rounds": args.rounds,
           "repeats": args.repeats, "statistic": "min over repeats of the median round", "rows": rows}
    name = "tensor_rounds" + ("-cuda" if args.device.startswith("cuda") else "") + ".json"
    (RESULTS / name).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
