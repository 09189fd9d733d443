"""The round loop, for any engine: train every round, evaluate on schedule, record.

``Agents`` carry a strategy's plan to the agents and bring back what they computed:
``FlowerAgents`` (messages through a Flower grid to each node's ``AgentBlock``) or one
``AgentBlock`` of all agents in this process (the vectorised engine). Both run the same
block code on the same seeded tasks.
A reply that is missing (error, time-out) or malformed (NaN/Inf, wrong shape or dtype)
counts as a failed agent; the strategy goes on with the replies it got. Rules that
combine on the agents (resilient) add a second exchange after training. Byzantine agents
are left out of every mean (train loss, MSE, disagreement); their MSE is shown apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import numpy as np
import torch

from ..agent_models import AgentModels, AgentValues, dtype_of, on_host, values_of
from ..block import (
    CombineReplies, CombineRequest, EvaluateReplies, EvaluateRequest, TrainReplies, TrainRequest,
)
from ..network.faults import INJECTED_FAILURE
from ..strategies.base import MetaStrategy, NeighbourModels
from .results import RunRecorder, evaluation_metrics
from .stopping import RunStopped

MAX_SILENT_ROUNDS = 10  # rounds in a row without a single valid reply stop the run


class Agents(Protocol):
    """How the round loop reaches the agents: an ``AgentBlock`` of all N agents (the
    vectorised engine) or ``FlowerAgents`` (each SuperNode's block, over Flower messages)."""

    def train(self, request: TrainRequest) -> TrainReplies:
        """Each asked agent adapts from its model on its own tasks of the round."""
        ...

    def evaluate(self, request: EvaluateRequest) -> EvaluateReplies:
        """Each asked agent's metrics after the asked adaptation steps (those that answered)."""
        ...

    def combine(self, request: CombineRequest) -> CombineReplies:
        """Each asked agent combines the models it got, on its side (resilient rule)."""
        ...

    def optimizer_states(self) -> dict[int, dict[str, np.ndarray]]:
        """Each agent's latest meta-optimizer state (agents without one are left out)."""
        ...

    def load_optimizer_states(self, states: dict[int, dict[str, np.ndarray]]) -> None:
        """Agents go on from these states (resume)."""
        ...


def evaluation_arrays(
    replied: dict[str, dict[int, np.ndarray]], keys: Sequence[str], num_agents: int, num_steps: int
) -> dict[str, np.ndarray]:
    """{key: (N, len(steps))} from the replies' ``metrics`` (or ``sd``); NaN rows for agents
    that did not answer, or answered something other than ``num_steps`` numbers."""
    out = {key: np.full((num_agents, num_steps), np.nan) for key in keys}
    for key, curves in out.items():
        for agent, values in replied.get(key, {}).items():
            values = np.asarray(values, dtype=np.float64)
            if values.shape == (num_steps,) and 0 <= agent < num_agents:
                curves[agent] = values
    return out


def reply_problem(model: np.ndarray, size: int, dtype: np.dtype = np.dtype(np.float64)) -> str | None:
    """Why a replied model cannot be used, or None: it must be a finite vector of ``size``
    in the run's ``dtype``."""
    if not isinstance(model, np.ndarray) or model.dtype != dtype:
        return f"model dtype {getattr(model, 'dtype', type(model).__name__)}, expected {np.dtype(dtype).name}"
    if model.shape != (size,):
        return f"model shape {model.shape}, expected ({size},)"
    if not np.isfinite(model).all():
        return "model has NaN or Inf entries"
    return None


def _all_finite(rows: np.ndarray | torch.Tensor) -> bool:
    """No NaN or Inf in ``rows`` (a tensor checked on its device)."""
    return bool(torch.isfinite(rows).all() if isinstance(rows, torch.Tensor) else np.isfinite(rows).all())


def rejected(models: Mapping[int, np.ndarray], size: int, dtype: np.dtype = np.dtype(np.float64)) -> dict[int, str]:
    """Agent -> why its model cannot be used, for the malformed ones. Stacked models
    (``AgentModels``, what blocks reply) are checked whole: dtype and shape once, NaN/Inf a
    row in one call."""
    if isinstance(models, AgentModels) and isinstance(models.rows, np.ndarray | torch.Tensor):
        rows = models.rows
        if not len(models) or (dtype_of(rows) == dtype and tuple(rows.shape[1:]) == (size,) and _all_finite(rows)):
            return {}
        models = AgentModels(models.ids, on_host(rows))  # the reasons, row by row
    problems = {agent: reply_problem(model, size, dtype) for agent, model in models.items()}
    return {agent: f"reply rejected: {problem}" for agent, problem in problems.items() if problem is not None}


def checked(replies: TrainReplies, size: int, dtype: np.dtype = np.dtype(np.float64)) -> TrainReplies:
    """``replies`` without the malformed models, which are moved to ``failed`` (the replies
    themselves where every model is well formed)."""
    bad = rejected(replies.models, size, dtype)
    if not bad:
        return replies
    keep = [k for k in replies.models if k not in bad]
    models = replies.models
    return TrainReplies(
        models=models.select(np.isin(models.ids, keep)) if isinstance(models, AgentModels) else {k: models[k] for k in keep},
        num_tasks={k: replies.num_tasks[k] for k in keep},
        losses={k: replies.losses[k] for k in keep},
        agent_seconds=replies.agent_seconds,
        failed={**replies.failed, **bad},
        states=replies.states,
    )


def mean_loss(losses: Mapping[int, float], byzantine: frozenset[int] = frozenset()) -> float | None:
    """The mean of the agents' meta-losses, Byzantine agents left out (None: no loss)."""
    ids = losses.ids if isinstance(losses, AgentValues) else np.fromiter(losses, dtype=np.int64, count=len(losses))
    values = values_of(losses, ids)[~np.isin(ids, list(byzantine))]
    return float(np.mean(values)) if len(values) else None


def progress_line(
    round_: int, num_rounds: int, line: dict, elapsed: float, done: int,
    keys: Sequence[str] = ("full-mse-1", "full-mse-10", "own-mse-1"),
) -> str:
    """One line per evaluation round with ``keys``; ``done`` rounds took ``elapsed`` s (for the ETA)."""
    eta = elapsed / max(done, 1) * (num_rounds - round_)
    def shown(key: str) -> str:
        if line.get(key) is None:
            return f"{key} n/a"
        interval = line.get(f"{key}-ci95")
        return f"{key} {line[key]:.4f}" + ("" if interval is None else f" ±{interval:.2g}")

    numbers = " ".join(shown(key) for key in ("train-loss", *keys))
    return f"[round {round_}/{num_rounds}] {numbers} disagreement {line['disagreement']:.2e} | {elapsed:.1f} s, ETA {eta:.0f} s"


def run_rounds(
    strategy: MetaStrategy,
    agents: Agents,
    recorder: RunRecorder,
    *,
    num_rounds: int,
    eval_every: int,
    start_round: int = 0,
    checkpoint: Callable[[int], None] | None = None,
    stop: Callable[[], bool] | None = None,
    byzantine: frozenset[int] = frozenset(),
    reported_steps: Sequence[int] = (0, 1, 10),
    curve_steps: Sequence[int] = tuple(range(11)),
    headline: str = "mse",
    progress: Callable[[str], None] = print,
    truth: Callable[[np.ndarray], dict[str, float]] | None = None,
    groups: Sequence[int] | None = None,
    evaluation_keys: Sequence[str] = ("full-mse", "own-mse"),
    eval_tasks: tuple[int, int] = (100, 600),
    final_keys: Sequence[str] = (),
    evaluation_classes: Mapping[str, str] | None = None,
) -> None:
    """Round 0 evaluates the initial models; rounds 1..R train, and evaluate every
    ``eval_every`` rounds (after ``reported_steps`` adaptation steps) and at the end (after
    each of ``curve_steps``: the adaptation curve). Progress lines show the ``headline`` metric.

    A new run starts at ``start_round`` 0, a resumed one at the round after its checkpoint;
    ``checkpoint(round)`` is called after each round's line is written (round 0 included).
    When ``stop()`` turns true (a stop signal, ``StopSignals``), the loop ends after the
    round in flight by raising ``RunStopped(round)`` (after the last round: it just ends).
    Failed agents are counted per round (``failed``) and logged unless the failure was
    injected (``fail-prob``). ``byzantine`` agents are left out
    of the means. ``truth(models)`` adds what a family that knows the true models measures
    (``msd``, ...) to every evaluation. ``groups`` (agents' groups, heterogeneity
    ``clusters``) adds the share of kept links inside the group to an agent-side combination.
    ``evaluation_keys`` are what an evaluation reports per agent (``<full|own>-<metric>``),
    on ``eval_tasks`` tasks per agent and source: (every evaluation, the last one); the last
    one reports ``final_keys`` too (``test-full-acc``, ...: a family's meta-test classes where
    the others are its meta-validation ones). ``evaluation_classes`` (source -> classes) goes
    into every evaluation line as ``classes``.
    """
    start = time.perf_counter()
    size, dtype = np.shape(strategy.current_models())[1], dtype_of(strategy.current_models())
    shown = (f"full-{headline}-1", f"full-{headline}-{max(reported_steps)}", f"own-{headline}-1")
    silent = 0

    def evaluate(round_: int, steps: Sequence[int], tasks: int) -> dict:
        rows = strategy.current_models()
        replies = agents.evaluate(EvaluateRequest(round_, AgentModels(np.arange(len(rows)), rows), tuple(steps), tasks))
        models = on_host(rows)  # results leave the device
        keys = (*evaluation_keys, *(final_keys if round_ == num_rounds else ()))
        curves = evaluation_arrays(replies.metrics, keys, len(models), len(steps))
        sd = evaluation_arrays(replies.sd, keys, len(models), len(steps))
        metrics = evaluation_metrics(curves, steps, reported_steps, rows, byzantine, sd, tasks)  # on the models' device
        classes = {s: c for s, c in (evaluation_classes or {}).items() if any(k.startswith(f"{s}-") for k in keys)}
        return {**metrics, **(truth(models) if truth else {}), **({"classes": classes} if classes else {})}

    def warn(round_: int, failed: dict[int, str]) -> None:
        for agent, reason in sorted(failed.items()):
            if reason != INJECTED_FAILURE:
                progress(f"warning: round {round_}: agent {agent} failed: {reason}")

    def end_of(round_: int) -> None:
        if checkpoint is not None:
            checkpoint(round_)
        if stop is not None and stop() and round_ < num_rounds:  # the last round: the run ends as it is
            raise RunStopped(round_)

    if start_round == 0:
        recorder.record(0, evaluate(0, reported_steps, eval_tasks[0]))
        end_of(0)
    for round_ in range(max(start_round, 1), num_rounds + 1):
        replies = checked(agents.train(TrainRequest(round_, strategy.train_plan(round_))), size, dtype)
        warn(round_, replies.failed)
        silent = silent + 1 if replies.failed and not replies.models else 0
        if silent >= MAX_SILENT_ROUNDS:
            reasons = sorted(set(replies.failed.values()))
            raise RuntimeError(f"no agent replied in {silent} rounds in a row (up to round {round_}): {'; '.join(reasons)}")
        strategy.aggregate_train(round_, replies.models, replies.num_tasks)
        line: dict = {
            "train-loss": mean_loss(replies.losses, byzantine),
            "replies": len(replies.models),
            "failed": len(replies.failed),
            **strategy.round_metrics(round_),
            "agent-seconds": round(replies.agent_seconds, 6),
        }
        if combine_plan := strategy.combine_plan(round_):
            line.update(combine_on_agents(strategy, agents, round_, combine_plan, size, byzantine, warn, groups))
        if replies.failed:
            line["failed-agents"] = sorted(replies.failed)
        if round_ % eval_every == 0 or round_ == num_rounds:
            last = round_ == num_rounds
            line.update(evaluate(round_, curve_steps if last else reported_steps, eval_tasks[1] if last else eval_tasks[0]))
            elapsed = time.perf_counter() - start
            progress(progress_line(round_, num_rounds, line, elapsed, round_ - max(start_round, 1) + 1, shown))
        recorder.record(round_, line)
        end_of(round_)


def combine_on_agents(
    strategy: MetaStrategy,
    agents: Agents,
    round_: int,
    plan: dict[int, NeighbourModels],
    size: int,
    byzantine: frozenset[int],
    warn: Callable[[int, dict[int, str]], None],
    groups: Sequence[int] | None = None,
) -> dict:
    """The second exchange of a round; returns its metrics: how many agents combined, how
    many models normal agents kept on average (their own included), how many (normal agent,
    Byzantine neighbour) links they kept, and with ``groups`` the share of the links to
    others they kept that stay inside the agent's group (``kept-same-group``)."""
    replies = agents.combine(CombineRequest(round_, plan))
    failed = {**replies.failed, **rejected(replies.models, size, dtype_of(strategy.current_models()))}
    warn(round_, failed)
    models = {k: m for k, m in replies.models.items() if k not in failed}
    strategy.aggregate_combine(round_, models, {k: replies.running_losses[k] for k in models})
    normal = [k for k in models if k not in byzantine]
    out = {
        "combined": len(models),
        "kept": float(np.mean([len(replies.kept[k]) for k in normal])) if normal else None,
        "byzantine-kept": sum(len(set(replies.kept[k]) & byzantine) for k in normal),
    }
    if groups is not None:
        same = [groups[l] == groups[k] for k in normal for l in replies.kept[k] if l != k]
        out["kept-same-group"] = float(np.mean(same)) if same else None
    return out
