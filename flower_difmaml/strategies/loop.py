"""The round loop: train every round, evaluate every ``eval-every`` rounds, record.

Replies are pulled with a short exponential back-off (1 ms up to 20 ms) instead of the
grid's fixed 0.1 s sleep, so a round costs the engine's pick-up plus the agents' compute.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from logging import INFO

import numpy as np
from flwr.app import Message
from flwr.common.logger import log
from flwr.serverapp import Grid

from ..learner import EVAL_STEPS, REPORTED_STEPS
from ..records import model_vector
from ..sim.results import RunRecorder, evaluation_metrics
from .base import MetaStrategy


def exchange(grid: Grid, messages: list[Message], timeout: float) -> list[Message]:
    """Push ``messages`` and pull their replies until all came or ``timeout`` s passed."""
    pending = set(grid.push_messages(messages))
    replies: list[Message] = []
    deadline = time.monotonic() + timeout
    delay = 0.001
    while pending and time.monotonic() < deadline:
        got = list(grid.pull_messages(pending))
        for reply in got:
            pending.discard(reply.metadata.reply_to_message_id)
        replies.extend(got)
        if got:
            delay = 0.001
        elif pending:
            time.sleep(delay)
            delay = min(2 * delay, 0.02)
    return replies


def _by_agent(strategy: MetaStrategy, replies: list[Message], expected: int, what: str) -> dict[int, Message]:
    """Replies keyed by agent; an error or a missing reply stops the run, naming the agent."""
    agent_of = {node_id: k for k, node_id in enumerate(strategy.node_ids)}
    out = {}
    for reply in replies:
        agent = agent_of[reply.metadata.src_node_id]
        if reply.has_error():
            raise RuntimeError(f"{what}: agent {agent} failed: {reply.error.reason}")
        out[agent] = reply
    if len(out) != expected:
        raise RuntimeError(f"{what}: {expected - len(out)} of {expected} agents did not reply")
    return out


def evaluate(strategy: MetaStrategy, grid: Grid, round_: int, steps: Sequence[int], timeout: float) -> dict:
    """Every agent's MSE after adaptation, and the disagreement of their models."""
    messages = strategy.evaluate_messages(round_, steps)
    replies = _by_agent(strategy, exchange(grid, messages, timeout), len(messages), f"round {round_} evaluate")
    curves = {
        source: np.array([replies[k].content["metrics"][f"{source}-mse"] for k in range(strategy.num_agents)])
        for source in ("full", "own")
    }
    return evaluation_metrics(curves, steps, strategy.current_models())


def run_rounds(
    strategy: MetaStrategy,
    grid: Grid,
    recorder: RunRecorder,
    *,
    num_rounds: int,
    eval_every: int,
    timeout: float,
    progress: Callable[[str], None] = lambda line: log(INFO, line),
) -> None:
    """Round 0 evaluates the initial models; rounds 1..R train, and evaluate every
    ``eval_every`` rounds and at the end (the last evaluation with the full 0..10 curve)."""
    start = time.perf_counter()
    recorder.record(0, evaluate(strategy, grid, 0, REPORTED_STEPS, timeout))
    for round_ in range(1, num_rounds + 1):
        messages = strategy.train_messages(round_)
        replies = _by_agent(strategy, exchange(grid, messages, timeout), len(messages), f"round {round_} train")
        metrics = {k: r.content["metrics"] for k, r in replies.items()}
        strategy.aggregate_train(
            round_,
            {k: model_vector(r.content["model"]) for k, r in replies.items()},
            {k: int(m["num-tasks"]) for k, m in metrics.items()},
        )
        line = {"train-loss": float(np.mean([m["train-loss"] for m in metrics.values()])), "replies": len(replies)}
        if round_ % eval_every == 0 or round_ == num_rounds:
            steps = EVAL_STEPS if round_ == num_rounds else REPORTED_STEPS
            line.update(evaluate(strategy, grid, round_, steps, timeout))
            elapsed = time.perf_counter() - start
            eta = elapsed / round_ * (num_rounds - round_)
            progress(
                f"[round {round_}/{num_rounds}] train-loss {line['train-loss']:.4f} "
                f"full-mse-1 {line['full-mse-1']:.4f} full-mse-10 {line['full-mse-10']:.4f} "
                f"own-mse-1 {line['own-mse-1']:.4f} disagreement {line['disagreement']:.2e} "
                f"| {elapsed:.1f} s, ETA {eta:.0f} s"
            )
        recorder.record(round_, line)
