"""ClientApp: one node's block of agents. Thin: decode the message, call the block, encode.

Node m of M (node config ``partition-id`` m, ``num-partitions`` M: set by the simulation,
or by ``--node-config`` on a real SuperNode) hosts agents ``block_agents(m, M, N)``, a
contiguous range of the run's N = ``num-agents`` agents (0: one agent a node, N = M). The
block's meta-optimizer states and running losses live in ``context.state`` between
rounds; a SuperNode that restarts starts its agents from the initial state, unless the
server sends their states back (it keeps them when it checkpoints them). Fault injection,
Byzantine agents and the resilient rule's combination are the block's (``block``).

Train and evaluate messages in Flower's own dialect (``arrays`` and ``server-round``: what
Flower's stock strategies send, e.g. ``FedAvg().start(...)`` in a plain ServerApp) are
answered too: every agent of the node adapts from (or evaluates) that one model, and the
reply is the node's task-weighted mean model under ``arrays`` with ``num-examples`` and
``train-loss`` (or the family's metrics after adaptation) under ``metrics``. A message the
node cannot read, or a run config it cannot use, gets an error reply of one line.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, wraps

import numpy as np

from flwr.app import Context, Error, Message
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode

from .block import (
    AgentBlock, EvaluateRequest, TrainRequest, block_agents, evaluation_means, node_mean, num_agents_of,
)
from .config import ConfigError, RunConfig
from .flower import codec
from .learner import MetaLearner

app = ClientApp()


@lru_cache(maxsize=4)
def _learner(config: RunConfig, num_agents: int) -> MetaLearner:
    return MetaLearner.from_config(config, num_agents)


@lru_cache(maxsize=64)  # a block is cheap to make again (N = 100, one a node: 0.1 ms)
def _block(config: RunConfig, num_agents: int, agents: range) -> AgentBlock:
    return AgentBlock(_learner(config, num_agents), agents)


def _identity(context: Context) -> tuple[RunConfig, codec.NodeIdentity]:
    """This node's partition and agents; raises ConfigError (the run config, too many nodes)."""
    partition, partitions = int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    config = RunConfig.from_mapping(context.run_config)
    num_agents = num_agents_of(config, partitions)
    agents = block_agents(partition, partitions, num_agents)
    return config, codec.NodeIdentity(partition, partitions, num_agents, agents.start, agents.stop)


def _hosted_block(context: Context) -> AgentBlock:
    """This node's block, with its agents' states from ``context.state``."""
    config, node = _identity(context)
    block = _block(config, node.num_agents, range(node.first, node.last))
    block.reset()
    if codec.OPTIMIZER_STATE in context.state:
        block.load_optimizer_states(codec.states_of(context.state[codec.OPTIMIZER_STATE]))
    if codec.RUNNING_LOSSES in context.state:
        block.running_losses.update(codec.rows_of(context.state[codec.RUNNING_LOSSES], codec.RUNNING_LOSSES))
    return block


def node_identity(context: Context) -> codec.NodeIdentity:
    """Which agents this node hosts, and whether it can: the learner is built here (its data,
    its ``device``); a ConfigError becomes the answer's ``problem``."""
    try:
        config, node = _identity(context)
        _learner(config, node.num_agents)
        return node
    except ConfigError as error:
        partition, partitions = int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
        return codec.NodeIdentity(partition, partitions, problem=str(error))


def _error(msg: Message, reason: object) -> Message:
    return Message(Error(ErrorCode.CLIENT_APP_RAISED_EXCEPTION, f"flower-difmaml: {reason}"), reply_to=msg)


def _error_reply(handler: Callable[[Message, Context], Message]) -> Callable[[Message, Context], Message]:
    """A message that cannot be decoded, or a run config that cannot be used, is answered with
    an error reply of one line (no traceback)."""

    @wraps(handler)
    def answer(msg: Message, context: Context) -> Message:
        try:
            return handler(msg, context)
        except (codec.CodecError, ConfigError) as error:
            return _error(msg, error)

    return answer


def _keep_states(block: AgentBlock, context: Context) -> None:
    if states := block.optimizer_states():
        context.state[codec.OPTIMIZER_STATE] = codec.states_record(states)


def _flower_model(block: AgentBlock, msg: Message) -> tuple[int, dict[int, np.ndarray]]:
    """A Flower strategy's message: its round, and its one model for every agent of the block."""
    layout = block.learner.layout
    round_, model = codec.decode_flower_request(msg.content, layout.names, layout.shapes, layout.numpy_dtype)
    return round_, dict.fromkeys(block.agents, model)


@app.query()
def identify(msg: Message, context: Context) -> Message:
    """Tell the server which agents this node hosts (``node_identity``)."""
    return Message(codec.encode_identity(node_identity(context)), reply_to=msg)


@app.train()
@_error_reply
def train(msg: Message, context: Context) -> Message:
    """One meta-step of each agent in the message from its model on its tasks of this round
    (states in the message, on resume, replace those in ``context.state``); in Flower's
    dialect, of every agent of the node from the one model, answered by their mean."""
    block = _hosted_block(context)
    if codec.speaks_flower(msg.content):
        round_, models = _flower_model(block, msg)
        replies = block.train(TrainRequest(round_, models))
        _keep_states(block, context)
        try:
            model, tasks, loss = node_mean(replies)
        except ValueError as error:  # every agent of the node failed (fail-prob)
            return _error(msg, error)
        layout = block.learner.layout
        return Message(
            codec.encode_flower_reply({codec.TRAIN_LOSS: loss}, tasks, model, layout.names, layout.shapes), reply_to=msg
        )
    replies = block.train(codec.decode_train_request(msg.content))
    _keep_states(block, context)
    return Message(codec.encode_train_replies(replies), reply_to=msg)


@app.train(codec.COMBINE.partition(".")[2])
@_error_reply
def combine(msg: Message, context: Context) -> Message:
    """Resilient combination on each agent of the message: score the phi_l that reached it
    on this round's own tasks, update its running losses, keep the neighbours that fit at
    least as well as its own, weigh by 1/r_kl."""
    block = _hosted_block(context)
    replies = block.combine(codec.decode_combine_request(msg.content))
    context.state[codec.RUNNING_LOSSES] = codec.rows_record(block.running_losses)
    return Message(codec.encode_combine_replies(replies), reply_to=msg)


@app.evaluate()
@_error_reply
def evaluate(msg: Message, context: Context) -> Message:
    """The family's metrics of each agent in the message after the asked adaptation steps,
    on the full and on the agent's own distribution ("full-mse", "own-mse", or "full-acc", ...);
    in Flower's dialect, the means over the node's agents after 0, 1 and ``eval-inner-steps``
    steps (``full-mse-1``, ...), ``num-examples`` their evaluation tasks."""
    block = _hosted_block(context)
    if codec.speaks_flower(msg.content):
        round_, models = _flower_model(block, msg)
        steps = block.learner.reported_steps
        means = evaluation_means(block.evaluate(EvaluateRequest(round_, models, steps)), steps)
        tasks = len(block.agents) * block.learner.config.eval_tasks
        return Message(codec.encode_flower_reply(means, tasks), reply_to=msg)
    replies = block.evaluate(codec.decode_evaluate_request(msg.content))
    return Message(codec.encode_evaluate_replies(replies), reply_to=msg)
