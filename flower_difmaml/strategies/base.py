"""What every meta-learning strategy holds: one model per agent, and the rule that moves them.

Flower's stock ``Strategy`` assumes one global ``ArrayRecord`` and evaluates every round;
decentralized agents have N models and evaluate every ``eval-every`` rounds, so these
strategies have hooks of their own, in the same spirit, and no I/O: ``train_plan`` says
which agents adapt this round and from which model, ``aggregate_train`` takes their
adapted models, ``combine_plan``/``aggregate_combine`` are a second exchange for rules
that combine on the agents (resilient: it needs the agent's own data), ``current_models``
says what each agent's model is now (what evaluation and the disagreement metric use),
``round_metrics`` adds what the rule did this round to metrics.jsonl, ``artifacts`` are arrays
it learned (the run folder gets them), ``state``/``load_state`` are what a checkpoint keeps.
An engine (Flower messages, or the in-process vectorised one) carries the plan to the
agents. Models are flat vectors in the run's dtype; a set of agents' models is a mapping
agent -> model, in the engines stacked (``AgentModels``: one array, no per-agent copies).

A strategy is built from the run's ``StrategySetup`` (``strategies.make_strategy``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..config import RunConfig


@dataclass(frozen=True)
class StrategySetup:
    """What a strategy is built from: the run config; the initial model w_0 every agent
    starts from (flat, in the run's dtype) and its layout (the model's tensors' ``names`` and
    ``shapes``, in the order of the flat vector); the combination matrix A of the graph
    (A[l, k] = a_lk; identity for non-coop, uniform weights on the closed neighbourhoods for
    the rules that weigh them themselves), or A_i as a function of the round where links
    drop; and a known task graph L (key ``graph-laplacian``, else None)."""

    config: RunConfig
    initial: np.ndarray
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    combination: sp.csc_array | Callable[[int], sp.csc_array]
    task_graph: sp.csc_array | None = None

    @property
    def num_agents(self) -> int:
        """N, the size of A."""
        return (self.combination(1) if callable(self.combination) else self.combination).shape[0]


@dataclass
class NeighbourModels:
    """What agent k needs to combine on its side: the adapted models phi_l that reached it
    (its own included), and, on resume only, its running losses to go on from."""

    models: dict[int, np.ndarray]
    running_losses: np.ndarray | None = None


class MetaStrategy(ABC):
    """The server-side rule for agents ``k = 0..N-1``; ``name`` labels its runs."""

    name: str
    # True where the rule's code works on torch tensors as on numpy arrays (``agent_models``'
    # helpers): the vectorised engine then keeps the models on the agents' device, round to round
    tensor_models: bool = False

    def __init__(self, num_agents: int) -> None:
        self.num_agents = num_agents

    @abstractmethod
    def train_plan(self, round_: int) -> Mapping[int, np.ndarray]:
        """Agent -> the model it adapts from in round ``round_`` (only the agents that train):
        a dict, or ``AgentModels`` (stacked rows: what the built-in rules give)."""

    @abstractmethod
    def aggregate_train(self, round_: int, models: Mapping[int, np.ndarray], num_tasks: Mapping[int, int]) -> None:
        """Take the adapted models (agent -> flat vector; ``AgentModels.of(models)`` stacks
        them, without a copy where they came stacked) and each agent's number of tasks."""

    def combine_plan(self, round_: int) -> dict[int, NeighbourModels]:
        """Agent -> what it combines on its side after training in round ``round_`` (none by default)."""
        return {}

    def aggregate_combine(
        self, round_: int, models: dict[int, np.ndarray], running_losses: dict[int, np.ndarray]
    ) -> None:
        """Take the models w_k the agents combined, and their running losses (for checkpoints)."""

    @abstractmethod
    def current_models(self) -> np.ndarray:
        """Every agent's current model w_k, shape (N, P) (with ``tensor_models``: the replies'
        kind, an array or a tensor on the agents' device)."""

    def round_metrics(self, round_: int) -> dict[str, float]:
        """Extra numbers for round ``round_``'s line in metrics.jsonl (none by default)."""
        return {}

    def artifacts(self) -> dict[str, np.ndarray]:
        """Arrays the rule learned, saved as ``<name>.npy`` in the run folder (none by default)."""
        return {}

    @abstractmethod
    def state(self) -> dict[str, np.ndarray]:
        """Everything the rule needs to go on from here (a checkpoint keeps it)."""

    @abstractmethod
    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Go on from ``state()`` of an earlier run with the same config."""
