"""Benchmark: the main job's config and the 5000-round reproduction, as a user types them.

- main job: ``flower-difmaml run --engine vectorized --num-agents 10`` with every default (the
  console script, in a fresh process): the whole command's wall time (process start to exit,
  imports and plots included), and from its metrics.jsonl the round-0 evaluation, the median
  training round, the evaluation rounds and the last one; ``--repeats`` times, one after the other.
- reproduction: ``flower-difmaml compare --engine vectorized --strategies
  dif-maml,fedavg-maml,non-coop --seeds 0`` with benchmarks/reproduce_difmaml.py's setting (a)
  (5000 rounds, evaluation every 250 on 100 tasks a source and agent): the whole command's wall time.

    python benchmarks/main_job.py [--repeats 5] [--no-reproduction]

Results: benchmarks/results/main_job.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "main_job.json"
REPRODUCTION = "num-rounds=5000 eval-every=250 eval-tasks=100"  # reproduce_difmaml.py's setting (a)


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - start


def main_job(results: str) -> dict:
    seconds = timed(["flower-difmaml", "run", "--engine", "vectorized", "--num-agents", "10",
                     "-c", f"results-dir='{results}' run-name='main'"])
    lines = [json.loads(line) for line in (Path(results) / "main" / "metrics.jsonl").read_text().splitlines()]
    stamps = [line["wall-seconds"] for line in lines]
    rounds = [b - a for a, b in zip(stamps, stamps[1:])]  # rounds[i]: round i + 1
    evaluated = [i for i, line in enumerate(lines[1:]) if "full-mse-1" in line]
    training = [r for i, r in enumerate(rounds) if i not in evaluated]
    return {
        "command_s": seconds,
        "rounds_s": stamps[-1],
        "round0_s": stamps[0],
        "training_round_median_ms": 1e3 * statistics.median(training),
        "training_rounds_s": sum(training),
        "evaluation_rounds_s": [rounds[i] for i in evaluated],
        "eval_tasks_per_agent": lines[1 + evaluated[0]]["tasks-per-agent"],
        "final_tasks_per_agent": lines[-1]["tasks-per-agent"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-reproduction", action="store_true")
    args = parser.parse_args()
    runs = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as results:
            runs.append(main_job(results))
        print(json.dumps(runs[-1]), flush=True)
    result = {
        "benchmark": __doc__.splitlines()[0],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "device": "cpu",
        "main_job": {"command": "flower-difmaml run --engine vectorized --num-agents 10", "runs": runs,
                     "median_command_s": statistics.median(r["command_s"] for r in runs), "goal_s": 8},
    }
    if not args.no_reproduction:
        out = tempfile.mkdtemp()
        command = ["flower-difmaml", "compare", "--engine", "vectorized", "--strategies", "dif-maml,fedavg-maml,non-coop",
                   "--seeds", "0", "--out", out, "-c", f"{REPRODUCTION} results-dir='{out}'"]
        seconds = timed(command)
        shutil.rmtree(out)
        shown = " ".join(command[:command.index("--out")]) + f' -c "{REPRODUCTION}"'
        result["reproduction"] = {"command": shown, "command_s": seconds, "goal_s": 180}
        print(json.dumps(result["reproduction"]), flush=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
