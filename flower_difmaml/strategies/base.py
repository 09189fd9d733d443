"""What every meta-learning strategy holds and sends: one model per agent.

Flower's stock ``Strategy`` assumes one global ``ArrayRecord`` and evaluates every round;
decentralized agents have N models and evaluate every ``eval-every`` rounds, so these
strategies have hooks of their own, in the same spirit: ``train_messages`` builds each
agent's message, ``aggregate_train`` takes the replies, ``current_models`` says what
each agent's model is now (what evaluation and the disagreement metric use).
Models are flat float64 vectors (see ``records.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
from flwr.app import ConfigRecord, Message, MessageType, RecordDict

from ..records import model_record


class MetaStrategy(ABC):
    """Agents ``k = 0..N-1`` live on the Flower nodes ``node_ids[k]``."""

    name: str

    def __init__(self, node_ids: Sequence[int]) -> None:
        self.node_ids = list(node_ids)

    @property
    def num_agents(self) -> int:
        return len(self.node_ids)

    @abstractmethod
    def train_messages(self, round_: int) -> list[Message]:
        """The round's train messages (content: ``model`` to adapt from, ``config``)."""

    @abstractmethod
    def aggregate_train(self, round_: int, models: dict[int, np.ndarray], num_tasks: dict[int, int]) -> None:
        """Take the replies' models (agent -> flat vector) and their number of tasks."""

    @abstractmethod
    def current_models(self) -> np.ndarray:
        """Every agent's current model w_k, shape (N, P)."""

    def evaluate_messages(self, round_: int, steps: Sequence[int]) -> list[Message]:
        """Ask every agent for the MSE of its current model after ``steps`` adaptation steps."""
        models = self.current_models()
        return [
            self.message(k, models[k], MessageType.EVALUATE, {"round": round_, "steps": list(steps)})
            for k in range(self.num_agents)
        ]

    def message(self, agent: int, model: np.ndarray, message_type: str, config: dict) -> Message:
        content = RecordDict({"model": model_record(model), "config": ConfigRecord(config)})
        return Message(content, self.node_ids[agent], message_type, group_id=str(config["round"]))
