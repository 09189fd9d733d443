"""Benchmark: N agents on M SuperNodes through Flower's simulation engine, against the vectorised engine.

Both through the command a user types, each in its own process, side by side in one run:

    flower-difmaml run --engine flower --num-agents N --nodes M -c "..."   (Flower's engine, Ray)
    flower-difmaml run --engine vectorized --num-agents N -c "..."         (one process)

The default experiment in float32, evaluation only after the last round (eval-tasks 1), the
median training round from metrics.jsonl (rounds 2..R-1: round 1 warms up, round R
evaluates), and the peak memory (PSS) of the command and every process it started (Ray's
too), sampled every 0.5 s. Goal (issue 22): Flower's round <= 2 x the vectorised round + 0.25 s.
``--one-agent-a-node`` adds, for each of ``--cases``, Flower with N SuperNodes of one agent (before blocks).
``--main-job`` also runs the main job's config (float64, N = 10 on 10 nodes, 500 rounds)
through both engines and records its final numbers and time of rounds.

    python benchmarks/flower_blocks.py [--cases 100:2,1000:10] [--sparse 10000:20] [--main-job] [--one-agent-a-node]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from round_time import PeakMemory

import flwr

from flower_difmaml.runner.results import read_metrics

RESULTS = Path(__file__).parent / "results" / "flower_blocks.json"
ROUNDS = 12
FLOAT32 = f"dtype='float32' num-rounds={ROUNDS} eval-every=1000000 eval-tasks=1 checkpoint-every=0"
SPARSE = "topology='small-world' topology-k=4"


def run_command(args: list[str], root: Path, name: str, keys: str) -> dict:
    """One ``flower-difmaml run``: its median training round, wall time, peak memory."""
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
           "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0"}
    command = [sys.executable, "-m", "flower_difmaml", "run", *args, "-c", f"{keys} results-dir='{root}' run-name='{name}'"]
    start = time.perf_counter()
    with PeakMemory() as memory:
        done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0 or not (root / name / "summary.json").exists():
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    lines = read_metrics(root / name)
    rounds = [b["wall-seconds"] - a["wall-seconds"] for a, b in zip(lines, lines[1:])]
    summary = json.loads((root / name / "summary.json").read_text())
    return {
        "median_round_s": statistics.median(rounds[1:-1]) if len(rounds) > 2 else None,
        "rounds_s": summary["wall-seconds"],
        "command_s": time.perf_counter() - start,
        "peak_pss_gb": memory.peak / 1e9,
        "final": summary["final"],
    }


def case(num_agents: int, num_nodes: int, root: Path, keys: str, one_agent_a_node: bool = False) -> dict:
    """Flower with blocks against the vectorised engine (and, asked, Flower with one agent a node: before blocks)."""
    out: dict = {"agents": num_agents, "nodes": num_nodes, "keys": keys}
    # the vectorised run first: Ray's processes take a few seconds to go after a Flower run
    out["vectorized"] = run_command(["--engine", "vectorized", "--num-agents", str(num_agents)], root,
                                    f"vectorized-{num_agents}-{num_nodes}", keys)
    out["flower"] = run_command(
        ["--engine", "flower", "--num-agents", str(num_agents), "--nodes", str(num_nodes)], root,
        f"flower-{num_agents}-{num_nodes}", keys,
    )
    if one_agent_a_node:
        out["flower_one_agent_a_node"] = run_command(
            ["--engine", "flower", "--num-agents", str(num_agents)], root, f"flower-{num_agents}-{num_agents}", keys
        )
    flower, vectorized = out["flower"]["median_round_s"], out["vectorized"]["median_round_s"]
    out["goal_round_s"] = 2 * vectorized + 0.25
    out["goal_met"] = flower <= out["goal_round_s"]
    out["flower_over_vectorized"] = flower / vectorized
    return out


def main_job(root: Path) -> dict:
    """The main job's config (N = 10, one agent a node, float64, 500 rounds) in both engines."""
    out = {"vectorized": run_command(["--engine", "vectorized", "--num-agents", "10"], root, "main-vectorized", "")}
    out["flower"] = run_command(["--engine", "flower", "--num-agents", "10"], root, "main-flower", "")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="100:2,1000:10", help="N:M pairs, default topology")
    parser.add_argument("--sparse", default="10000:20", help="N:M pairs on a small-world graph (k = 4)")
    parser.add_argument("--main-job", action="store_true")
    parser.add_argument("--one-agent-a-node", action="store_true", help="--cases also with one agent a SuperNode")
    args = parser.parse_args()
    pairs = lambda text: [tuple(int(v) for v in pair.split(":")) for pair in text.split(",") if pair]  # noqa: E731
    result: dict = {
        "benchmark": __doc__.splitlines()[0], "cpus": os.cpu_count(), "flwr": flwr.__version__,
        "torch": torch.__version__, "rows": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for n, m in pairs(args.cases):
            result["rows"].append(case(n, m, Path(tmp), FLOAT32, args.one_agent_a_node))
            print(json.dumps(result["rows"][-1]), flush=True)
        for n, m in pairs(args.sparse):
            result["rows"].append(case(n, m, Path(tmp), f"{FLOAT32} {SPARSE}"))
            print(json.dumps(result["rows"][-1]), flush=True)
        if args.main_job:
            result["main_job"] = main_job(Path(tmp))
            print(json.dumps(result["main_job"]), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
