"""One run of a config on N agents, for any engine: network, strategy, rounds, results files."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import numpy as np

from ..config import RunConfig
from ..learner import MetaLearner
from ..strategies import make_strategy
from ..strategies.rounds import Engine, run_rounds
from .combination import combination_report
from .network import build_network
from .results import RunRecorder, resolve_run_dir


def run_experiment(
    config: RunConfig,
    num_agents: int,
    engine: Callable[[MetaLearner], Engine],
    *,
    progress: Callable[[str], None] = print,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the network (errors before anything is written), run, write the run folder.

    ``engine`` makes the engine from the learner. Returns the run's summary.
    """
    graph, combination = build_network(config, num_agents)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir = resolve_run_dir(config.results_dir, config.run_name, f"{config.strategy}-seed{config.seed}-{stamp}")
    learner = MetaLearner.from_config(config, num_agents)
    strategy = make_strategy(config, learner.initial_vector(), combination)
    agents = engine(learner)

    recorder = RunRecorder(
        run_dir,
        config.to_mapping(),
        extra={
            "num-agents": num_agents,
            "edges": [list(e) for e in graph.edges],
            **combination_report(combination),
            **(extra or {}),
        },
    )
    np.save(run_dir / "combination.npy", combination)
    progress(f"flower-difmaml: {config.strategy} on {num_agents} agents ({config.topology}, {config.combination}), "
             f"results in {run_dir}")
    run_rounds(strategy, agents, recorder, num_rounds=config.num_rounds, eval_every=config.eval_every, progress=progress)
    np.save(run_dir / "models.npy", strategy.current_models())
    summary = recorder.finish(config.num_rounds)
    final = ", ".join(f"{k} {v:.4g}" for k, v in summary["final"].items())
    progress(f"flower-difmaml: finished in {summary['wall-seconds']:.1f} s: {final}")
    progress(f"flower-difmaml: results written to {run_dir}")
    return summary
