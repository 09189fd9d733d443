"""The engine that reaches agents through Flower messages (thin: encode, send, decode).

Replies are pulled with a short exponential back-off (1 ms up to 20 ms) instead of the
grid's fixed 0.1 s sleep, so a round costs the engine's pick-up plus the agents' compute.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from .records import model_record, model_vector
from .strategies.rounds import TrainReplies


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


class FlowerAgents:
    """Agents ``k = 0..N-1`` on the Flower nodes ``node_ids[k]``."""

    def __init__(self, grid: Grid, node_ids: Sequence[int], timeout: float) -> None:
        self.grid = grid
        self.node_ids = list(node_ids)
        self.agent_of = {node_id: k for k, node_id in enumerate(self.node_ids)}
        self.timeout = timeout

    def _message(self, agent: int, model: np.ndarray, message_type: str, config: dict) -> Message:
        content = RecordDict({"model": model_record(model), "config": ConfigRecord(config)})
        return Message(content, self.node_ids[agent], message_type, group_id=str(config["round"]))

    def _send(self, messages: list[Message], what: str) -> dict[int, Message]:
        """Replies keyed by agent; an error or a missing reply stops the run, naming the agent."""
        out = {}
        for reply in exchange(self.grid, messages, self.timeout):
            agent = self.agent_of[reply.metadata.src_node_id]
            if reply.has_error():
                raise RuntimeError(f"{what}: agent {agent} failed: {reply.error.reason}")
            out[agent] = reply
        if len(out) != len(messages):
            raise RuntimeError(f"{what}: {len(messages) - len(out)} of {len(messages)} agents did not reply")
        return out

    def train(self, round_: int, plan: dict[int, np.ndarray]) -> TrainReplies:
        messages = [self._message(k, model, MessageType.TRAIN, {"round": round_}) for k, model in plan.items()]
        replies = self._send(messages, f"round {round_} train")
        metrics = {k: r.content["metrics"] for k, r in replies.items()}
        return TrainReplies(
            models={k: model_vector(r.content["model"]) for k, r in replies.items()},
            num_tasks={k: int(m["num-tasks"]) for k, m in metrics.items()},
            losses={k: float(m["train-loss"]) for k, m in metrics.items()},
            agent_seconds=sum(float(m["compute-seconds"]) for m in metrics.values()),
        )

    def evaluate(self, round_: int, models: np.ndarray, steps: Sequence[int]) -> dict[str, np.ndarray]:
        config = {"round": round_, "steps": list(steps)}
        messages = [self._message(k, models[k], MessageType.EVALUATE, config) for k in range(len(self.node_ids))]
        replies = self._send(messages, f"round {round_} evaluate")
        return {
            source: np.array([replies[k].content["metrics"][f"{source}-mse"] for k in range(len(self.node_ids))])
            for source in ("full", "own")
        }
