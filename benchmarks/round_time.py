"""Benchmark: what a training round costs, in Flower's simulation and in-process.

For N = 10, 100, 1000 agents (default experiment, evaluation rounds excluded), in one run:
- Dif-MAML in Flower's simulation engine (Ray, one actor per core),
- the same ServerApp with a no-op ClientApp (replies at once): the engine's own cost,
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
from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from flower_difmaml.block import EvaluateReplies, TrainReplies
from flower_difmaml.client_app import identify
from flower_difmaml.config import RunConfig
from flower_difmaml.flower import codec
from flower_difmaml.learner import MetaLearner
from flower_difmaml.client_app import app as difmaml_client_app
from flower_difmaml.flower.simulation import run_flower_simulation
from flower_difmaml.server_app import app as difmaml_server_app
from flower_difmaml.runner.results import read_metrics
from flower_difmaml.runner.vectorized import all_agents, run_vectorized

from processes import process_tree  # benchmarks/processes.py

RESULTS = Path(__file__).parent / "results" / "round_time.json"
ENGINE_TICK = 0.1  # s: flwr's simulation engine picks up queued messages every 0.1 s
ACTORS = os.cpu_count() or 1  # one Ray actor per core (client-resources num-cpus = 1)
ROUNDS = {10: 12, 100: 10, 1000: 7}


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
            self.peak = max(self.peak, pss_bytes(process_tree(os.getpid())))
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


def noop_client_app() -> ClientApp:
    """Replies at once: the model back unchanged (train), zero MSE (evaluate)."""
    app = ClientApp()
    app.query()(identify)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        models = codec.decode_train_request(msg.content).models
        replies = TrainReplies(models, {k: 1 for k in models}, {k: 0.0 for k in models}, 0.0)
        return Message(codec.encode_train_replies(replies), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        request = codec.decode_evaluate_request(msg.content)
        zeros = {k: np.zeros(len(request.steps)) for k in request.models}
        return Message(codec.encode_evaluate_replies(EvaluateReplies({"full-mse": zeros, "own-mse": zeros})), reply_to=msg)

    return app


def bare_vmap_step(num_agents: int, repeats: int = 10) -> float:
    learner = MetaLearner.from_config(RunConfig(), num_agents)
    engine = all_agents(learner)
    params = learner.layout.params(np.tile(learner.initial_vector(), (num_agents, 1)))
    state = {n: torch.stack([v] * num_agents) for n, v in engine.initial_state.items()}
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

    run_vectorized(config(root, f"vec-{num_agents}", rounds), num_agents, progress=lambda line: None)
    out["vectorized_round_s"] = statistics.median(training_round_times(root / f"vec-{num_agents}")[0])
    out["bare_vmap_step_s"] = bare_vmap_step(num_agents)

    out["goal_flower_bound_s"] = (ENGINE_TICK + out["agents_compute_s"] / ACTORS) * 1.2
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
