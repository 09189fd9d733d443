"""Benchmark: the vectorised engine's training round against a bare float32 Dif-MAML iteration.

The default experiment (sinusoid, 10 tasks per agent, K = Q = 10, one inner step, second
order, SGD, Erdős–Rényi p = 0.3, Metropolis) in float32, for N = 10, 100, 1000 agents, in one
process, the two methods one after the other for each N:

- engine: ``flower-difmaml run --engine vectorized`` (the CLI's entry point in a fresh
  process; ``dtype='float32'``, key ``device``), evaluation only at the start and the end
  (one task); its median training round from metrics.jsonl (wall-seconds between
  consecutive training rounds, the first and the last left out); and the same with key
  ``compile`` (torch.compile'd meta-step, on a GPU one CUDA graph a step; the compile itself
  is in the first round; ``--compiled-agents`` picks the N);
- bare: one Dif-MAML iteration of all agents written with tensor ops only: a functional MLP,
  ``torch.func.vmap`` over agents (chunks of 256) and tasks, every agent's tasks drawn at
  once with torch's generator, SGD, the combination as one product A^T W; median of rounds.

Also the time the engine spends drawing its tasks (all agents' at once from the keyed
Philox generator, as every engine draws them: ``learner.train_batches``), and the peak resident memory
(VmHWM) of a fresh process running the engine at the largest N. Results go to
benchmarks/results/vectorized_round[-<device>].json.

    python benchmarks/vectorized_round.py [--agents 10,100,1000] [--device cpu|cuda] [--topology erdos-renyi]
                                          [--compiled-agents 10,100]

At large N use a sparse graph (``--topology small-world``: k = 4, p = 0.3): Erdős–Rényi p = 0.3
has 0.15 N^2 edges. The bare iteration's combination is then a sparse product too. Results of
another topology go to vectorized_round[-<device>]-<topology>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.func import grad, grad_and_value, vmap

from flower_difmaml.config import RunConfig
from flower_difmaml.learner import MetaLearner
from flower_difmaml.network.combination import DENSE_PRODUCT_DENSITY
from flower_difmaml.runner.experiment import build_network
from flower_difmaml.runner.results import read_metrics

RESULTS = Path(__file__).parent / "results"
ROUNDS = {10: 40, 100: 20, 1000: 8}
CHUNK = 256  # agents per vmap call in the bare iteration
TASKS, SHOTS, QUERIES, INNER_LR, META_LR = 10, 10, 10, 0.01, 0.03


TOPOLOGY = "erdos-renyi"  # key topology of every run here (--topology)


def config(results: str, num_rounds: int, device: str, compile: bool = False) -> RunConfig:
    return RunConfig(
        topology=TOPOLOGY,
        dtype="float32", device=device, num_rounds=num_rounds, eval_every=10**6, eval_tasks=1,
        checkpoint_every=0, results_dir=results, compile=compile,
    )


def engine_round_s(num_agents: int, device: str, compile: bool = False) -> float:
    """The median training round of ``flower-difmaml run --engine vectorized`` (the CLI's
    entry point, in a fresh process, as the console script runs it)."""
    with tempfile.TemporaryDirectory() as results:
        c = config(results, ROUNDS.get(num_agents, 8), device, compile)
        keys = dict(topology=repr(c.topology), dtype="'float32'", device=repr(device), num_rounds=c.num_rounds,
                    eval_every=c.eval_every, eval_tasks=1, final_eval_tasks=0, checkpoint_every=0,
                    results_dir=repr(results), run_name="'r'", compile=str(compile).lower())
        overrides = " ".join(f"{k.replace('_', '-')}={v}" for k, v in keys.items())
        code = "import sys; from flower_difmaml.cli import main; sys.exit(main(sys.argv[1:]))"
        subprocess.run([sys.executable, "-c", code, "run", "--engine", "vectorized", "--num-agents", str(num_agents),
                        "-c", overrides], capture_output=True, text=True, check=True)
        stamps = [line["wall-seconds"] for line in read_metrics(Path(results) / "r")[1:]]  # rounds 1..R
    return statistics.median(b - a for a, b in zip(stamps[1:-2], stamps[2:-1]))


def draw_s(num_agents: int, device: str, repeats: int = 5) -> float:
    learner = MetaLearner.from_config(config("", 1, device), num_agents)
    times = []
    for round_ in range(repeats):
        start = time.perf_counter()
        learner.train_batches(range(num_agents), round_)
        if learner.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def mlp(p: dict, x: torch.Tensor) -> torch.Tensor:
    h = torch.relu(x @ p["0.weight"].T + p["0.bias"])
    h = torch.relu(h @ p["2.weight"].T + p["2.bias"])
    return h @ p["4.weight"].T + p["4.bias"]


def task_loss(p: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((mlp(p, x) - y) ** 2).mean()


def one_task(p: dict, xs, ys, xq, yq) -> torch.Tensor:
    g = grad(task_loss)(p, xs, ys)
    return task_loss({n: p[n] - INNER_LR * g[n] for n in p}, xq, yq)


def meta_loss(p: dict, xs, ys, xq, yq) -> torch.Tensor:
    return vmap(one_task, in_dims=(None, 0, 0, 0, 0))(p, xs, ys, xq, yq).mean()


def agent_step(p: dict, xs, ys, xq, yq) -> dict:
    g, _ = grad_and_value(meta_loss)(p, xs, ys, xq, yq)
    return {n: p[n] - META_LR * g[n] for n in p}


def bare_round_s(num_agents: int, device: str) -> float:
    """Median of bare float32 Dif-MAML iterations of all agents (adapt, then combine)."""
    where = torch.device("cuda" if device == "cuda" else "cpu")
    learner = MetaLearner.from_config(config("", 1, device), num_agents)
    _, A = build_network(learner.config, num_agents)
    if A.nnz > DENSE_PRODUCT_DENSITY * num_agents**2:  # as network.combination.combine
        combine = torch.as_tensor(A.toarray().T, dtype=torch.float32, device=where)
    else:
        At = A.T.tocsr()
        combine = torch.sparse_csr_tensor(At.indptr, At.indices, At.data, At.shape, dtype=torch.float32, device=where)
    params = {n: v.expand(num_agents, *v.shape).clone() for n, v in learner.initial_parameters().items()}
    shapes = {n: v.shape for n, v in params.items()}
    def step(p: dict, *data: torch.Tensor) -> dict:  # agents in chunks of CHUNK, sliced by hand (vmap's chunk_size costs 2 ms a call)
        parts = [vmap(agent_step)({n: v[i : i + CHUNK] for n, v in p.items()}, *(t[i : i + CHUNK] for t in data))
                 for i in range(0, num_agents, CHUNK)]
        return {n: torch.cat([part[n] for part in parts]) for n in p}

    generator = torch.Generator(device=where).manual_seed(0)

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator, device=where)

    times = []
    for _ in range(ROUNDS.get(num_agents, 8)):
        start = time.perf_counter()
        amplitude = uniform(0.1, 5.0, num_agents, TASKS, 1, 1)
        phase = uniform(0.0, math.pi, num_agents, TASKS, 1, 1)
        xs = uniform(-5.0, 5.0, num_agents, TASKS, SHOTS, 1)
        xq = uniform(-5.0, 5.0, num_agents, TASKS, QUERIES, 1)
        phi = step(params, xs, amplitude * torch.sin(xs - phase), xq, amplitude * torch.sin(xq - phase))
        flat = combine @ torch.cat([phi[n].reshape(num_agents, -1) for n in phi], dim=1)
        params, offset = {}, 0
        for n, shape in shapes.items():
            size = math.prod(shape[1:])
            params[n] = flat[:, offset : offset + size].reshape(shape).contiguous()
            offset += size
        if where.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def peak_memory_gb(num_agents: int, device: str) -> float:
    """VmHWM of a fresh process that runs the engine on ``num_agents`` agents."""
    code = (
        "from benchmarks.image_round import high_water_rss_gb; import benchmarks.vectorized_round as bench; "
        "from flower_difmaml.runner.vectorized import run_vectorized; import tempfile; "
        f"bench.TOPOLOGY = {TOPOLOGY!r}; d = tempfile.mkdtemp(); "
        f"run_vectorized(bench.config(d, 8, {device!r}), {num_agents}, progress=lambda line: None); print(high_water_rss_gb())"
    )
    root = str(Path(__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return float(done.stdout.split()[-1])


def main() -> None:
    global TOPOLOGY
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="10,100,1000")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--topology", default=TOPOLOGY)
    parser.add_argument("--compiled-agents", default=None, help="the N that also run with key compile (default: all)")
    args = parser.parse_args()
    TOPOLOGY = args.topology
    compiled_agents = {int(a) for a in (args.agents if args.compiled_agents is None else args.compiled_agents).split(",") if a}
    rows = []
    for n in (int(a) for a in args.agents.split(",")):
        bare, engine, draws = bare_round_s(n, args.device), engine_round_s(n, args.device), draw_s(n, args.device)
        rows.append({
            "agents": n, "bare_round_ms": 1e3 * bare, "engine_round_ms": 1e3 * engine, "engine_over_bare": engine / bare,
            "engine_task_draws_ms": 1e3 * draws, "goal_engine_over_bare": 1.2,
        })
        if n in compiled_agents:  # on a GPU: CUDA graphs (block.step_function)
            compiled = engine_round_s(n, args.device, compile=True)
            rows[-1].update(engine_compiled_round_ms=1e3 * compiled, engine_compiled_over_bare=compiled / bare)
        print(json.dumps(rows[-1]), flush=True)
    largest = max(row["agents"] for row in rows)
    result = {
        "benchmark": __doc__.splitlines()[0],
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "topology": TOPOLOGY,
        "rows": rows,
        f"engine_peak_rss_gb_at_{largest}_agents": peak_memory_gb(largest, args.device),
    }
    suffix = ("" if args.device == "cpu" else f"-{args.device}") + ("" if TOPOLOGY == "erdos-renyi" else f"-{TOPOLOGY}")
    path = RESULTS / f"vectorized_round{suffix}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
