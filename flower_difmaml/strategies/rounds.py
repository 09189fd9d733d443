"""The round loop, for any engine: train every round, evaluate on schedule, record.

An engine carries a strategy's plan to the agents and brings back what they computed:
``FlowerAgents`` (messages through a Flower grid) or ``VectorizedAgents`` (all agents in
one ``vmap`` in this process). Both run the same learner code on the same seeded tasks.
A reply that is missing (error, time-out) or malformed (NaN/Inf, wrong shape or dtype)
counts as a failed agent; the strategy goes on with the replies it got.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..faults import INJECTED_FAILURE
from ..learner import EVAL_STEPS, REPORTED_STEPS
from ..sim.results import RunRecorder, evaluation_metrics
from .base import MetaStrategy

MAX_SILENT_ROUNDS = 10  # rounds in a row without a single valid reply stop the run


@dataclass
class TrainReplies:
    """What the agents that trained sent back: adapted models, task counts, meta-losses,
    the seconds the agents spent computing (summed over agents), and why the others failed."""

    models: dict[int, np.ndarray]
    num_tasks: dict[int, int]
    losses: dict[int, float]
    agent_seconds: float
    failed: dict[int, str] = field(default_factory=dict)


class Engine(Protocol):
    def train(self, round_: int, plan: dict[int, np.ndarray]) -> TrainReplies:
        """Each planned agent adapts from its model on its own tasks of ``round_``."""
        ...

    def evaluate(self, round_: int, models: np.ndarray, steps: Sequence[int]) -> dict[str, np.ndarray]:
        """Every agent's MSE after ``steps`` adaptation steps: {"full"|"own": (N, len(steps))};
        NaN rows for agents that did not answer."""
        ...

    def optimizer_states(self) -> dict[int, dict[str, np.ndarray]]:
        """Each agent's latest meta-optimizer state (agents without one are left out)."""
        ...

    def load_optimizer_states(self, states: dict[int, dict[str, np.ndarray]]) -> None:
        """Agents go on from these states (resume)."""
        ...


def reply_problem(model: np.ndarray, size: int) -> str | None:
    """Why a replied model cannot be used, or None: it must be a finite float64 vector of ``size``."""
    if not isinstance(model, np.ndarray) or model.dtype != np.float64:
        return f"model dtype {getattr(model, 'dtype', type(model).__name__)}, expected float64"
    if model.shape != (size,):
        return f"model shape {model.shape}, expected ({size},)"
    if not np.isfinite(model).all():
        return "model has NaN or Inf entries"
    return None


def checked(replies: TrainReplies, size: int) -> TrainReplies:
    """``replies`` without the malformed models, which are moved to ``failed``."""
    failed = dict(replies.failed)
    for agent, model in replies.models.items():
        if (problem := reply_problem(model, size)) is not None:
            failed[agent] = f"reply rejected: {problem}"
    keep = [k for k in replies.models if k not in failed]
    return TrainReplies(
        models={k: replies.models[k] for k in keep},
        num_tasks={k: replies.num_tasks[k] for k in keep},
        losses={k: replies.losses[k] for k in keep},
        agent_seconds=replies.agent_seconds,
        failed=failed,
    )


def progress_line(round_: int, num_rounds: int, line: dict, elapsed: float, done: int) -> str:
    """One line per evaluation round; ``done`` rounds took ``elapsed`` s (for the ETA)."""
    eta = elapsed / max(done, 1) * (num_rounds - round_)
    numbers = " ".join(
        f"{key} {'n/a' if line.get(key) is None else format(line[key], '.4f')}"
        for key in ("train-loss", "full-mse-1", "full-mse-10", "own-mse-1")
    )
    return f"[round {round_}/{num_rounds}] {numbers} disagreement {line['disagreement']:.2e} | {elapsed:.1f} s, ETA {eta:.0f} s"


def run_rounds(
    strategy: MetaStrategy,
    engine: Engine,
    recorder: RunRecorder,
    *,
    num_rounds: int,
    eval_every: int,
    start_round: int = 1,
    checkpoint: Callable[[int], None] | None = None,
    progress: Callable[[str], None] = print,
) -> None:
    """Round 0 evaluates the initial models; rounds 1..R train, and evaluate every
    ``eval_every`` rounds and at the end (the last evaluation with the full 0..10 curve).

    A resumed run starts at ``start_round``; ``checkpoint(round)`` is called after each
    round's line is written. Failed agents are counted per round (``failed``) and logged
    unless the failure was injected (``fail-prob``).
    """
    start = time.perf_counter()
    size = strategy.current_models().shape[1]
    silent = 0

    def evaluate(round_: int, steps: Sequence[int]) -> dict:
        models = strategy.current_models()
        return evaluation_metrics(engine.evaluate(round_, models, steps), steps, models)

    if start_round <= 1:
        recorder.record(0, evaluate(0, REPORTED_STEPS))
    for round_ in range(start_round, num_rounds + 1):
        replies = checked(engine.train(round_, strategy.train_plan(round_)), size)
        for agent, reason in sorted(replies.failed.items()):
            if reason != INJECTED_FAILURE:
                progress(f"warning: round {round_}: agent {agent} failed: {reason}")
        silent = silent + 1 if replies.failed and not replies.models else 0
        if silent >= MAX_SILENT_ROUNDS:
            reasons = sorted(set(replies.failed.values()))
            raise RuntimeError(f"no agent replied in {silent} rounds in a row (up to round {round_}): {'; '.join(reasons)}")
        strategy.aggregate_train(round_, replies.models, replies.num_tasks)
        line: dict = {
            "train-loss": float(np.mean(list(replies.losses.values()))) if replies.losses else None,
            "replies": len(replies.models),
            "failed": len(replies.failed),
            **strategy.round_metrics(round_),
            "agent-seconds": round(replies.agent_seconds, 6),
        }
        if replies.failed:
            line["failed-agents"] = sorted(replies.failed)
        if round_ % eval_every == 0 or round_ == num_rounds:
            line.update(evaluate(round_, EVAL_STEPS if round_ == num_rounds else REPORTED_STEPS))
            elapsed = time.perf_counter() - start
            progress(progress_line(round_, num_rounds, line, elapsed, round_ - start_round + 1))
        recorder.record(round_, line)
        if checkpoint is not None:
            checkpoint(round_)
