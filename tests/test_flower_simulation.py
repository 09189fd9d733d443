"""Integration tests through Flower's simulation engine (Ray), in this process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flower_difmaml.config import RunConfig
from flower_difmaml.learner import MetaLearner
from flower_difmaml.sim.engine import run_flower_simulation

pytestmark = pytest.mark.slow

SMALL = dict(eval_every=10, eval_tasks=5, tasks_per_agent=4, shots=5, queries=5)


def _run(tmp_path: Path, name: str, num_agents: int = 4, **changes) -> Path:
    config = RunConfig(results_dir=str(tmp_path), run_name=name, **{**SMALL, **changes})
    run_flower_simulation(config, num_agents)
    return tmp_path / name


def test_difmaml_on_complete_graph_equals_fedavg_maml(tmp_path: Path) -> None:
    common = dict(num_rounds=20, seed=3, topology="complete", combination="uniform")
    dif = _run(tmp_path, "dif", strategy="dif-maml", **common)
    fed = _run(tmp_path, "fed", strategy="fedavg-maml", participation=1.0, **common)
    dif_models, fed_models = np.load(dif / "models.npy"), np.load(fed / "models.npy")
    assert dif_models.shape == fed_models.shape == (4, 1761)
    assert np.max(np.abs(dif_models - fed_models)) < 1e-5
    # every agent holds the network average, and 20 rounds of training moved it
    assert np.max(np.abs(dif_models - dif_models[0])) < 1e-12
    initial = MetaLearner.from_config(RunConfig(**common), 4).initial_vector()
    assert np.max(np.abs(dif_models[0] - initial)) > 1e-3
    summary = json.loads((dif / "summary.json").read_text())
    assert summary["final"]["full-mse-1"] < summary["final"]["full-mse-0"] + 1.0
    lines = (dif / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["round"] for line in lines] == list(range(21))


def test_difmaml_with_identity_equals_non_cooperative(tmp_path: Path) -> None:
    common = dict(num_rounds=5, seed=1, topology="ring", meta_optimizer="adam", meta_lr=0.001)
    dif = _run(tmp_path, "dif", strategy="dif-maml", combination="identity", **common)
    alone = _run(tmp_path, "alone", strategy="non-coop", **common)
    np.testing.assert_array_equal(np.load(dif / "models.npy"), np.load(alone / "models.npy"))
    final = json.loads((alone / "summary.json").read_text())["final"]
    assert final["disagreement"] > 0  # agents that learn alone drift apart


def test_bad_graph_fails_before_any_results(tmp_path: Path) -> None:
    config = RunConfig(results_dir=str(tmp_path), run_name="bad", topology="erdos-renyi", topology_p=0.01)
    with pytest.raises(ValueError, match="topology: 'erdos-renyi' on 4 agents is not connected"):
        run_flower_simulation(config, 4)
    assert not (tmp_path / "bad").exists()
