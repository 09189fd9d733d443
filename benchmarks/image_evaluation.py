"""Benchmark: one image evaluation round through the CLI against a bare evaluation, and its memory.

Setting (issue 24's): digits, 4 agents on a ring, 5-way 1-shot, 10 queries, Conv-4 with the
default 64 filters (28x28), float32, ``eval-tasks`` 100 from each source (the full and the
agent's own distribution), steps 0, 1 and 10 of adaptation (lr 0.4): 2 x 4 x 100 tasks x 10 steps.

- engine: ``flower-difmaml run --engine vectorized -c "... num-rounds=1"`` in a fresh process
  (the CLI's entry point, as the console script calls it); the round-0 evaluation is its
  first metrics.jsonl line's wall-seconds (the recorder's clock starts as the run folder is
  made). Its peak resident memory (VmHWM) is read in that process at the end.
- bare: per agent, ``vmap`` over its tasks in chunks of 25, of a functional Conv-4 written
  here (conv, batch statistics norm, ReLU, 2x2 max-pool that floors, linear head), torch's
  default threads, the same tasks and initial model; the same accuracies to 1e-5.

Then the default image setting (``task='digits'`` and nothing else: 10 agents, 5-way
10-shot, 10 queries, the image families' eval-tasks 20) through the CLI: its peak memory
(10 agents, one round, one-step evaluations: the calls are chunked alike), and the share of
a default run's time spent evaluating: seconds a training task, an evaluation task and a
last-evaluation task (steps 0..10) measured in a short run on 2 agents, scaled to the
default schedule (500 rounds, evaluation every 50, the last on ``final-eval-tasks``).

    python benchmarks/image_evaluation.py [--repeats 2]

Results: benchmarks/results/image_evaluation.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from flower_difmaml.config import RunConfig
from flower_difmaml.learner import MetaLearner

RESULTS = Path(__file__).parent / "results" / "image_evaluation.json"
NUM_AGENTS = 4
KEYS = dict(task="digits", n_way=5, shots=1, queries=10, topology="ring", inner_lr=0.4, eval_tasks=100, dtype="float32")
BARE_CHUNK = 25  # tasks a vmap call in the bare evaluation
STEPS = (0, 1, 10)


def overrides(keys: dict) -> str:
    return " ".join(f"{k.replace('_', '-')}={v!r}" if isinstance(v, str) else f"{k.replace('_', '-')}={v}" for k, v in keys.items())


CLI = """
import json, sys
from flower_difmaml.cli import main
code = main(sys.argv[1:])
hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]
print(json.dumps({"code": code, "peak_rss_gb": int(hwm) / 1e6}))
"""


def through_cli(keys: dict, results: str, num_agents: int) -> dict:
    """``flower-difmaml run --engine vectorized`` on ``keys`` in a fresh process: its
    metrics.jsonl lines, peak memory and the command's seconds."""
    run = f"results-dir='{results}' run-name='r' checkpoint-every=0 " + overrides(keys)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CLI, "run", "--engine", "vectorized", "--num-agents", str(num_agents),
                           "-c", run], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    out = json.loads(done.stdout.strip().splitlines()[-1])
    lines = [json.loads(line) for line in (Path(results) / "r" / "metrics.jsonl").read_text().splitlines()]
    return {"lines": lines, "peak_rss_gb": out["peak_rss_gb"], "command_s": seconds}


def conv4(p: dict, x: torch.Tensor) -> torch.Tensor:
    for i in range(4):
        x = F.conv2d(x, p[f"features.{4 * i}.weight"], p[f"features.{4 * i}.bias"], padding=1)
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        var = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
        x = (x - mean) * (p[f"features.{4 * i + 1}.weight"].view(1, -1, 1, 1) / torch.sqrt(var + 1e-5))
        x = torch.relu(x + p[f"features.{4 * i + 1}.bias"].view(1, -1, 1, 1))
        x = F.max_pool2d(x, 2)  # floor, as the authors' Conv-4 (models.Conv4)
    return x.flatten(1) @ p["head.weight"].T + p["head.bias"]


def bare_evaluation_s(learner: MetaLearner) -> tuple[float, dict]:
    """Every agent's both sources, per agent, vmap over tasks in chunks: seconds, and accuracies."""
    lr = learner.config.inner_lr

    def loss(p, x, y):
        return F.cross_entropy(conv4(p, x), y)

    def one_task(p, xs, ys, xq, yq):
        out = []
        for step in range(max(STEPS) + 1):
            if step in STEPS:
                out.append((conv4(p, xq).argmax(-1) == yq).float().mean())
            if step < max(STEPS):
                g = grad(loss)(p, xs, ys)
                p = {n: p[n] - lr * g[n] for n in p}
        return torch.stack(out)

    params = learner.initial_parameters()
    batches = learner.evaluation_batches(range(NUM_AGENTS))
    start, accuracy = time.perf_counter(), {}
    with torch.no_grad():
        for source, batch in batches.items():
            for k in range(NUM_AGENTS):
                tasks = batch.agent(k)
                parts = [vmap(one_task, in_dims=(None, 0, 0, 0, 0))(params, *(t[i : i + BARE_CHUNK] for t in tasks))
                         for i in range(0, tasks.num_tasks, BARE_CHUNK)]
                accuracy[f"{source}-{k}"] = torch.cat(parts).mean(0).tolist()
    return time.perf_counter() - start, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    learner = MetaLearner.from_config(RunConfig(**KEYS), NUM_AGENTS)
    engine, bare, peaks = [], [], []
    for repeat in range(args.repeats):  # interleaved
        with tempfile.TemporaryDirectory() as results:
            got = through_cli({**KEYS, "num_rounds": 1, "final_eval_tasks": 0, "eval_inner_steps": 10}, results, NUM_AGENTS)
        engine.append(got["lines"][0]["wall-seconds"])
        peaks.append(got["peak_rss_gb"])
        seconds, accuracy = bare_evaluation_s(learner)
        bare.append(seconds)
        print(f"repeat {repeat}: engine round-0 evaluation {engine[-1]:.1f} s ({peaks[-1]:.2f} GB), bare {seconds:.1f} s", flush=True)
    line = got["lines"][0]
    agreement = max(abs(line["agents"][f"{source}-acc-{step}"][k] - accuracy[f"{source}-{k}"][j])
                    for source in ("full", "own") for k in range(NUM_AGENTS) for j, step in enumerate(STEPS))

    # the default image setting: its memory (10 agents: one training round, evaluations of
    # eval-tasks 20 a source with one step, as chunked as with ten), and the share of its time
    # evaluating, from a short run on 2 agents (per task, both scale with the agents and tasks)
    with tempfile.TemporaryDirectory() as results:
        memory = through_cli({"task": "digits", "num_rounds": 1, "eval_inner_steps": 1, "final_eval_tasks": 0}, results, 10)
    with tempfile.TemporaryDirectory() as results:
        short = through_cli({"task": "digits", "num_rounds": 3, "eval_every": 2, "eval_tasks": 4, "final_eval_tasks": 0},
                            results, 2)
    lines = short["lines"]
    default, agents = RunConfig(task="digits"), 10
    final_learner = MetaLearner.from_config(default, agents)
    train_task_s = (lines[1]["wall-seconds"] - lines[0]["wall-seconds"]) / (2 * default.tasks_per_agent)  # round 1: training
    eval_task_s = ((lines[2]["wall-seconds"] - lines[1]["wall-seconds"]) - train_task_s * 2 * default.tasks_per_agent) / (2 * 2 * 4)
    last_task_s = ((lines[3]["wall-seconds"] - lines[2]["wall-seconds"]) - train_task_s * 2 * default.tasks_per_agent) / (2 * 2 * 4)
    evaluations = len(range(0, default.num_rounds, default.eval_every))  # rounds 0, 50, ..., 450
    eval_tasks = final_learner.config.eval_tasks
    training_s = default.num_rounds * agents * default.tasks_per_agent * train_task_s
    evaluating_s = (evaluations * 2 * agents * eval_tasks * eval_task_s
                    + 2 * agents * final_learner.final_tasks() * last_task_s)
    share = evaluating_s / (evaluating_s + training_s)
    result = {
        "benchmark": "one image evaluation round (digits, 4 agents, ring, 5-way 1-shot, 10 queries, Conv-4 64 filters, "
                     "eval-tasks 100 a source, steps 0/1/10, float32) through flower-difmaml run --engine vectorized, "
                     "against a bare evaluation (per agent, vmap over tasks in chunks of 25)",
        "device": "cpu", "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "repeats": args.repeats,
        "engine_evaluation_s": engine, "bare_evaluation_s": bare,
        "median_s": {"engine": statistics.median(engine), "bare": statistics.median(bare)},
        "engine_over_bare": statistics.median(engine) / statistics.median(bare),
        "accuracy_max_difference": agreement,
        "engine_peak_rss_gb": max(peaks),
        "evaluation_chunk_tasks": learner.evaluation_chunk,
        "default_image_setting": {
            "keys": "task='digits' (10 agents, 5-way 10-shot, 10 queries, 10 tasks an agent a round, 500 rounds, "
                    "evaluation every 50 on eval-tasks 20 a source, the last on final-eval-tasks 600)",
            "peak_rss_gb_10_agents": memory["peak_rss_gb"],
            "evaluation_chunk_tasks": final_learner.evaluation_chunk, "training_chunk_tasks": final_learner.train_chunk,
            "training_task_s": train_task_s, "evaluation_task_s": eval_task_s, "last_evaluation_task_s": last_task_s,
            "eval_tasks_per_agent": eval_tasks, "final_tasks_per_agent": final_learner.final_tasks(),
            "run_training_s": training_s, "run_evaluating_s": evaluating_s, "share_of_time_evaluating": share,
        },
        "torch": torch.__version__, "machine": f"{platform.machine()}, cpu",
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
