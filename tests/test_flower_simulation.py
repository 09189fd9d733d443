"""Integration tests through Flower's simulation engine (Ray), in this process.

The Flower runs are made once per module; each test compares two of them, or one of
them with the in-process vectorised engine on the same config.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flower_difmaml.config import RunConfig
from flower_difmaml.learner import MetaLearner
from flower_difmaml.sim.engine import run_flower_simulation
from flower_difmaml.sim.vectorized import run_vectorized

pytestmark = pytest.mark.slow

NUM_AGENTS = 4
SMALL = dict(num_rounds=20, eval_every=10, eval_tasks=5, tasks_per_agent=4, shots=5, queries=5)
RUNS = {
    "dif-complete": dict(strategy="dif-maml", topology="complete", combination="uniform", seed=3),
    "fed-complete": dict(strategy="fedavg-maml", topology="complete", participation=1.0, seed=3),
    "dif-identity": dict(strategy="dif-maml", topology="ring", combination="identity", meta_optimizer="adam", meta_lr=0.001),
    "non-coop": dict(strategy="non-coop", topology="ring", meta_optimizer="adam", meta_lr=0.001),
    "fed-sampled": dict(strategy="fedavg-maml", topology="ring", participation=0.5, meta_optimizer="adam", meta_lr=0.003),
    "dif-cta": dict(strategy="dif-maml", topology="ring", combination="metropolis", diffusion_order="cta", first_order=True),
}


def _config(root: Path, name: str) -> RunConfig:
    return RunConfig(results_dir=str(root), run_name=name, **{**SMALL, **RUNS[name]})


@pytest.fixture(scope="module")
def flower_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flower")
    for name in RUNS:
        run_flower_simulation(_config(root, name), NUM_AGENTS)
    return root


def _final(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())["final"]


def test_difmaml_on_complete_graph_equals_fedavg_maml(flower_runs: Path) -> None:
    dif_models = np.load(flower_runs / "dif-complete" / "models.npy")
    fed_models = np.load(flower_runs / "fed-complete" / "models.npy")
    assert dif_models.shape == fed_models.shape == (NUM_AGENTS, 1761)
    assert np.max(np.abs(dif_models - fed_models)) < 1e-5
    # every agent holds the network average, and 20 rounds of training moved it
    assert np.max(np.abs(dif_models - dif_models[0])) < 1e-12
    initial = MetaLearner.from_config(_config(flower_runs, "dif-complete"), NUM_AGENTS).initial_vector()
    assert np.max(np.abs(dif_models[0] - initial)) > 1e-3
    lines = (flower_runs / "dif-complete" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["round"] for line in lines] == list(range(21))


def test_difmaml_with_identity_equals_non_cooperative(flower_runs: Path) -> None:
    np.testing.assert_array_equal(
        np.load(flower_runs / "dif-identity" / "models.npy"), np.load(flower_runs / "non-coop" / "models.npy")
    )
    assert _final(flower_runs / "non-coop")["disagreement"] > 0  # agents that learn alone drift apart


@pytest.mark.parametrize("name", ["dif-complete", "non-coop", "fed-sampled", "dif-cta"])
def test_vectorized_engine_gives_the_flower_numbers(flower_runs: Path, tmp_path: Path, name: str) -> None:
    run_vectorized(_config(tmp_path, name), NUM_AGENTS, progress=lambda line: None)
    flower, vectorized = _final(flower_runs / name), _final(tmp_path / name)
    assert flower.keys() == vectorized.keys()
    for key in flower:
        assert vectorized[key] == pytest.approx(flower[key], rel=1e-4, abs=1e-12), key
    np.testing.assert_allclose(
        np.load(tmp_path / name / "models.npy"), np.load(flower_runs / name / "models.npy"), rtol=1e-6, atol=1e-9
    )


def test_bad_graph_fails_before_any_results(tmp_path: Path) -> None:
    config = RunConfig(results_dir=str(tmp_path), run_name="bad", topology="erdos-renyi", topology_p=0.01)
    with pytest.raises(ValueError, match="topology: 'erdos-renyi' on 4 agents is not connected"):
        run_flower_simulation(config, NUM_AGENTS)
    assert not (tmp_path / "bad").exists()
