"""Benchmark: what a training round costs, in Flower's simulation and in-process.

For N = 10, 100, 1000 agents (default experiment, evaluation rounds excluded), in one run:
- Dif-MAML in Flower's simulation engine (Ray, one actor per core),
- the same ServerApp with a no-op ClientApp (replies at once): the engine's own cost,
- stock ``flwr.serverapp.strategy.FedAvg`` with the same ClientApp (its own round loop),
- the agents' own compute (the ClientApp's train handler, summed over agents),
- the vectorised engine's round, and a bare ``vmap`` meta-step of all agents;
plus start-up time and the peak memory (PSS) of this process and all its descendants
(Ray's processes) during each Flower run. Medians; results to benchmarks/results/round_time.json.

    python benchmarks/round_time.py [--agents 10,100,1000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from flower_difmaml.client_app import identify
from flower_difmaml.config import RunConfig
from flower_difmaml.learner import MetaLearner
from flower_difmaml.flower.records import model_record
from flower_difmaml.client_app import app as difmaml_client_app
from flower_difmaml.flower.simulation import run_flower_simulation
from flower_difmaml.server_app import app as difmaml_server_app
from flower_difmaml.runner.results import read_metrics
from flower_difmaml.runner.vectorized import VectorizedAgents, run_vectorized

RESULTS = Path(__file__).parent / "results" / "round_time.json"
ENGINE_TICK = 0.1  # s: flwr's simulation engine picks up queued messages every 0.1 s
ACTORS = os.cpu_count() or 1  # one Ray actor per core (client-resources num-cpus = 1)
ROUNDS = {10: 12, 100: 10, 1000: 7}


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(proc.name))
    out, stack = set(), [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.add(child)
            stack.append(child)
    return out


def pss_bytes(pids: set[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


class PeakMemory:
    """Samples the PSS of this process and its descendants every 0.5 s."""

    def __enter__(self) -> PeakMemory:
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, pss_bytes({os.getpid()} | descendants(os.getpid())))
            self._stop.wait(0.5)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def config(results: Path, name: str, num_rounds: int) -> RunConfig:
    return RunConfig(results_dir=str(results), run_name=name, num_rounds=num_rounds, eval_every=10**6, eval_tasks=1)


def training_round_times(run_dir: Path) -> tuple[list[float], list[float]]:
    """Wall seconds of rounds 2..R-1 (round 1 warms up, R evaluates), and their agent-seconds."""
    lines = read_metrics(run_dir)
    times = [b["wall-seconds"] - a["wall-seconds"] for a, b in zip(lines, lines[1:])][1:-1]
    return times, [line["agent-seconds"] for line in lines[2:-1]]


class TimedFedAvg(FedAvg):
    """Stock FedAvg that notes when each round's training replies were aggregated."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.stamps: list[float] = []

    def aggregate_train(self, server_round, replies):
        self.stamps.append(time.perf_counter())
        return super().aggregate_train(server_round, replies)


def stock_fedavg_app(run_config: RunConfig, num_agents: int, num_rounds: int, stamps: list[float]) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = TimedFedAvg(
            fraction_evaluate=0.0, min_available_nodes=num_agents, min_train_nodes=num_agents,
            arrayrecord_key="model", configrecord_key="config", weighted_by_key="num-tasks",
        )
        initial = model_record(MetaLearner.from_config(run_config, num_agents).initial_vector())
        strategy.start(grid, initial, num_rounds=num_rounds, train_config=ConfigRecord({"round": 1}))
        stamps.extend(strategy.stamps)

    return app


def noop_client_app() -> ClientApp:
    """Replies at once: the model back unchanged (train), zero MSE (evaluate)."""
    app = ClientApp()
    app.query()(identify)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        metrics = MetricRecord({"train-loss": 0.0, "num-tasks": 1, "compute-seconds": 0.0})
        return Message(RecordDict({"model": msg.content["model"], "metrics": metrics}), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        zeros = [0.0] * len(msg.content["config"]["steps"])
        return Message(RecordDict({"metrics": MetricRecord({"full-mse": zeros, "own-mse": zeros})}), reply_to=msg)

    return app


def bare_vmap_step(num_agents: int, repeats: int = 10) -> float:
    learner = MetaLearner.from_config(RunConfig(), num_agents)
    engine = VectorizedAgents(learner)
    params = learner.layout.params(np.tile(learner.initial_vector(), (num_agents, 1)))
    state = {n: torch.stack([engine.states[k][n] for k in range(num_agents)]) for n in engine.initial_state}
    times = []
    for r in range(repeats + 2):
        batch = learner.train_batches(range(num_agents), r)
        start = time.perf_counter()
        engine.step(params, state, batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def measure(num_agents: int, root: Path) -> dict:
    rounds = ROUNDS.get(num_agents, 7)
    out: dict = {"agents": num_agents, "rounds": rounds, "actors": ACTORS}

    start, start_wall = time.perf_counter(), time.time()
    with PeakMemory() as memory:
        run_flower_simulation(config(root, f"dif-{num_agents}", rounds), num_agents, difmaml_server_app, difmaml_client_app)
    run_dir = root / f"dif-{num_agents}"
    times, agent_seconds = training_round_times(run_dir)
    out["flower_difmaml_round_s"] = statistics.median(times)
    out["agents_compute_s"] = statistics.median(agent_seconds)
    out["startup_s"] = (run_dir / "config.json").stat().st_mtime - start_wall  # Ray, actors, discovery
    out["flower_peak_pss_gb"] = memory.peak / 1e9
    out["flower_total_s"] = time.perf_counter() - start

    run_flower_simulation(config(root, f"noop-{num_agents}", rounds), num_agents, difmaml_server_app, noop_client_app())
    out["flower_noop_client_round_s"] = statistics.median(training_round_times(root / f"noop-{num_agents}")[0])

    stamps: list[float] = []
    with PeakMemory() as memory:
        run_flower_simulation(
            config(root, f"fedavg-{num_agents}", rounds), num_agents,
            stock_fedavg_app(config(root, "unused", rounds), num_agents, rounds, stamps), difmaml_client_app,
        )
    out["stock_fedavg_round_s"] = statistics.median(np.diff(stamps)[1:].tolist())
    out["stock_fedavg_peak_pss_gb"] = memory.peak / 1e9

    run_vectorized(config(root, f"vec-{num_agents}", rounds), num_agents, progress=lambda line: None)
    out["vectorized_round_s"] = statistics.median(training_round_times(root / f"vec-{num_agents}")[0])
    out["bare_vmap_step_s"] = bare_vmap_step(num_agents)

    out["goal_flower_bound_s"] = (ENGINE_TICK + out["agents_compute_s"] / ACTORS) * 1.2
    out["flower_over_stock_fedavg"] = out["flower_difmaml_round_s"] / out["stock_fedavg_round_s"]
    out["flower_over_bound"] = out["flower_difmaml_round_s"] / out["goal_flower_bound_s"]
    out["vectorized_over_bare_vmap"] = out["vectorized_round_s"] / out["bare_vmap_step_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="10,100,1000")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(a) for a in args.agents.split(",")):
            row = measure(n, Path(tmp))
            rows.append(row)
            print(json.dumps(row), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"benchmark": __doc__.splitlines()[0], "cpus": os.cpu_count(), "rows": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
