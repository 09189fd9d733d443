"""The round loop, for any engine: train every round, evaluate on schedule, record.

An engine carries a strategy's plan to the agents and brings back what they computed:
``FlowerAgents`` (messages through a Flower grid) or ``VectorizedAgents`` (all agents in
one ``vmap`` in this process). Both run the same learner code on the same seeded tasks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..learner import EVAL_STEPS, REPORTED_STEPS
from ..sim.results import RunRecorder, evaluation_metrics
from .base import MetaStrategy


@dataclass
class TrainReplies:
    """What the agents that trained sent back: adapted models, task counts, meta-losses,
    and the seconds the agents spent computing (summed over agents)."""

    models: dict[int, np.ndarray]
    num_tasks: dict[int, int]
    losses: dict[int, float]
    agent_seconds: float


class Engine(Protocol):
    def train(self, round_: int, plan: dict[int, np.ndarray]) -> TrainReplies:
        """Each planned agent adapts from its model on its own tasks of ``round_``."""
        ...

    def evaluate(self, round_: int, models: np.ndarray, steps: Sequence[int]) -> dict[str, np.ndarray]:
        """Every agent's MSE after ``steps`` adaptation steps: {"full"|"own": (N, len(steps))}."""
        ...


def progress_line(round_: int, num_rounds: int, line: dict, elapsed: float) -> str:
    eta = elapsed / max(round_, 1) * (num_rounds - round_)
    return (
        f"[round {round_}/{num_rounds}] train-loss {line.get('train-loss', float('nan')):.4f} "
        f"full-mse-1 {line['full-mse-1']:.4f} full-mse-10 {line['full-mse-10']:.4f} "
        f"own-mse-1 {line['own-mse-1']:.4f} disagreement {line['disagreement']:.2e} "
        f"| {elapsed:.1f} s, ETA {eta:.0f} s"
    )


def run_rounds(
    strategy: MetaStrategy,
    engine: Engine,
    recorder: RunRecorder,
    *,
    num_rounds: int,
    eval_every: int,
    progress: Callable[[str], None] = print,
) -> None:
    """Round 0 evaluates the initial models; rounds 1..R train, and evaluate every
    ``eval_every`` rounds and at the end (the last evaluation with the full 0..10 curve)."""
    start = time.perf_counter()

    def evaluate(round_: int, steps: Sequence[int]) -> dict:
        models = strategy.current_models()
        return evaluation_metrics(engine.evaluate(round_, models, steps), steps, models)

    recorder.record(0, evaluate(0, REPORTED_STEPS))
    for round_ in range(1, num_rounds + 1):
        replies = engine.train(round_, strategy.train_plan(round_))
        strategy.aggregate_train(round_, replies.models, replies.num_tasks)
        line: dict = {
            "train-loss": float(np.mean(list(replies.losses.values()))),
            "replies": len(replies.models),
            "agent-seconds": round(replies.agent_seconds, 6),
        }
        if round_ % eval_every == 0 or round_ == num_rounds:
            line.update(evaluate(round_, EVAL_STEPS if round_ == num_rounds else REPORTED_STEPS))
            progress(progress_line(round_, num_rounds, line, time.perf_counter() - start))
        recorder.record(round_, line)
