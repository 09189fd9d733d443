"""N agents on M SuperNodes through Flower's simulation engine: the numbers do not depend on M.

One config, run on M = 1, 2 and N nodes and in the vectorised engine (one block of all N):
float64 to round-off (with the resilient rule's second exchange, Byzantine agents, failing
agents and Adam states that travel for checkpoints), float32 within the tolerance stated
below. A node that fails fails every agent it hosts for that round.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from flower_difmaml import client_app
from flower_difmaml.cli import run_in_flower
from flower_difmaml.config import RunConfig
from flower_difmaml.flower import codec
from flower_difmaml.flower.simulation import run_flower_simulation
from flower_difmaml.runner.results import read_metrics
from flower_difmaml.runner.vectorized import run_vectorized
from flower_difmaml.server_app import app as server_app

pytestmark = pytest.mark.slow

NUM_AGENTS = 4
SMALL = dict(num_rounds=6, eval_every=3, eval_tasks=5, final_eval_tasks=0, tasks_per_agent=4, shots=5, queries=5, topology="ring")
FLOAT64 = dict(  # resilient combination on the agents, a Byzantine agent, failing agents, Adam kept for checkpoints
    aggregation="resilient", byzantine="2", attack="sign-flip", fail_prob=0.2, resilient_gamma=0.5,
    meta_optimizer="adam", meta_lr=0.003, checkpoint_every=2,
)
FLOAT32 = dict(dtype="float32", meta_optimizer="adam", meta_lr=0.003, fail_prob=0.2)
LINE_KEYS = ("replies", "failed", "failed-agents", "combined", "kept", "byzantine-kept")


def _final(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())["final"]


def _runs(root: Path, name: str, keys: dict) -> dict[str, Path]:
    """The config on M = 1, 2 and N nodes (N: one agent a node, key num-agents 0) and vectorised."""
    config = RunConfig(results_dir=str(root), **{**SMALL, **keys})
    run_vectorized(config.replace(run_name=f"{name}-vectorized"), NUM_AGENTS, progress=lambda line: None)
    for nodes in (1, 2):
        run_in_flower(config.replace(run_name=f"{name}-m{nodes}"), NUM_AGENTS, nodes)
    run_in_flower(config.replace(run_name=f"{name}-m{NUM_AGENTS}"), NUM_AGENTS)
    return {run: root / f"{name}-{run}" for run in ("vectorized", "m1", "m2", f"m{NUM_AGENTS}")}


def test_float64_numbers_are_the_same_on_every_number_of_nodes(tmp_path: Path) -> None:
    runs = _runs(tmp_path, "f64", FLOAT64)
    reference = runs.pop("vectorized")
    models = np.load(reference / "models.npy")
    assert models.dtype == np.float64 and np.ptp(models, axis=0).max() > 0
    lines = read_metrics(reference)
    assert sum(line["failed"] for line in lines[1:]) > 0 and all(line["combined"] > 0 for line in lines[1:])
    for name, run_dir in runs.items():
        config = json.loads((run_dir / "config.json").read_text())
        assert config["num-agents"] == NUM_AGENTS and config["num-nodes"] == int(name[1:]), name
        np.testing.assert_allclose(np.load(run_dir / "models.npy"), models, rtol=1e-12, atol=1e-14, err_msg=name)
        final = _final(run_dir)
        assert final.keys() == _final(reference).keys()
        for key, value in _final(reference).items():
            assert final[key] == pytest.approx(value, rel=1e-10, abs=1e-14), (name, key)
        for line, expected in zip(read_metrics(run_dir), lines, strict=True):
            assert {k: line.get(k) for k in LINE_KEYS} == {k: expected.get(k) for k in LINE_KEYS}, (name, line["round"])
        with np.load(run_dir / "checkpoint.npz") as flower, np.load(reference / "checkpoint.npz") as vectorized:
            assert sorted(flower.files) == sorted(vectorized.files)
            for key in vectorized.files:  # the agents' Adam states, kept through the nodes' replies
                np.testing.assert_allclose(flower[key], vectorized[key], rtol=1e-12, atol=1e-14, err_msg=key)


def test_float32_numbers_are_the_same_on_every_number_of_nodes(tmp_path: Path) -> None:
    """float32: a block's vmap over 1, 2 or 4 agents may sum in another order than over 4, so
    the engines agree to float32 round-off: models within 1e-5, metrics within 1e-4 relative
    (measured after 6 rounds: M = 1 equal to the last bit, M = 2 and M = N 1.5e-8 and 6e-8 apart)."""
    runs = _runs(tmp_path, "f32", FLOAT32)
    reference = runs.pop("vectorized")
    models = np.load(reference / "models.npy")
    assert models.dtype == np.float32
    for name, run_dir in runs.items():
        np.testing.assert_allclose(np.load(run_dir / "models.npy"), models, rtol=0, atol=1e-5, err_msg=name)
        for key, value in _final(reference).items():
            assert _final(run_dir)[key] == pytest.approx(value, rel=1e-4, abs=1e-7), (name, key)
        assert [line["failed"] for line in read_metrics(run_dir)[1:]] == [line["failed"] for line in read_metrics(reference)[1:]]


def _node_1_fails_in_round_2() -> ClientApp:
    """The project's ClientApp, except that node 1 (agents 2 and 3 of 4 on 2 nodes) raises in round 2."""
    app = ClientApp()
    app.query()(client_app.identify)
    app.evaluate()(client_app.evaluate)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        if int(context.node_config["partition-id"]) == 1 and codec.decode_train_request(msg.content).round == 2:
            raise RuntimeError("node 1 went down")
        return client_app.train(msg, context)

    return app


def test_a_node_that_fails_fails_every_agent_it_hosts(tmp_path: Path) -> None:
    config = RunConfig(results_dir=str(tmp_path), run_name="node-fails", **{**SMALL, "num_rounds": 3, "eval_every": 3})
    run_flower_simulation(config, NUM_AGENTS, server_app, _node_1_fails_in_round_2(), num_nodes=2)
    # the error reply of node 1 fails both its agents in round 2; they keep their models
    lines = read_metrics(tmp_path / "node-fails")[1:]
    assert [(line["replies"], line["failed"], line.get("failed-agents")) for line in lines] == [
        (4, 0, None), (2, 2, [2, 3]), (4, 0, None)
    ]
    assert np.isfinite(np.load(tmp_path / "node-fails" / "models.npy")).all()
