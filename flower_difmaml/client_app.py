"""ClientApp: one agent. Thin: decode the message, call the math, encode the reply.

The agent's index is its node config's ``partition-id`` (set by the simulation, or by
``--node-config`` on a real SuperNode); its meta-optimizer state lives in
``context.state`` between rounds and is never shared.
"""

from __future__ import annotations

import time
from functools import lru_cache

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from .config import RunConfig
from .learner import MetaLearner
from .records import model_record, model_vector

torch.set_num_threads(1)  # one Ray actor per core: no oversubscription

OPTIMIZER_STATE = "meta-optimizer"

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
    """Tell the server which graph vertex this node is."""
    record = ConfigRecord(
        {
            "partition-id": int(context.node_config["partition-id"]),
            "num-partitions": int(context.node_config["num-partitions"]),
        }
    )
    return Message(RecordDict({"agent": record}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One meta-step from the received model on this agent's tasks of this round."""
    start = time.perf_counter()
    learner, agent = _agent(context)
    round_ = int(msg.content["config"]["round"])
    params = learner.layout.params(model_vector(msg.content["model"]))
    state = context.state[OPTIMIZER_STATE].to_torch_state_dict() if OPTIMIZER_STATE in context.state else {}
    new_params, new_state, loss = learner.train_step(params, state, agent, round_)
    if new_state:
        context.state[OPTIMIZER_STATE] = ArrayRecord(new_state)
    reply = RecordDict(
        {
            "model": model_record(learner.layout.vector(new_params)),
            "metrics": MetricRecord(
                {
                    "train-loss": loss,
                    "num-tasks": learner.config.tasks_per_agent,
                    "compute-seconds": time.perf_counter() - start,
                }
            ),
        }
    )
    return Message(reply, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """MSE after the asked adaptation steps on the full and on the agent's own distribution."""
    learner, agent = _agent(context)
    steps = tuple(int(s) for s in msg.content["config"]["steps"])
    curves = learner.evaluate(learner.layout.params(model_vector(msg.content["model"])), agent, steps)
    metrics = MetricRecord({f"{name}-mse": [float(v) for v in curve] for name, curve in curves.items()})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)
