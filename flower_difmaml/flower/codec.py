"""The one place that turns a block's requests and replies into Flower records and back.

Every record and key of the project's messages is named here once. A block's models travel
as one array (agents, P) in the run's dtype beside the agents' ids, so a node's message costs
one array however many agents it hosts; both ends build the same model from the run config,
so the layout (names, shapes) need not travel. Anything that cannot be decoded raises
``CodecError``, one line naming the record or key.

    query    -> reply NODE {partition-id, num-partitions, num-agents, first-agent, last-agent, problem?}
    train    MODELS, CONFIG {round, return-state}, OPTIMIZER_STATE? -> MODELS, METRICS, FAILED, OPTIMIZER_STATE?
    combine  NEIGHBOURS, LINKS, CONFIG {round}, RUNNING_LOSSES?     -> MODELS, RUNNING_LOSSES, KEPT
    evaluate MODELS, CONFIG {round, steps}                          -> EVALUATION

The ClientApp also speaks Flower's conventional dialect, the one its stock strategies
(``flwr.serverapp.strategy``) send: one model for the whole node,

    train    ARRAYS (the model's named tensors), CONFIG {server-round} -> ARRAYS, METRICS {num-examples, train-loss}
    evaluate ARRAYS, CONFIG {server-round}                             -> METRICS {num-examples, full-mse-1, ...}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from ..agent_models import AgentModels
from ..block import (
    CombineReplies, CombineRequest, EvaluateReplies, EvaluateRequest, OptimizerStates, TrainReplies, TrainRequest,
)
from ..config import RunConfig
from ..learner import MetaLearner
from ..strategies.base import NeighbourModels
from ..strategies.flwr_strategy import NUM_EXAMPLES, model_arrays, model_vector

COMBINE = "train.combine"  # message type of the resilient rule's second exchange

# records of a message's content (and of a ClientApp's context.state)
CONFIG = "config"
MODELS = "models"  # AGENTS + ROWS: one flat model per agent
METRICS = "metrics"  # train reply: TRAIN_LOSS, NUM_TASKS (one a trained agent), COMPUTE_SECONDS
FAILED = "failed"  # train reply: agent id (as text) -> why it did not train (fail-prob)
OPTIMIZER_STATE = "meta-optimizer"  # AGENTS + each state tensor stacked over them: in a message
# (reply for a checkpoint, train message on resume or after a node came back) and in context.state
NEIGHBOURS = "neighbours"  # combine: AGENTS + ROWS, every phi_l some agent of the node gets
LINKS = "links"  # combine: AGENTS, OFFSETS, SENDERS: agent AGENTS[i] gets SENDERS[OFFSETS[i]:OFFSETS[i+1]]
RUNNING_LOSSES = "running-losses"  # AGENTS + ROWS: resilient r_k (one row per agent, length N)
KEPT = "kept"  # combine reply: AGENTS, OFFSETS, SENDERS: whose models agent AGENTS[i] kept
EVALUATION = "evaluation"  # evaluate reply: AGENTS + one (agents, steps) array a metric, and its SD
NODE = "node"  # identify reply
ARRAYS = "arrays"  # Flower's dialect: the model's named tensors (ArrayRecord(model.state_dict()))

# keys inside the records
AGENTS = "agents"
ROWS = "rows"
OFFSETS = "offsets"
SENDERS = "senders"
ROUND = "round"
RETURN_STATE = "return-state"
STEPS = "steps"
EVAL_TASKS = "tasks"  # evaluate: tasks per agent and source (0: eval-tasks)
SD = "/sd"  # evaluate reply: "<metric>/sd" is the metric's standard deviation over the agent's tasks
TRAIN_LOSS = "train-loss"
NUM_TASKS = "num-tasks"
COMPUTE_SECONDS = "compute-seconds"
PARTITION_ID = "partition-id"
NUM_PARTITIONS = "num-partitions"
NUM_AGENTS = "num-agents"
FIRST_AGENT = "first-agent"
LAST_AGENT = "last-agent"  # exclusive
PROBLEM = "problem"  # why the node cannot host its block (a ConfigError's line)
SERVER_ROUND = "server-round"  # Flower's dialect: the round, in CONFIG


class CodecError(ValueError):
    """A message or record that cannot be decoded; the line names what is missing or wrong."""


def _record(content: RecordDict, name: str, kind: type) -> object:
    if name not in content:
        raise CodecError(f"message has no record {name!r}")
    record = content[name]
    if not isinstance(record, kind):
        raise CodecError(f"record {name!r} is a {type(record).__name__}, expected a {kind.__name__}")
    return record


def _array(record: ArrayRecord, name: str, key: str) -> np.ndarray:
    if key not in record:
        raise CodecError(f"record {name!r} has no key {key!r}")
    return record[key].numpy()


def _value(record: ConfigRecord | MetricRecord, name: str, key: str) -> object:
    if key not in record:
        raise CodecError(f"record {name!r} has no key {key!r}")
    return record[key]


def _ids(agents: object) -> Array:
    return Array(np.asarray(list(agents), dtype=np.int64))


def rows_record(rows: Mapping[int, np.ndarray]) -> ArrayRecord:
    """Agent -> vector (a flat model in the run's dtype, a row of running losses) as
    AGENTS + ROWS, one (agents, length) array."""
    stacked = AgentModels.of(rows).ascending()
    return ArrayRecord({AGENTS: _ids(stacked), ROWS: Array(np.ascontiguousarray(stacked.rows))})


def rows_of(record: ArrayRecord, name: str) -> AgentModels:
    agents, rows = _array(record, name, AGENTS), _array(record, name, ROWS)
    if rows.ndim != 2 or len(rows) != len(agents):
        raise CodecError(f"record {name!r}: rows of shape {rows.shape} for {len(agents)} agents")
    return AgentModels(agents, rows)


def states_record(states: OptimizerStates) -> ArrayRecord:
    """Agents' meta-optimizer states: AGENTS + each named tensor stacked over the agents."""
    agents = sorted(states)
    names = list(states[agents[0]]) if agents else []
    record = ArrayRecord({AGENTS: _ids(agents)})
    for n in names:
        record[n] = Array(np.ascontiguousarray(np.stack([states[k][n] for k in agents])))
    return record


def states_of(record: ArrayRecord) -> OptimizerStates:
    agents = _array(record, OPTIMIZER_STATE, AGENTS).tolist()
    stacked = {n: a.numpy() for n, a in record.items() if n != AGENTS}
    return {k: {n: v[i] for n, v in stacked.items()} for i, k in enumerate(agents)}


def _ragged_record(lists: Mapping[int, list[int]]) -> ArrayRecord:
    agents = sorted(lists)
    offsets = np.cumsum([0, *(len(lists[k]) for k in agents)])
    senders = [l for k in agents for l in lists[k]]
    return ArrayRecord({AGENTS: _ids(agents), OFFSETS: _ids(offsets), SENDERS: _ids(senders)})


def _ragged_of(record: ArrayRecord, name: str) -> dict[int, list[int]]:
    agents, offsets, senders = (_array(record, name, key).tolist() for key in (AGENTS, OFFSETS, SENDERS))
    if len(offsets) != len(agents) + 1:
        raise CodecError(f"record {name!r}: {len(offsets)} offsets for {len(agents)} agents")
    return {k: senders[offsets[i] : offsets[i + 1]] for i, k in enumerate(agents)}


# ---- train -------------------------------------------------------------------------------

def encode_train_request(request: TrainRequest) -> RecordDict:
    content = RecordDict({
        MODELS: rows_record(request.models),
        CONFIG: ConfigRecord({ROUND: request.round, RETURN_STATE: request.return_states}),
    })
    if request.states:
        content[OPTIMIZER_STATE] = states_record(request.states)
    return content


def decode_train_request(content: RecordDict) -> TrainRequest:
    config = _record(content, CONFIG, ConfigRecord)
    states = states_of(content[OPTIMIZER_STATE]) if OPTIMIZER_STATE in content else {}
    return TrainRequest(
        round=int(_value(config, CONFIG, ROUND)),
        models=rows_of(_record(content, MODELS, ArrayRecord), MODELS),
        states=states,
        return_states=bool(config.get(RETURN_STATE, False)),
    )


def encode_train_replies(replies: TrainReplies) -> RecordDict:
    agents = sorted(replies.models)
    content = RecordDict({
        MODELS: rows_record(replies.models),
        METRICS: MetricRecord({
            TRAIN_LOSS: [float(replies.losses[k]) for k in agents],
            NUM_TASKS: [int(replies.num_tasks[k]) for k in agents],
            COMPUTE_SECONDS: float(replies.agent_seconds),
        }),
        FAILED: ConfigRecord({str(k): reason for k, reason in replies.failed.items()}),
    })
    if replies.states:
        content[OPTIMIZER_STATE] = states_record(replies.states)
    return content


def decode_train_replies(content: RecordDict) -> TrainReplies:
    models = rows_of(_record(content, MODELS, ArrayRecord), MODELS)
    metrics = _record(content, METRICS, MetricRecord)
    agents = sorted(models)
    losses, tasks = list(_value(metrics, METRICS, TRAIN_LOSS)), list(_value(metrics, METRICS, NUM_TASKS))
    if len(losses) != len(agents) or len(tasks) != len(agents):
        raise CodecError(f"record {METRICS!r}: {len(losses)} losses and {len(tasks)} task counts for {len(agents)} models")
    failed = _record(content, FAILED, ConfigRecord)
    return TrainReplies(
        models=models,
        num_tasks=dict(zip(agents, (int(t) for t in tasks))),
        losses=dict(zip(agents, (float(v) for v in losses))),
        agent_seconds=float(_value(metrics, METRICS, COMPUTE_SECONDS)),
        failed={int(k): str(reason) for k, reason in failed.items()},
        states=states_of(content[OPTIMIZER_STATE]) if OPTIMIZER_STATE in content else {},
    )


# ---- combine (the resilient rule's second exchange) ---------------------------------------

def encode_combine_request(request: CombineRequest) -> RecordDict:
    """Each phi_l once, however many of the node's agents get it, and who gets which."""
    neighbours = {l: model for part in request.agents.values() for l, model in part.models.items()}
    content = RecordDict({
        NEIGHBOURS: rows_record(neighbours),
        LINKS: _ragged_record({k: sorted(part.models) for k, part in request.agents.items()}),
        CONFIG: ConfigRecord({ROUND: request.round}),
    })
    restore = {k: part.running_losses for k, part in request.agents.items() if part.running_losses is not None}
    if restore:
        content[RUNNING_LOSSES] = rows_record(restore)
    return content


def decode_combine_request(content: RecordDict) -> CombineRequest:
    neighbours = rows_of(_record(content, NEIGHBOURS, ArrayRecord), NEIGHBOURS)
    links = _ragged_of(_record(content, LINKS, ArrayRecord), LINKS)
    running = rows_of(content[RUNNING_LOSSES], RUNNING_LOSSES) if RUNNING_LOSSES in content else {}
    missing = sorted({l for senders in links.values() for l in senders} - set(neighbours))
    if missing:
        raise CodecError(f"record {LINKS!r} names agents {missing} that record {NEIGHBOURS!r} does not hold")
    round_ = int(_value(_record(content, CONFIG, ConfigRecord), CONFIG, ROUND))
    return CombineRequest(
        round_, {k: NeighbourModels({l: neighbours[l] for l in senders}, running.get(k)) for k, senders in links.items()}
    )


def encode_combine_replies(replies: CombineReplies) -> RecordDict:
    return RecordDict({
        MODELS: rows_record(replies.models),
        RUNNING_LOSSES: rows_record(replies.running_losses),
        KEPT: _ragged_record(replies.kept),
    })


def decode_combine_replies(content: RecordDict) -> CombineReplies:
    models = rows_of(_record(content, MODELS, ArrayRecord), MODELS)
    running = rows_of(_record(content, RUNNING_LOSSES, ArrayRecord), RUNNING_LOSSES)
    kept = _ragged_of(_record(content, KEPT, ArrayRecord), KEPT)
    if not set(models) == set(running) == set(kept):
        raise CodecError(f"records {MODELS!r}, {RUNNING_LOSSES!r} and {KEPT!r} name different agents")
    return CombineReplies(models, running, kept)


# ---- evaluate ----------------------------------------------------------------------------

def encode_evaluate_request(request: EvaluateRequest) -> RecordDict:
    return RecordDict({
        MODELS: rows_record(request.models),
        CONFIG: ConfigRecord({ROUND: request.round, STEPS: [int(s) for s in request.steps], EVAL_TASKS: request.tasks}),
    })


def decode_evaluate_request(content: RecordDict) -> EvaluateRequest:
    config = _record(content, CONFIG, ConfigRecord)
    steps = tuple(int(s) for s in _value(config, CONFIG, STEPS))
    models = rows_of(_record(content, MODELS, ArrayRecord), MODELS)
    return EvaluateRequest(int(_value(config, CONFIG, ROUND)), models, steps, int(_value(config, CONFIG, EVAL_TASKS)))


def encode_evaluate_replies(replies: EvaluateReplies) -> RecordDict:
    agents = sorted(next(iter(replies.metrics.values()), {}))
    record = ArrayRecord({AGENTS: _ids(agents)})
    for key, curves in (*replies.metrics.items(), *((key + SD, sd) for key, sd in replies.sd.items())):
        record[key] = Array(np.ascontiguousarray(np.stack([curves[k] for k in agents]) if agents else np.zeros((0, 0))))
    return RecordDict({EVALUATION: record})


def decode_evaluate_replies(content: RecordDict) -> EvaluateReplies:
    record = _record(content, EVALUATION, ArrayRecord)
    agents = _array(record, EVALUATION, AGENTS).tolist()
    replies = EvaluateReplies({})
    for key, array in record.items():
        if key != AGENTS:
            values = array.numpy()
            if len(values) != len(agents):
                raise CodecError(f"record {EVALUATION!r}: {len(values)} rows of {key!r} for {len(agents)} agents")
            if key.endswith(SD):
                replies.sd[key.removesuffix(SD)] = dict(zip(agents, values))
            else:
                replies.metrics[key] = dict(zip(agents, values))
    return replies


# ---- Flower's dialect (its stock strategies) -----------------------------------------------

def initial_arrays(run_config: Mapping[str, object], num_agents: int = 0) -> ArrayRecord:
    """The run's initial model w_0 (seeded by key ``seed``) as Flower holds a model, an
    ArrayRecord of its named tensors: what a plain ServerApp gives a stock strategy,
    ``FedAvg().start(grid, initial_arrays(context.run_config))``. ``num_agents`` (default: key
    ``num-agents``, else 10) only matters to families whose tasks depend on the graph."""
    config = RunConfig.from_mapping(run_config)
    learner = MetaLearner.from_config(config, num_agents or config.num_agents or 10, device="cpu")
    return model_arrays(learner.initial_vector(), learner.layout.names, learner.layout.shapes)


def speaks_flower(content: RecordDict) -> bool:
    """Whether a train or evaluate message is in Flower's dialect (it has no ``MODELS``)."""
    return MODELS not in content


def decode_flower_request(
    content: RecordDict, names: tuple[str, ...], shapes: tuple[tuple[int, ...], ...], dtype: np.dtype
) -> tuple[int, np.ndarray]:
    """A Flower strategy's train or evaluate message: (``server-round``, the flat model in
    ``dtype``); its ``arrays`` must hold exactly the model's tensors (``names``, ``shapes``)."""
    if ARRAYS not in content:
        raise CodecError(f"message has no record {ARRAYS!r} (a Flower strategy's model) nor {MODELS!r} (flower-difmaml's)")
    arrays = _record(content, ARRAYS, ArrayRecord)
    round_ = int(_value(_record(content, CONFIG, ConfigRecord), CONFIG, SERVER_ROUND))
    for name, shape in zip(names, shapes):
        if _array(arrays, ARRAYS, name).shape != shape:
            raise CodecError(f"record {ARRAYS!r}: {name!r} has shape {arrays[name].numpy().shape}, expected {shape}")
    extra = sorted(set(arrays) - set(names))
    if extra:
        raise CodecError(f"record {ARRAYS!r} has tensors the model does not: {extra}; the model's: {list(names)}")
    return round_, model_vector(arrays, names, dtype)


def encode_flower_reply(
    metrics: Mapping[str, float], num_examples: int,
    model: np.ndarray | None = None, names: tuple[str, ...] = (), shapes: tuple[tuple[int, ...], ...] = (),
) -> RecordDict:
    """A node's answer to a Flower strategy: METRICS {num-examples, **metrics}, and for training
    the node's model under ARRAYS."""
    content = RecordDict({METRICS: MetricRecord({NUM_EXAMPLES: int(num_examples), **metrics})})
    if model is not None:
        content[ARRAYS] = model_arrays(model, names, shapes)
    return content


# ---- which agents a node hosts ------------------------------------------------------------

@dataclass(frozen=True)
class NodeIdentity:
    """What a node answers when asked who it is: its partition, the agents it hosts
    (``first``..``last`` - 1 of ``num_agents``), or why it cannot host them."""

    partition: int
    num_partitions: int
    num_agents: int = 0
    first: int = 0
    last: int = 0
    problem: str = ""


def encode_identity(identity: NodeIdentity) -> RecordDict:
    record = ConfigRecord({
        PARTITION_ID: identity.partition, NUM_PARTITIONS: identity.num_partitions, NUM_AGENTS: identity.num_agents,
        FIRST_AGENT: identity.first, LAST_AGENT: identity.last,
    })
    if identity.problem:
        record[PROBLEM] = identity.problem
    return RecordDict({NODE: record})


def decode_identity(content: RecordDict) -> NodeIdentity:
    record = _record(content, NODE, ConfigRecord)
    numbers = [int(_value(record, NODE, key)) for key in (PARTITION_ID, NUM_PARTITIONS, NUM_AGENTS, FIRST_AGENT, LAST_AGENT)]
    return NodeIdentity(*numbers, problem=str(record.get(PROBLEM, "")))
