"""Agents reached through Flower messages (thin: encode, send, decode).

Replies are pulled with a short exponential back-off (1 ms up to 20 ms) instead of the
grid's fixed 0.1 s sleep, so a round costs the engine's pick-up plus the agents' compute.
An error reply, no reply within ``reply-timeout``, or a reply that cannot be decoded makes
the agent a failed one for that message; the round loop goes on without it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from ..errors import ConfigError
from ..runner.rounds import CombineReplies, TrainReplies
from ..strategies.base import CombineRequest
from .records import (
    COMBINE, NEIGHBOURS, OPTIMIZER_STATE, PROBLEM, RUNNING_LOSSES, model_record, model_vector, models_record,
)

DISCOVERY_TIMEOUT = 120.0  # seconds to wait for every agent's node to connect


def exchange(grid: Grid, messages: list[Message], timeout: float) -> dict[int, Message]:
    """Push ``messages`` and pull their replies until all came or ``timeout`` s passed.

    Returns {index in ``messages``: reply}. Replies are matched by the id of the message
    they answer: an error reply the SuperLink makes for a node that went away comes from
    the SuperLink, not from that node.
    """
    ids = grid.push_messages(messages)  # in the order of ``messages``; None where a push failed
    index_of = {message_id: i for i, message_id in enumerate(ids) if message_id}
    pending = set(index_of)
    replies: dict[int, Message] = {}
    deadline = time.monotonic() + timeout
    delay = 0.001
    while pending and time.monotonic() < deadline:
        got = list(grid.pull_messages(pending))
        for reply in got:
            message_id = reply.metadata.reply_to_message_id
            pending.discard(message_id)
            replies[index_of[message_id]] = reply
        if got:
            delay = 0.001
        elif pending:
            time.sleep(delay)
            delay = min(2 * delay, 0.02)
    return replies


def discover_agents(grid: Grid, timeout: float = DISCOVERY_TIMEOUT) -> list[int]:
    """Node ids in agent order: ask every node its ``partition-id`` once (a query message).

    Waits until ``num-partitions`` distinct agents have answered; two nodes claiming one
    partition, nodes that disagree on ``num-partitions``, and a node that cannot build its
    agent (its ``problem``: no data, no such device) are ConfigErrors.
    """
    deadline = time.monotonic() + timeout
    agents: dict[int, int] = {}
    asked: set[int] = set()
    expected: set[int] = set()
    while time.monotonic() < deadline:
        new = [n for n in grid.get_node_ids() if n not in asked]
        messages = [Message(RecordDict(), n, MessageType.QUERY) for n in new]
        asked.update(new)
        for i, reply in exchange(grid, messages, max(1.0, deadline - time.monotonic())).items():
            node_id = messages[i].metadata.dst_node_id
            if reply.has_error():
                raise RuntimeError(f"node {node_id} failed to identify: {reply.error.reason}")
            record = reply.content["agent"]
            agent, count = int(record["partition-id"]), int(record["num-partitions"])
            if PROBLEM in record:
                raise ConfigError(f"{record[PROBLEM]} (on the node of agent {agent})")
            expected.add(count)
            if len(expected) > 1:
                raise ConfigError(f"num-partitions: nodes disagree on the number of agents: {sorted(expected)}")
            if agent in agents:
                raise ConfigError(f"partition-id: two nodes claim agent {agent}")
            if not 0 <= agent < count:
                raise ConfigError(f"partition-id: {agent} out of range; allowed: 0..{count - 1}")
            agents[agent] = node_id
        if expected and len(agents) == next(iter(expected)):
            return [agents[k] for k in range(len(agents))]
        time.sleep(0.5)
    raise TimeoutError(f"only {len(agents)} of {sorted(expected) or '?'} agents connected within {timeout} s")


class FlowerAgents:
    """Agents ``k = 0..N-1`` on the Flower nodes ``node_ids[k]``.

    With ``keep_states`` (checkpointing with a stateful meta-optimizer) every training reply
    carries the agent's meta-optimizer state, and the latest one of each agent is kept here
    for the checkpoint; on resume each agent gets its state back with its next message.
    """

    def __init__(
        self,
        grid: Grid,
        node_ids: Sequence[int],
        timeout: float,
        keep_states: bool = False,
        evaluation_keys: Sequence[str] = ("full-mse", "own-mse"),
    ) -> None:
        self.grid = grid
        self.evaluation_keys = tuple(evaluation_keys)
        self.node_ids = list(node_ids)
        self.agent_of = {node_id: k for k, node_id in enumerate(self.node_ids)}
        self.timeout = timeout
        self.keep_states = keep_states
        self.states: dict[int, dict[str, np.ndarray]] = {}
        self.states_to_send: dict[int, dict[str, np.ndarray]] = {}

    def _message(self, agent: int, model: np.ndarray, message_type: str, config: dict) -> Message:
        content = RecordDict({"model": model_record(model), "config": ConfigRecord(config)})
        if message_type == MessageType.TRAIN and agent in self.states_to_send:
            state = self.states_to_send[agent]
            content[OPTIMIZER_STATE] = ArrayRecord({n: torch.from_numpy(np.array(v)) for n, v in state.items()})
        return Message(content, self.node_ids[agent], message_type, group_id=str(config["round"]))

    def _send(self, messages: list[Message]) -> tuple[dict[int, Message], dict[int, str]]:
        """Replies keyed by agent, and why the other agents failed (error reply, time-out)."""
        replies, failed = {}, {}
        for i, reply in exchange(self.grid, messages, self.timeout).items():
            agent = self.agent_of[messages[i].metadata.dst_node_id]
            if reply.has_error():
                failed[agent] = reply.error.reason
            else:
                replies[agent] = reply
        for message in messages:
            agent = self.agent_of[message.metadata.dst_node_id]
            if agent not in replies and agent not in failed:
                failed[agent] = f"no reply within reply-timeout = {self.timeout} s"
        return replies, failed

    def train(self, round_: int, plan: dict[int, np.ndarray]) -> TrainReplies:
        config = {"round": round_, "return-state": self.keep_states}
        messages = [self._message(k, model, MessageType.TRAIN, config) for k, model in plan.items()]
        replies, failed = self._send(messages)
        out = TrainReplies({}, {}, {}, 0.0, failed)
        for k, reply in replies.items():
            try:
                metrics = reply.content["metrics"]
                out.models[k] = model_vector(reply.content["model"])
                out.num_tasks[k] = int(metrics["num-tasks"])
                out.losses[k] = float(metrics["train-loss"])
                out.agent_seconds += float(metrics["compute-seconds"])
                if OPTIMIZER_STATE in reply.content:
                    self.states[k] = {n: a.numpy() for n, a in reply.content[OPTIMIZER_STATE].items()}
            except (KeyError, TypeError, ValueError) as error:
                failed[k] = f"reply rejected: cannot decode it: {error!r}"
                for part in (out.models, out.num_tasks, out.losses):
                    part.pop(k, None)
                continue
            self.states_to_send.pop(k, None)
        return out

    def combine(self, round_: int, plan: dict[int, CombineRequest]) -> CombineReplies:
        """A ``train.combine`` message to each planned agent with the phi_l that reached it
        (and its running losses, on resume); the reply is its w_k and running losses."""
        messages = []
        for k, request in plan.items():
            content = RecordDict({NEIGHBOURS: models_record(request.models), "config": ConfigRecord({"round": round_})})
            if request.running_losses is not None:
                content[RUNNING_LOSSES] = model_record(request.running_losses)
            messages.append(Message(content, self.node_ids[k], COMBINE, group_id=str(round_)))
        replies, failed = self._send(messages)
        out = CombineReplies({}, {}, {}, failed)
        for k, reply in replies.items():
            try:
                model = model_vector(reply.content["model"])
                running = model_vector(reply.content[RUNNING_LOSSES])
                kept = [int(l) for l in reply.content["metrics"]["kept"]]
            except (KeyError, TypeError, ValueError) as error:
                failed[k] = f"reply rejected: cannot decode it: {error!r}"
                continue
            out.models[k], out.running_losses[k], out.kept[k] = model, running, kept
        return out

    def evaluate(self, round_: int, models: np.ndarray, steps: Sequence[int]) -> dict[str, np.ndarray]:
        """NaN rows for agents that failed or sent something else than len(steps) numbers."""
        config = {"round": round_, "steps": list(steps)}
        messages = [self._message(k, models[k], MessageType.EVALUATE, config) for k in range(len(self.node_ids))]
        replies, _ = self._send(messages)
        out = {key: np.full((len(self.node_ids), len(steps)), np.nan) for key in self.evaluation_keys}
        for k, reply in replies.items():
            for key, curves in out.items():
                try:
                    curves[k] = np.asarray(reply.content["metrics"][key], dtype=np.float64)
                except (KeyError, TypeError, ValueError):
                    pass
        return out

    def optimizer_states(self) -> dict[int, dict[str, np.ndarray]]:
        return {**self.states_to_send, **self.states}

    def load_optimizer_states(self, states: dict[int, dict[str, np.ndarray]]) -> None:
        self.states_to_send = dict(states)
