"""One run of a config on N agents, for any engine: checks, network, strategy, rounds, results files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp

from ..agent_models import on_host
from ..config import ConfigError, RunConfig
from ..learner import MetaLearner
from ..network import WEIGHTED
from ..network.attacks import byzantine_agents
from ..network.combination import combination_matrix, combination_report
from ..network.faults import DroppingLinks
from ..network.graphs import graph_of
from ..network.laplacian import load_laplacian
from ..strategies import MetaStrategy, StrategySetup, make_strategy, strategy_label
from .checkpoint import Checkpoint, resume_point, save_checkpoint
from .notices import config_warnings
from .plots import plot_run
from .results import RunRecorder, check_writable, resolve_run_dir
from .rounds import Agents, run_rounds
from .stopping import RunStopped, StopSignals


@dataclass
class RunSetup:
    """What a run needs that can be wrong: checked before anything is written or sent."""

    config: RunConfig
    num_agents: int
    learner: MetaLearner  # its task family checked against the data (classes per agent, examples per class)
    graph: nx.Graph
    combination: sp.csc_array  # A (identity for non-coop), sparse
    round_combination: sp.csc_array | DroppingLinks
    task_graph: sp.csc_array | None  # key graph-laplacian (learned-graph with a known L)
    strategy: MetaStrategy  # keys strategy and strategy-args, built on the network
    run_dir: Path
    checkpoint: Checkpoint | None
    byzantine: frozenset[int]

    @property
    def reruns_killed_run(self) -> bool:
        """Whether the run goes into a folder whose run was killed before its first checkpoint
        (``resolve_run_dir`` let it through: nothing to resume, its files are moved aside)."""
        return self.checkpoint is None and self.run_dir.exists()


def matrix_rule(config: RunConfig) -> str:
    """The rule that makes A: identity for non-coop; for the aggregations that weigh the closed
    neighbourhood themselves (median, trimmed-mean, resilient) and learned-graph, uniform
    weights, whose support is that neighbourhood; else key ``combination``."""
    if config.strategy == "non-coop":
        return "identity"
    if config.strategy == "learned-graph" or config.aggregation != WEIGHTED:
        return "uniform"
    return config.combination


def combined_by(config: RunConfig) -> str:
    """How the run's agents combine, in words: the weight rule, the learned task graph, a
    rule of the closed neighbourhood, the server's average, or not at all."""
    if config.strategy == "non-coop":
        return "no combination"
    if config.strategy == "fedavg-maml":
        return "the server's average"
    if config.strategy == "learned-graph":
        return "the learned task graph"
    if config.aggregation != WEIGHTED:
        return f"{config.aggregation} of the closed neighbourhood"
    return f"{config.combination} weights"


def build_network(config: RunConfig, num_agents: int) -> tuple[nx.Graph, sp.csc_array]:
    """The graph on ``num_agents`` agents and its combination matrix A (see ``matrix_rule``)."""
    graph = graph_of(config, num_agents)
    return graph, combination_matrix(matrix_rule(config), graph)


def round_combination(config: RunConfig, graph: nx.Graph, combination: sp.csc_array) -> sp.csc_array | DroppingLinks:
    """A, or A_i by round when Dif-MAML's links drop (``link-drop-prob`` > 0)."""
    if config.strategy != "dif-maml" or config.link_drop_prob <= 0.0:
        return combination
    return DroppingLinks(graph, matrix_rule(config), combination, config.link_drop_prob, config.seed)


def checked_byzantine(config: RunConfig, num_agents: int) -> frozenset[int]:
    """The Byzantine agents; their ids must exist, and at least one agent must be normal."""
    for agent in config.byzantine_ids:
        if agent >= num_agents:
            raise ConfigError(f"byzantine: agent {agent} out of range; allowed: ids 0..{num_agents - 1}")
    byzantine = byzantine_agents(config.byzantine_ids, config.byzantine_fraction, config.seed, num_agents)
    if len(byzantine) >= num_agents:
        key = "byzantine" if config.byzantine_ids else "byzantine-fraction"
        raise ConfigError(f"{key}: all {num_agents} agents would be Byzantine; allowed: fewer than {num_agents}")
    return byzantine


def set_up_run(config: RunConfig, num_agents: int, device: str | None = None) -> RunSetup:
    """Task family (its data there and large enough for the config, its metrics as declared),
    device (there, on this machine), graph (connected, N nodes), combination matrix (valid for
    the graph), Byzantine agents, the strategy (found, its arguments taken), results folder (writable, not taken) or the run to resume;
    raises ConfigError naming the key. ``device`` overrides key ``device`` for this process's
    learner (a ServerApp computes nothing: its nodes check their own device)."""
    learner = MetaLearner.from_config(config, num_agents, device)
    learner.check_metrics()
    graph, combination = build_network(config, num_agents)
    task_graph = load_laplacian(config.graph_laplacian, combination) if config.graph_laplacian else None
    byzantine = checked_byzantine(config, num_agents)
    dropping = round_combination(config, graph, combination)
    layout = learner.layout
    strategy = make_strategy(StrategySetup(config, learner.initial_vector(), layout.names, layout.shapes, dropping, task_graph))
    checkpoint = None
    if config.resume_from:
        run_dir, checkpoint = resume_point(config, num_agents)
    else:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        run_dir = resolve_run_dir(config.results_dir, config.run_name, f"{strategy_label(config.strategy)}-seed{config.seed}-{stamp}")
        check_writable(run_dir)
    return RunSetup(
        config, num_agents, learner, graph, combination, dropping, task_graph, strategy, run_dir, checkpoint, byzantine,
    )


def run_experiment(
    setup: RunSetup,
    make_agents: Callable[[MetaLearner], Agents],
    *,
    progress: Callable[[str], None] = print,
    extra: dict[str, Any] | None = None,
    stop: StopSignals | None = None,
) -> dict[str, Any]:
    """Run or resume the checked ``setup`` (``set_up_run``), writing the run folder.

    ``make_agents`` makes the engine's agents from the learner; ``extra`` goes to config.json
    and summary.json (``engine`` and ``num-nodes`` also to ``config_warnings``, printed first).
    Returns the run's summary.
    SIGINT / SIGTERM (``StopSignals``; ``stop``: the caller's, which it may also ``request``)
    end the run after the round in flight: that round is checkpointed (whatever
    ``checkpoint-every`` says) and ``RunStopped`` is raised.
    """
    config, num_agents = setup.config, setup.num_agents
    run_dir, checkpoint = setup.run_dir, setup.checkpoint
    learner = setup.learner
    strategy = setup.strategy
    extra = extra or {}
    for line in config_warnings(config, num_agents, extra.get("engine"), extra.get("num-nodes", 0)):
        progress(line)
    agents = make_agents(learner)
    if setup.reruns_killed_run:
        progress(f"flower-difmaml: {run_dir} holds a run killed before its first checkpoint (nothing to resume); "
                 "it is run again from round 0 in that folder (the old files go to its killed-<UTC time>/)")
    recorder = RunRecorder(
        run_dir,
        config.to_mapping(),
        extra={
            "num-agents": num_agents,
            "edges": [list(e) for e in setup.graph.edges],
            **combination_report(setup.combination),
            **({"evaluation-classes": learner.evaluation_classes} if learner.evaluation_classes else {}),
            **extra,
        },
        resume_round=checkpoint.round if checkpoint else None,
    )
    sp.save_npz(run_dir / "combination.npz", setup.combination)
    if checkpoint:
        strategy.load_state(checkpoint.strategy)
        agents.load_optimizer_states(checkpoint.optimizer)
        progress(f"flower-difmaml: resuming {run_dir} after round {checkpoint.round}")

    def save(round_: int, *, now: bool = False) -> None:
        every = config.checkpoint_every
        if now or (every and round_ and (round_ % every == 0 or round_ == config.num_rounds)):
            save_checkpoint(run_dir, Checkpoint(round_, strategy.state(), agents.optimizer_states()))

    def save_on_stop(round_: int) -> None:  # a stop request: the round just ended is checkpointed
        save(round_, now=stop.requested())

    progress(f"flower-difmaml: {config.strategy} on {num_agents} agents ({config.topology}, {combined_by(config)}), "
             f"results in {run_dir}")
    if source := getattr(learner.family, "source", ""):
        progress(f"flower-difmaml: {config.task} data: {source}")
    if setup.byzantine:
        progress(f"flower-difmaml: Byzantine agents {sorted(setup.byzantine)} ({config.attack} attack, "
                 f"scale {config.attack_scale}); metrics are over the other agents")
    family_truth = getattr(learner.family, "truth_metrics", None)

    def truth(models: np.ndarray) -> dict[str, float]:
        return family_truth(models, strategy.artifacts().get("laplacian")) if family_truth else {}

    with stop or StopSignals() as stop:
        try:
            run_rounds(
                strategy, agents, recorder, num_rounds=config.num_rounds, eval_every=config.eval_every, truth=truth,
                groups=getattr(learner.family, "groups", None),
                start_round=checkpoint.round + 1 if checkpoint else 0, checkpoint=save_on_stop, stop=stop.requested,
                byzantine=setup.byzantine, reported_steps=learner.reported_steps, curve_steps=learner.curve_steps,
                headline=learner.family.metric_names[0], progress=progress, evaluation_keys=learner.evaluation_keys,
                eval_tasks=(learner.config.eval_tasks, learner.final_tasks()), final_keys=learner.final_keys,
                evaluation_classes=learner.evaluation_classes,
            )
        except RunStopped as stopped:
            recorder.close()
            stopped.run_dir, stopped.config = run_dir, config
            stop.stopped = stopped
            raise
    np.save(run_dir / "models.npy", on_host(strategy.current_models()))
    for name, array in strategy.artifacts().items():
        np.save(run_dir / f"{name}.npy", array)
    summary = recorder.finish(config.num_rounds)
    plot_run(run_dir)
    last = summary["final"]
    final = ", ".join(
        f"{k} {v:.4g}" + (f" ± {last[k + '-ci95']:.2g}" if f"{k}-ci95" in last else "")
        for k, v in last.items() if not k.endswith("-ci95")
    )
    took = f"{summary['wall-seconds']:.1f} s"
    if checkpoint:
        took = f"{summary['session-seconds']:.1f} s ({took} in all, with the run before round {checkpoint.round + 1})"
    progress(f"flower-difmaml: finished in {took}: {final}")
    progress(f"flower-difmaml: results written to {run_dir}")
    return summary
