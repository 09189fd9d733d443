"""The warnings a run starts with: keys set that the run does not read, a forgotten federation config."""

from __future__ import annotations

from pathlib import Path

import pytest

from flower_difmaml.config import RunConfig
from flower_difmaml.runner.notices import config_warnings, unused_keys
from flower_difmaml.runner.vectorized import run_vectorized
from flower_difmaml.strategies import BUILT_IN
from flower_difmaml.tasks import BUILT_IN as TASKS


@pytest.mark.parametrize(
    ("keys", "engine", "expected"),
    [
        (dict(participation=0.5), None, {"participation": "read only by strategy fedavg-maml, not 'dif-maml'"}),
        (dict(strategy="fedavg-maml", participation=0.5), None, {}),
        (dict(strategy="fedavg-maml", combination="uniform"), None,
         {"combination": "read only with strategy 'dif-maml' and aggregation 'weighted', or a strategy of yours"}),
        (dict(aggregation="median", combination="uniform"), None,
         {"combination": "read only with strategy 'dif-maml' and aggregation 'weighted', or a strategy of yours"}),
        (dict(strategy="non-coop", diffusion_order="cta", link_drop_prob=0.1), None,
         {"diffusion-order": "read only by strategy dif-maml, not 'non-coop'",
          "link-drop-prob": "read only by strategy dif-maml or fedavg-maml, not 'non-coop'"}),
        (dict(trim=2), None, {"trim": "read only with strategy 'dif-maml' and aggregation 'trimmed-mean'"}),
        (dict(aggregation="trimmed-mean", trim=2), None, {}),
        (dict(attack="sign-flip", attack_scale=2.0), None,
         {"attack": "read only with Byzantine agents (key byzantine or byzantine-fraction)",
          "attack-scale": "read only with Byzantine agents (key byzantine or byzantine-fraction)"}),
        (dict(attack="sign-flip", byzantine="1"), None, {}),
        (dict(topology="ring", topology_p=0.5, topology_seed=3), None,
         {"topology-p": "read only by topology erdos-renyi or small-world, not 'ring'",
          "topology-seed": "read only by topology erdos-renyi or geometric or small-world, not 'ring'"}),
        (dict(topology="small-world", topology_p=0.1, topology_k=2), None, {}),
        (dict(task="digits", dims=5, filters=32), None, {"dims": "task 'digits' does not read it"}),
        (dict(task="linear-regression", dims=5, n_way=3), None, {"n-way": "task 'linear-regression' does not read it"}),
        (dict(task="omniglot", split_seed=9), None, {}),
        (dict(task="digits", split_seed=9), None, {"split-seed": "task 'digits' does not read it"}),
        (dict(clusters=3), None, {"clusters": "read only with heterogeneity 'clusters'"}),
        (dict(heterogeneity="clusters", clusters=3), None, {}),
        (dict(graph_warmup=5), None, {"graph-warmup": "read only by strategy learned-graph, not 'dif-maml'"}),
        (dict(strategy="learned-graph", graph_eta=0.1, graph_step=0.3), None, {"graph-step": "read only with graph-eta = 0"}),
        (dict(strategy="learned-graph", graph_form="ggl", graph_threshold=0.1), None,
         {"graph-threshold": "read only with graph-form 'laplacian' and a learned graph (no graph-laplacian)"}),
        (dict(reply_timeout=5.0), "vectorized", {"reply-timeout": "read only by the flower engine, not the vectorized one"}),
        (dict(reply_timeout=5.0), "flower", {}),
        (dict(strategy="flwr:FedAvg", participation=0.5, trim=3), None, {}),  # Flower's or a user's strategy may read any
    ],
)
def test_keys_set_that_the_run_does_not_read_are_named_with_the_reason(keys: dict, engine: str | None, expected: dict) -> None:
    assert unused_keys(RunConfig(**keys), engine) == expected


@pytest.mark.parametrize("strategy", list(BUILT_IN))
@pytest.mark.parametrize("task", list(TASKS))
def test_the_defaults_give_no_warning(strategy: str, task: str) -> None:
    assert config_warnings(RunConfig(strategy=strategy, task=task), 10, "flower", 10) == []


def test_two_agents_on_flowers_default_federation_get_a_line() -> None:
    assert config_warnings(RunConfig(), 2, "flower", 2) == [
        'warning: 2 agents on 2 SuperNodes, Flower\'s default local federation; did you mean '
        '--federation-config "num-supernodes=N"?'
    ]
    assert config_warnings(RunConfig(num_agents=2), 2, "flower", 2) == []  # asked for
    assert config_warnings(RunConfig(), 2, "vectorized") == []


def test_a_run_prints_its_warnings_first_and_runs_as_before(tmp_path: Path) -> None:
    lines: list[str] = []
    config = RunConfig(num_rounds=2, eval_tasks=4, tasks_per_agent=3, topology="ring", participation=0.5,
                       results_dir=str(tmp_path), run_name="w")
    summary = run_vectorized(config, 3, progress=lines.append)
    assert lines[0] == "warning: participation=0.5 has no effect: read only by strategy fedavg-maml, not 'dif-maml'"
    assert summary["final"] == run_vectorized(config.replace(participation=1.0, run_name="v"), 3,
                                              progress=lambda line: None)["final"]
