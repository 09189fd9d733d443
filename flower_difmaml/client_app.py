"""ClientApp: one agent. Thin: decode the message, call the math, encode the reply.

The agent's index is its node config's ``partition-id`` (set by the simulation, or by
``--node-config`` on a real SuperNode); its meta-optimizer state lives in
``context.state`` between rounds and is only sent for a checkpoint (``return-state``).
With run-config key ``fail-prob`` a training call fails on purpose (seeded by seed, agent
and round) and Flower returns an error reply, the path a real failure takes. A Byzantine
agent (keys ``byzantine``, ``byzantine-fraction``) runs this same code and sends its
attack's model instead of the one it adapted. With ``combination = "resilient"`` the
agent also combines, on its side, the neighbours' models a ``train.combine`` message brings.
"""

from __future__ import annotations

import time
from functools import lru_cache

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from .config import ConfigError, RunConfig
from .flower.records import (
    NEIGHBOURS, OPTIMIZER_STATE, PROBLEM, RUNNING_LOSSES, model_record, model_vector, models_of,
)
from .learner import MetaLearner
from .network.faults import InjectedFailure, agent_fails
from .network.resilient import initial_running_losses

torch.set_num_threads(1)  # one Ray actor per core: no oversubscription

app = ClientApp()


@lru_cache(maxsize=4)
def _learner(config: RunConfig, num_agents: int) -> MetaLearner:
    return MetaLearner.from_config(config, num_agents)


def _agent(context: Context) -> tuple[MetaLearner, int]:
    config = RunConfig.from_mapping(context.run_config)
    agent = int(context.node_config["partition-id"])
    num_agents = int(context.node_config["num-partitions"])
    return _learner(config, num_agents), agent


@app.query()
def identify(msg: Message, context: Context) -> Message:
    """Tell the server which graph vertex this node is, and whether it can be that agent:
    build the learner here (its data, its ``device``); a ConfigError goes back as ``problem``."""
    record = ConfigRecord(
        {
            "partition-id": int(context.node_config["partition-id"]),
            "num-partitions": int(context.node_config["num-partitions"]),
        }
    )
    try:
        _agent(context)
    except ConfigError as error:
        record[PROBLEM] = str(error)
    return Message(RecordDict({"agent": record}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One meta-step from the received model on this agent's tasks of this round.

    A meta-optimizer state in the message (resume) replaces the one in ``context.state``.
    """
    start = time.perf_counter()
    learner, agent = _agent(context)
    config = msg.content["config"]
    round_ = int(config["round"])
    if agent_fails(learner.config.seed, agent, round_, learner.config.fail_prob):
        raise InjectedFailure()
    params = learner.layout.params(model_vector(msg.content["model"]))
    saved = msg.content[OPTIMIZER_STATE] if OPTIMIZER_STATE in msg.content else context.state.get(OPTIMIZER_STATE)
    state = saved.to_torch_state_dict() if saved is not None else {}
    new_params, new_state, loss = learner.train_step(params, state, agent, round_)
    if new_state:
        context.state[OPTIMIZER_STATE] = ArrayRecord(new_state)
    reply = RecordDict(
        {
            "model": model_record(learner.sent_model(learner.layout.vector(new_params), agent, round_)),
            "metrics": MetricRecord(
                {
                    "train-loss": loss,
                    "num-tasks": learner.config.tasks_per_agent,
                    "compute-seconds": time.perf_counter() - start,
                }
            ),
        }
    )
    if config.get("return-state") and new_state:
        reply[OPTIMIZER_STATE] = context.state[OPTIMIZER_STATE]
    return Message(reply, reply_to=msg)


@app.train("combine")
def combine(msg: Message, context: Context) -> Message:
    """Resilient combination on this agent: score the phi_l in the message on this round's
    own tasks, update the running losses in ``context.state`` (or those in the message, on
    resume), keep the neighbours that fit at least as well as its own, weigh by 1/r_kl."""
    learner, agent = _agent(context)
    round_ = int(msg.content["config"]["round"])
    if RUNNING_LOSSES in msg.content:
        running = model_vector(msg.content[RUNNING_LOSSES])
    elif RUNNING_LOSSES in context.state:
        running = model_vector(context.state[RUNNING_LOSSES])
    else:
        running = initial_running_losses(learner.num_agents)
    model, running, kept = learner.resilient_step(agent, round_, models_of(msg.content[NEIGHBOURS]), running)
    context.state[RUNNING_LOSSES] = model_record(running)
    reply = RecordDict(
        {"model": model_record(model), RUNNING_LOSSES: model_record(running), "metrics": MetricRecord({"kept": kept})}
    )
    return Message(reply, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """The family's metrics after the asked adaptation steps, on the full and on the agent's
    own distribution: {"full-mse": [...], "own-mse": [...]} (or "full-acc", "full-loss", ...)."""
    learner, agent = _agent(context)
    steps = tuple(int(s) for s in msg.content["config"]["steps"])
    curves = learner.evaluate(learner.layout.params(model_vector(msg.content["model"])), agent, steps)
    metrics = MetricRecord({key: [float(v) for v in curve] for key, curve in curves.items()})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)
