"""ServerApp: read config -> discover agents -> build graph and strategy -> rounds -> results."""

from __future__ import annotations

import time
from logging import INFO

from flwr.app import Context, Message, MessageType, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from .config import RunConfig
from .flower_agents import FlowerAgents, exchange
from .learner import MetaLearner
from .sim.experiment import run_experiment

DISCOVERY_TIMEOUT = 120.0  # seconds to wait for every agent's node to connect

app = ServerApp()


def discover_agents(grid: Grid, timeout: float = DISCOVERY_TIMEOUT) -> list[int]:
    """Node ids in agent order: ask every node its ``partition-id`` once (a query message).

    Waits until ``num-partitions`` distinct agents have answered; two nodes claiming one
    partition, or nodes that disagree on ``num-partitions``, are errors.
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
            expected.add(count)
            if len(expected) > 1:
                raise ValueError(f"num-partitions: nodes disagree on the number of agents: {sorted(expected)}")
            if agent in agents:
                raise ValueError(f"partition-id: two nodes claim agent {agent}")
            if not 0 <= agent < count:
                raise ValueError(f"partition-id: {agent} out of range; allowed: 0..{count - 1}")
            agents[agent] = node_id
        if expected and len(agents) == next(iter(expected)):
            return [agents[k] for k in range(len(agents))]
        time.sleep(0.5)
    raise TimeoutError(f"only {len(agents)} of {sorted(expected) or '?'} agents connected within {timeout} s")


def _keeps_state(learner: MetaLearner) -> bool:
    """Agents send their meta-optimizer state when there is one and checkpoints need it."""
    return learner.config.checkpoint_every > 0 and bool(learner.optimizer.init(learner.initial_parameters()))


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = RunConfig.from_mapping(context.run_config)
    node_ids = discover_agents(grid)
    run_experiment(
        config,
        len(node_ids),
        lambda learner: FlowerAgents(grid, node_ids, config.reply_timeout, keep_states=_keeps_state(learner)),
        progress=lambda line: log(INFO, line),
        extra={"engine": "flower"},
    )
