"""ServerApp: read config -> discover agents -> build graph and strategy -> rounds -> results."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from logging import INFO

import networkx as nx
import numpy as np
from flwr.app import Context, Message, MessageType, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from .config import RunConfig
from .learner import MetaLearner
from .sim.combination import combination_matrix, combination_report
from .sim.graphs import make_graph
from .sim.results import RunRecorder, resolve_run_dir
from .strategies import make_strategy
from .strategies.loop import exchange, run_rounds

REPLY_TIMEOUT = 600.0  # seconds an agent may take for one message
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
        for reply in exchange(grid, messages, max(1.0, deadline - time.monotonic())):
            if reply.has_error():
                raise RuntimeError(f"node {reply.metadata.src_node_id} failed to identify: {reply.error.reason}")
            record = reply.content["agent"]
            agent, count = int(record["partition-id"]), int(record["num-partitions"])
            expected.add(count)
            if len(expected) > 1:
                raise ValueError(f"num-partitions: nodes disagree on the number of agents: {sorted(expected)}")
            if agent in agents:
                raise ValueError(f"partition-id: two nodes claim agent {agent}")
            if not 0 <= agent < count:
                raise ValueError(f"partition-id: {agent} out of range; allowed: 0..{count - 1}")
            agents[agent] = reply.metadata.src_node_id
        if expected and len(agents) == next(iter(expected)):
            return [agents[k] for k in range(len(agents))]
        time.sleep(0.5)
    raise TimeoutError(f"only {len(agents)} of {sorted(expected) or '?'} agents connected within {timeout} s")


def build_graph(config: RunConfig, num_agents: int) -> tuple[nx.Graph, np.ndarray]:
    """The communication graph and the combination matrix A the config names."""
    graph = make_graph(
        config.topology, num_agents, p=config.topology_p, radius=config.topology_radius,
        k=config.topology_k, seed=config.topology_seed, path=config.topology_file or None,
    )
    rule = "identity" if config.strategy == "non-coop" else config.combination
    return graph, combination_matrix(rule, graph)


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = RunConfig.from_mapping(context.run_config)
    node_ids = discover_agents(grid)
    num_agents = len(node_ids)
    graph, combination = build_graph(config, num_agents)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir = resolve_run_dir(config.results_dir, config.run_name, f"{config.strategy}-seed{config.seed}-{stamp}")

    learner = MetaLearner.from_config(config, num_agents)
    strategy = make_strategy(config, node_ids, learner.initial_vector(), combination)
    report = combination_report(combination)
    recorder = RunRecorder(
        run_dir,
        config.to_mapping(),
        extra={"num-agents": num_agents, "edges": [list(e) for e in graph.edges], **report},
    )
    np.save(run_dir / "combination.npy", combination)
    log(INFO, "flower-difmaml: %s on %d agents (%s, %s), results in %s",
        config.strategy, num_agents, config.topology, config.combination, run_dir)

    run_rounds(
        strategy, grid, recorder,
        num_rounds=config.num_rounds, eval_every=config.eval_every, timeout=REPLY_TIMEOUT,
    )
    np.save(run_dir / "models.npy", strategy.current_models())
    summary = recorder.finish(config.num_rounds)
    final = ", ".join(f"{k} {v:.4g}" for k, v in summary["final"].items())
    log(INFO, "flower-difmaml: finished in %.1f s: %s", summary["wall-seconds"], final)
    log(INFO, "flower-difmaml: results written to %s", run_dir)
