"""The agents' blocks reached through Flower messages (thin: split, encode, send, decode, merge).

Node m hosts a contiguous block of the agents (``block.block_agents``); a request for some
agents becomes one message a node, with its agents' part, and the replies are merged. A
node's error reply, no reply within ``reply-timeout``, or a reply that cannot be decoded
fails all its asked agents for that message; the round loop goes on without them.

A node that went away and came back (a restarted SuperNode with the same ``partition-id``,
under a new node id or the old one) takes its agents back at the next round: before each
training exchange after a failure, nodes not seen before are asked who they are. A
restarted node has lost its agents' meta-optimizer states; where this side keeps them (a
checkpointing run with a stateful meta-optimizer), they are sent back with the agents'
next training message, so their Adam moments go on from their last reply; otherwise the
agents start again from the initial state.

Replies are pulled with a short exponential back-off (1 ms up to 20 ms) instead of the
grid's fixed 0.1 s sleep, so a round costs the engine's pick-up plus the agents' compute.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TypeVar

from flwr.app import Message, MessageType, RecordDict
from flwr.serverapp import Grid

from ..block import (
    CombineReplies, CombineRequest, EvaluateReplies, EvaluateRequest, OptimizerStates, TrainReplies, TrainRequest,
)
from ..errors import ConfigError
from . import codec

DISCOVERY_TIMEOUT = 120.0  # seconds to wait for every node to connect
REDISCOVERY_TIMEOUT = 10.0  # seconds to wait for new nodes to say who they are, after a failure

Part = TypeVar("Part")


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


@dataclass(frozen=True)
class Node:
    """A SuperNode and the agents it hosts."""

    node_id: int
    agents: range


def identify(grid: Grid, node_ids: list[int], timeout: float) -> dict[int, codec.NodeIdentity]:
    """Ask each node who it is (a query message); node id -> its answer, for those that answered."""
    messages = [Message(RecordDict(), n, MessageType.QUERY) for n in node_ids]
    answers = {}
    for i, reply in exchange(grid, messages, timeout).items():
        node_id = messages[i].metadata.dst_node_id
        if reply.has_error():
            raise RuntimeError(f"node {node_id} failed to identify: {reply.error.reason}")
        answers[node_id] = codec.decode_identity(reply.content)
    return answers


def discover_nodes(grid: Grid, timeout: float = DISCOVERY_TIMEOUT) -> tuple[list[Node], int]:
    """The nodes in partition order and the number of agents N they host together.

    Waits until ``num-partitions`` distinct partitions have answered. Nodes that disagree
    on ``num-partitions`` or on N, two nodes claiming one partition, a partition id out of
    range, and a node that cannot host its block (its ``problem``: more nodes than agents,
    no data, no such device) are ConfigErrors, raised before any training message.
    """
    deadline = time.monotonic() + timeout
    nodes: dict[int, Node] = {}
    asked: set[int] = set()
    counts: set[tuple[int, int]] = set()
    while time.monotonic() < deadline:
        new = [n for n in grid.get_node_ids() if n not in asked]
        asked.update(new)
        for node_id, node in identify(grid, new, max(1.0, deadline - time.monotonic())).items():
            if node.problem:
                raise ConfigError(f"{node.problem} (on the node of partition {node.partition})")
            counts.add((node.num_partitions, node.num_agents))
            if len({n for _, n in counts}) > 1:
                raise ConfigError(f"num-agents: nodes disagree on the number of agents: {sorted({n for _, n in counts})}")
            if len({m for m, _ in counts}) > 1:
                raise ConfigError(f"num-partitions: nodes disagree on the number of nodes: {sorted({m for m, _ in counts})}")
            if node.partition in nodes:
                agents = nodes[node.partition].agents
                raise ConfigError(
                    f"partition-id: two nodes claim partition {node.partition} (agents {agents.start}..{agents.stop - 1})"
                )
            nodes[node.partition] = Node(node_id, range(node.first, node.last))
        if counts and len(nodes) == next(iter(counts))[0]:
            num_agents = next(iter(counts))[1]
            hosted = sorted(k for node in nodes.values() for k in node.agents)
            if hosted != list(range(num_agents)):
                raise ConfigError(f"num-agents: the nodes' blocks do not cover agents 0..{num_agents - 1} once")
            return [nodes[m] for m in range(len(nodes))], num_agents
        time.sleep(0.5)
    expected = sorted({m for m, _ in counts}) or "?"
    raise TimeoutError(f"only {len(nodes)} of {expected} nodes connected within {timeout} s")


class FlowerAgents:
    """The run's agents on the Flower nodes ``nodes`` (each hosting a block).

    With ``keep_states`` (checkpointing with a stateful meta-optimizer) every training reply
    carries the agents' meta-optimizer states, and the latest one of each agent is kept here
    for the checkpoint; on resume, and after its node failed, each agent gets its state back
    with its next training message.
    """

    def __init__(self, grid: Grid, nodes: list[Node], timeout: float, keep_states: bool = False) -> None:
        self.grid = grid
        self.nodes = list(nodes)
        self.node_of = {k: m for m, node in enumerate(self.nodes) for k in node.agents}
        self.timeout = timeout
        self.keep_states = keep_states
        self.states: OptimizerStates = {}
        self.states_to_send: OptimizerStates = {}
        self.lost: set[int] = set()  # partitions whose node failed in the last exchange

    def _split(self, parts: Mapping[int, Part]) -> dict[int, dict[int, Part]]:
        """Agent -> part, as partition -> {agent -> part} (one message a node)."""
        out: dict[int, dict[int, Part]] = {}
        for k, part in parts.items():
            out.setdefault(self.node_of[k], {})[k] = part
        return out

    def _send(
        self, requests: dict[int, RecordDict], message_type: str, round_: int, decode: Callable[[RecordDict], Part]
    ) -> tuple[dict[int, Part], dict[int, str]]:
        """One message a partition; its decoded reply, and why the others failed."""
        partitions = list(requests)
        messages = [
            Message(requests[m], self.nodes[m].node_id, message_type, group_id=str(round_)) for m in partitions
        ]
        replies: dict[int, Part] = {}
        failed = {m: f"no reply within reply-timeout = {self.timeout} s" for m in partitions}
        for i, reply in exchange(self.grid, messages, self.timeout).items():
            m = partitions[i]
            if reply.has_error():
                failed[m] = reply.error.reason
                continue
            try:
                replies[m] = decode(reply.content)
                del failed[m]
            except (codec.CodecError, KeyError, TypeError, ValueError) as error:
                failed[m] = f"reply rejected: cannot decode it: {error}"
        self.lost |= set(failed)
        return replies, failed

    def _come_back(self) -> None:
        """Nodes not seen before that claim a lost partition take its agents over; the agents'
        kept meta-optimizer states go back to them with their next training message."""
        known = {node.node_id for node in self.nodes}
        new = [n for n in self.grid.get_node_ids() if n not in known]
        for node_id, node in identify(self.grid, new, REDISCOVERY_TIMEOUT).items():
            m = node.partition
            if m in self.lost and not node.problem and range(node.first, node.last) == self.nodes[m].agents:
                self.nodes[m] = Node(node_id, self.nodes[m].agents)
        for m in self.lost:
            self.states_to_send.update({k: self.states[k] for k in self.nodes[m].agents if k in self.states})
        self.lost.clear()

    def train(self, request: TrainRequest) -> TrainReplies:
        if self.lost:
            self._come_back()
        parts = self._split(request.models)
        requests = {
            m: codec.encode_train_request(TrainRequest(
                request.round, models, {k: self.states_to_send[k] for k in models if k in self.states_to_send},
                self.keep_states,
            ))
            for m, models in parts.items()
        }
        replies, failed = self._send(requests, MessageType.TRAIN, request.round, codec.decode_train_replies)
        out = TrainReplies({}, {}, {}, 0.0, {k: failed[m] for m in failed for k in parts[m]})
        for m, reply in replies.items():
            foreign = set(reply.models) - set(parts[m])
            if foreign:
                out.failed.update({k: f"reply rejected: node answered for agents {sorted(foreign)}" for k in parts[m]})
                continue
            out.models.update(reply.models)
            out.num_tasks.update(reply.num_tasks)
            out.losses.update(reply.losses)
            out.failed.update(reply.failed)
            out.agent_seconds += reply.agent_seconds
            self.states.update(reply.states)
            for k in parts[m]:
                self.states_to_send.pop(k, None)
        return out

    def combine(self, request: CombineRequest) -> CombineReplies:
        """A ``train.combine`` message to each node with the phi_l that reached its agents (and
        their running losses, on resume); the reply is their w_k and running losses."""
        parts = self._split(request.agents)
        requests = {m: codec.encode_combine_request(CombineRequest(request.round, part)) for m, part in parts.items()}
        replies, failed = self._send(requests, codec.COMBINE, request.round, codec.decode_combine_replies)
        out = CombineReplies({}, {}, {}, {k: failed[m] for m in failed for k in parts[m]})
        for reply in replies.values():
            out.models.update(reply.models)
            out.running_losses.update(reply.running_losses)
            out.kept.update(reply.kept)
        return out

    def evaluate(self, request: EvaluateRequest) -> EvaluateReplies:
        """The answering nodes' agents' metrics (the round loop shows the others as NaN)."""
        parts = self._split(request.models)
        requests = {m: codec.encode_evaluate_request(replace(request, models=part)) for m, part in parts.items()}
        replies, _ = self._send(requests, MessageType.EVALUATE, request.round, codec.decode_evaluate_replies)
        out = EvaluateReplies({})
        for reply in replies.values():
            for key, curves in reply.metrics.items():
                out.metrics.setdefault(key, {}).update(curves)
            for key, curves in reply.sd.items():
                out.sd.setdefault(key, {}).update(curves)
        return out

    def optimizer_states(self) -> OptimizerStates:
        return {**self.states_to_send, **self.states}

    def load_optimizer_states(self, states: OptimizerStates) -> None:
        self.states_to_send = dict(states)
