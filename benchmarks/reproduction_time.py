"""Benchmark: wall time of a 5000-round, 3-strategy reproduction, with each engine.

The default experiment (10 agents, seed 0) at 5000 rounds for dif-maml, fedavg-maml and
non-coop, once in Flower's simulation engine (Ray, in-process), once in the vectorised
engine, and once in the vectorised engine with key ``compile``. Writes the wall times, their
ratios to Flower's and the final metrics of each run to benchmarks/results/reproduction_time.json.

    python benchmarks/reproduction_time.py [--rounds 5000] [--engines vectorized,vectorized-compiled,flower]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import torch

from flower_difmaml.config import RunConfig
from flower_difmaml.cli import run_in_flower
from flower_difmaml.runner.vectorized import run_vectorized

RESULTS = Path(__file__).parent / "results" / "reproduction_time.json"
STRATEGIES = ("dif-maml", "fedavg-maml", "non-coop")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5000)
    parser.add_argument("--engines", default="vectorized,vectorized-compiled,flower")
    args = parser.parse_args()
    engines = args.engines.split(",")
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for engine in engines:
            engine_start = time.perf_counter()
            for strategy in STRATEGIES:
                config = RunConfig(strategy=strategy, num_rounds=args.rounds, eval_tasks=100, results_dir=tmp, run_name=f"{engine}-{strategy}",
                                   compile=engine == "vectorized-compiled")
                start = time.perf_counter()
                if engine == "flower":
                    run_in_flower(config, 10)
                else:
                    run_vectorized(config, 10, progress=lambda line: None)
                summary = json.loads((Path(tmp) / config.run_name / "summary.json").read_text())
                runs.append({"engine": engine, "strategy": strategy, "wall_s": time.perf_counter() - start, "final": summary["final"]})
                print(json.dumps(runs[-1]), flush=True)
                write(args.rounds, engines, runs)  # after every run: an interrupted benchmark keeps what it measured
            print(f"{engine}: {time.perf_counter() - engine_start:.1f} s for {len(STRATEGIES)} strategies", flush=True)
    print(f"wrote {RESULTS}")


def write(rounds: int, engines: list[str], runs: list[dict]) -> None:
    totals = {e: sum(r["wall_s"] for r in runs if r["engine"] == e) for e in engines
              if sum(r["engine"] == e for r in runs) == len(STRATEGIES)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    ratios = {f"{e}_over_flower": t / totals["flower"] for e, t in totals.items() if "flower" in totals and e != "flower"}
    payload = {
        "benchmark": __doc__.splitlines()[0], "rounds": rounds, "cpu_cores": os.cpu_count(), "flwr": version("flwr"),
        "torch": torch.__version__, "total_s": totals, **ratios, "goal_vectorized_over_flower": 0.05, "runs": runs,
    }
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
