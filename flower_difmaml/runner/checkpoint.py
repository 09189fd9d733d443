"""Checkpoint and resume: a run folder's ``checkpoint.npz`` (no Flower).

Every ``checkpoint-every`` rounds (and after the last) the round counter, the strategy's
state (all agents' models) and every agent's meta-optimizer state are written to a
temporary file that is then renamed over ``checkpoint.npz``, so a kill at any moment
leaves the previous checkpoint or the new one, never half of one. Tasks, failures and
dropped links are drawn from (seed, agent, round), so a resumed run makes the same
numbers as one that was never stopped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ConfigError, RunConfig
from .files import atomic_write
from .results import nothing_to_resume

CHECKPOINT = "checkpoint.npz"
MAY_CHANGE_ON_RESUME = ("num-agents", "num-rounds", "checkpoint-every", "reply-timeout", "results-dir", "run-name", "resume-from")


@dataclass
class Checkpoint:
    round: int
    strategy: dict[str, np.ndarray]
    optimizer: dict[int, dict[str, np.ndarray]]


def save_checkpoint(run_dir: Path, checkpoint: Checkpoint) -> None:
    """Write ``run_dir/checkpoint.npz`` atomically (temporary file, fsync, rename)."""
    arrays = {"round": np.array(checkpoint.round)}
    arrays.update({f"strategy/{name}": value for name, value in checkpoint.strategy.items()})
    for agent, state in checkpoint.optimizer.items():
        arrays.update({f"optimizer/{agent}/{name}": np.asarray(value) for name, value in state.items()})
    atomic_write(run_dir / CHECKPOINT, lambda handle: np.savez(handle, **arrays))


def load_checkpoint(run_dir: Path) -> Checkpoint:
    with np.load(run_dir / CHECKPOINT) as data:
        strategy: dict[str, np.ndarray] = {}
        optimizer: dict[int, dict[str, np.ndarray]] = {}
        for key in data.files:
            kind, _, rest = key.partition("/")
            if kind == "strategy":
                strategy[rest] = data[key]
            elif kind == "optimizer":
                agent, _, name = rest.partition("/")
                optimizer.setdefault(int(agent), {})[name] = data[key]
        return Checkpoint(int(data["round"]), strategy, optimizer)


def resume_point(config: RunConfig, num_agents: int) -> tuple[Path, Checkpoint]:
    """The run folder ``resume-from`` names and its checkpoint, after checking that this
    config continues that run: same keys (but those in ``MAY_CHANGE_ON_RESUME``), same
    number of agents, and rounds left to run. Raises ConfigError naming the key."""
    run_dir = Path(config.resume_from).expanduser().resolve()
    if run_dir.is_dir() and nothing_to_resume(run_dir):
        raise ConfigError(
            f"resume-from: {run_dir} has no {CHECKPOINT}: its run was killed before its first checkpoint; "
            f"allowed: a run folder with a checkpoint, or run it again from round 0 in that folder with "
            f"run-name='{run_dir.name}' results-dir='{run_dir.parent}' (no resume-from)"
        )
    for name in ("config.json", "metrics.jsonl", CHECKPOINT):
        if not (run_dir / name).is_file():
            raise ConfigError(
                f"resume-from: {run_dir} has no {name}; allowed: a run folder written with checkpoint-every > 0"
            )
    try:
        saved: dict[str, Any] = json.loads((run_dir / "config.json").read_text())
        checkpoint = load_checkpoint(run_dir)
    except (OSError, ValueError, KeyError) as error:
        raise ConfigError(f"resume-from: cannot read the run in {run_dir}: {error}") from None
    for key, value in config.to_mapping().items():
        if key not in MAY_CHANGE_ON_RESUME and key in saved and saved[key] != value:
            raise ConfigError(
                f"{key}: {value!r} differs from {saved[key]!r} of the run in resume-from={run_dir}; "
                f"allowed to change on resume: {', '.join(MAY_CHANGE_ON_RESUME)}"
            )
    if saved.get("num-agents", num_agents) != num_agents:
        raise ConfigError(f"resume-from: the run in {run_dir} has {saved['num-agents']} agents, not {num_agents}")
    if checkpoint.round >= config.num_rounds:
        raise ConfigError(
            f"num-rounds: {config.num_rounds}; the run in {run_dir} is checkpointed at round {checkpoint.round}; "
            f"allowed: > {checkpoint.round}"
        )
    return run_dir, checkpoint
