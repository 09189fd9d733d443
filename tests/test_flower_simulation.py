"""Integration tests through Flower's simulation engine (Ray), in this process.

The Flower runs are made once per module; each test compares two of them, or one of
them with the in-process vectorised engine on the same config.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import run_until_killed

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from flower_difmaml import client_app
from flower_difmaml.config import RunConfig
from flower_difmaml.learner import MetaLearner
from flower_difmaml.cli import run_in_flower
from flower_difmaml.flower.simulation import run_flower_simulation
from flower_difmaml.server_app import app as server_app
from flower_difmaml.flower import codec
from flower_difmaml.cli import main
from flower_difmaml.runner.results import read_metrics
from flower_difmaml.runner.vectorized import run_vectorized

pytestmark = pytest.mark.slow

NUM_AGENTS = 4
SMALL = dict(num_rounds=20, eval_every=10, eval_tasks=5, final_eval_tasks=0, tasks_per_agent=4, shots=5, queries=5)
RUNS = {
    "dif-complete": dict(strategy="dif-maml", topology="complete", combination="uniform", seed=3),
    "fed-complete": dict(strategy="fedavg-maml", topology="complete", participation=1.0, seed=3),
    "dif-identity": dict(strategy="dif-maml", topology="ring", combination="identity", meta_optimizer="adam", meta_lr=0.001),
    "non-coop": dict(strategy="non-coop", topology="ring", meta_optimizer="adam", meta_lr=0.001),
    "fed-sampled": dict(strategy="fedavg-maml", topology="ring", participation=0.5, meta_optimizer="adam", meta_lr=0.003),
    "dif-cta": dict(strategy="dif-maml", topology="ring", combination="metropolis", diffusion_order="cta", first_order=True),
    "dif-faults": dict(
        strategy="dif-maml", topology="ring", meta_optimizer="adam", meta_lr=0.003, fail_prob=0.3, link_drop_prob=0.3,
        checkpoint_every=5,
    ),
    "fed-faults": dict(strategy="fedavg-maml", topology="ring", fail_prob=0.3, link_drop_prob=0.2),
    "dif-resilient": dict(
        strategy="dif-maml", topology="complete", aggregation="resilient", byzantine="2", attack="sign-flip",
        fail_prob=0.2, resilient_gamma=0.5,
    ),
    "dif-median": dict(strategy="dif-maml", topology="complete", aggregation="median", byzantine="1", attack="gaussian"),
    "flwr-krum": dict(  # one of Flower's own strategies, a Byzantine agent
        strategy="flwr:Krum", strategy_args="num-malicious-nodes=1", topology="complete", byzantine="2", attack="sign-flip",
    ),
    "learned-graph": dict(  # the task graph estimated at round 9 and 15, failing agents
        strategy="learned-graph", task="linear-regression", heterogeneity="gmrf", topology="complete", dims=20,
        inner_steps=0, tasks_per_agent=1, shots=1, queries=5, meta_lr=0.05, graph_warmup=8,
        graph_reestimate_every=6, fail_prob=0.2,
    ),
    "digits-float32": dict(  # few-shot images in float32, failing agents
        strategy="dif-maml", task="digits", heterogeneity="classes", topology="ring", n_way=3, shots=1, queries=2,
        tasks_per_agent=2, filters=4, inner_lr=0.4, eval_inner_steps=3, num_rounds=2, eval_every=1, eval_tasks=3,
        meta_lr=0.1, fail_prob=0.2, checkpoint_every=1,  # SGD: see the float32 test
    ),
}


def _config(root: Path, name: str) -> RunConfig:
    return RunConfig(results_dir=str(root), run_name=name, **{**SMALL, **RUNS[name]})


@pytest.fixture(scope="module")
def flower_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flower")
    for name in RUNS:
        run_in_flower(_config(root, name), NUM_AGENTS)
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


@pytest.mark.parametrize(
    "name",
    ["dif-complete", "non-coop", "fed-sampled", "dif-cta", "dif-faults", "fed-faults", "dif-resilient", "dif-median",
     "learned-graph", "flwr-krum"],
)
def test_vectorized_engine_gives_the_flower_numbers(flower_runs: Path, tmp_path: Path, name: str) -> None:
    run_vectorized(_config(tmp_path, name), NUM_AGENTS, progress=lambda line: None)
    flower, vectorized = _final(flower_runs / name), _final(tmp_path / name)
    assert flower.keys() == vectorized.keys()
    for key in flower:
        assert vectorized[key] == pytest.approx(flower[key], rel=1e-4, abs=1e-12), key
    np.testing.assert_allclose(
        np.load(tmp_path / name / "models.npy"), np.load(flower_runs / name / "models.npy"), rtol=1e-6, atol=1e-9
    )
    for flower_line, vectorized_line in zip(read_metrics(flower_runs / name), read_metrics(tmp_path / name)):
        for key in ("replies", "failed", "failed-agents", "links-down", "combined", "kept", "byzantine-kept",
                    "graph-edges"):
            assert flower_line.get(key) == vectorized_line.get(key), (flower_line["round"], key)


def test_float32_images_give_the_same_numbers_in_both_engines(flower_runs: Path, tmp_path: Path) -> None:
    """float32: the engines sum in other orders (one agent vs all in one vmap), so they agree to
    float32 round-off, which a Conv-4 with max-pooling amplifies from round to round (a near-tie
    in a max-pool or a ReLU that flips sends the gradient elsewhere). Measured on this config
    without failures: metrics equal to 1e-6 relative for rounds 0-2, then after round 3 model
    weights up to 1.7e-3 apart and one accuracy in 72 flipped. float64 agrees to 3e-15. So the
    test compares 2 rounds, with SGD: every evaluation mean within 5e-3 relative (measured: 8.6e-4
    at worst, a loss after 3 fine-tuning steps; 5.6e-4 on an AVX-512 CPU), its 95 % interval within
    2e-2 (the spread of 3 tasks amplifies their differences: 5.6e-3 for full-loss-3-ci95 on the
    AVX-512 CPU), models within 1e-4 (measured: 5.5e-6).
    (Not with Adam: its first step is lr * sign(g), so a weight whose gradient is round-off
    moves by +-lr in either engine: models 0.025 apart after 2 rounds, metrics still equal.)"""
    name = "digits-float32"
    run_vectorized(_config(tmp_path, name), NUM_AGENTS, progress=lambda line: None)
    flower, vectorized = _final(flower_runs / name), _final(tmp_path / name)
    assert {"full-acc-0", "full-acc-1", "full-acc-3", "own-acc-3", "full-loss-3"} <= flower.keys() == vectorized.keys()
    assert sum(line["failed"] for line in read_metrics(flower_runs / name)[1:]) > 0
    for flower_line, vectorized_line in zip(read_metrics(flower_runs / name), read_metrics(tmp_path / name)):
        for key in flower:
            rel = 2e-2 if key.endswith("-ci95") else 5e-3
            assert vectorized_line[key] == pytest.approx(flower_line[key], rel=rel, abs=1e-6), (flower_line["round"], key)
    models = np.load(flower_runs / name / "models.npy")
    assert models.dtype == np.float32  # messages, replies and files in the run's dtype
    np.testing.assert_allclose(np.load(tmp_path / name / "models.npy"), models, rtol=0, atol=1e-4)
    with np.load(flower_runs / name / "checkpoint.npz") as checkpoint:
        assert checkpoint["strategy/models"].dtype == np.float32
    assert [line["failed"] for line in read_metrics(flower_runs / name)[1:]] == [
        line["failed"] for line in read_metrics(tmp_path / name)[1:]
    ]


def test_resilient_agents_combined_on_their_side_through_flower(flower_runs: Path) -> None:
    lines = read_metrics(flower_runs / "dif-resilient")[1:]
    assert all(line["combined"] == line["replies"] for line in lines)  # every agent that trained combined
    assert sum(line["failed"] for line in lines) > 0
    assert "byzantine-full-mse-1" in _final(flower_runs / "dif-resilient")


def test_failing_agents_went_through_flower_error_replies(flower_runs: Path) -> None:
    lines = read_metrics(flower_runs / "dif-faults")[1:]
    assert sum(line["failed"] for line in lines) > 0 and sum(line["links-down"] for line in lines) > 0
    assert all(line["replies"] + line["failed"] == NUM_AGENTS for line in lines)


def _nan_from_agent_1() -> ClientApp:
    """The project's ClientApp, except that agent 1 replies a model full of NaN."""
    app = ClientApp()
    app.query()(client_app.identify)
    app.evaluate()(client_app.evaluate)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        reply = client_app.train(msg, context)
        if int(context.node_config["partition-id"]) == 1:
            models = codec.rows_of(reply.content[codec.MODELS], codec.MODELS)
            reply.content[codec.MODELS] = codec.rows_record({k: np.full_like(v, np.nan) for k, v in models.items()})
        return reply

    return app


def test_nan_replies_are_rejected_and_the_agent_keeps_its_model(tmp_path: Path) -> None:
    config = RunConfig(results_dir=str(tmp_path), run_name="nan", topology="ring", **{**SMALL, "num_rounds": 4})
    run_flower_simulation(config, NUM_AGENTS, server_app, _nan_from_agent_1())
    lines = read_metrics(tmp_path / "nan")[1:]
    assert [(line["failed"], line["failed-agents"]) for line in lines] == [(1, [1])] * 4
    models = np.load(tmp_path / "nan" / "models.npy")
    assert np.isfinite(models).all()
    initial = MetaLearner.from_config(config, NUM_AGENTS).initial_vector()
    np.testing.assert_array_equal(models[1], initial)  # never took a reply, never combined
    assert np.max(np.abs(models[0] - initial)) > 1e-4


def test_a_killed_flower_run_resumes_to_the_same_numbers(flower_runs: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, "dif-faults")
    keys = " ".join(f"{k}={json.dumps(v)}" for k, v in config.to_mapping().items() if k != "resume-from")
    args = ["run", "--engine", "flower", "--num-agents", str(NUM_AGENTS), "-c"]
    run_until_killed([*args, keys], tmp_path / "dif-faults" / "metrics.jsonl", 7)
    assert not (tmp_path / "dif-faults" / "summary.json").exists()
    assert main([*args, f"{keys} resume-from={json.dumps(str(tmp_path / 'dif-faults'))}"]) == 0
    resumed, whole = _final(tmp_path / "dif-faults"), _final(flower_runs / "dif-faults")
    assert resumed.keys() == whole.keys()
    for key in whole:
        assert resumed[key] == pytest.approx(whole[key], rel=1e-6, abs=1e-12), key


def test_bad_graph_fails_before_any_results(tmp_path: Path) -> None:
    config = RunConfig(results_dir=str(tmp_path), run_name="bad", topology="erdos-renyi", topology_p=0.01)
    with pytest.raises(ValueError, match="topology: 'erdos-renyi' on 4 agents is not connected"):
        run_in_flower(config, NUM_AGENTS)
    assert not (tmp_path / "bad").exists()


def test_a_node_without_the_asked_device_stops_the_run_before_training(tmp_path: Path, caplog) -> None:
    """Each node checks that it can be its agent when the server asks who it is; here the
    nodes are asked for a GPU no machine has: one ERROR line naming key device, nothing written."""
    app = ClientApp()
    app.train()(client_app.train)

    @app.query()
    def identify(msg: Message, context: Context) -> Message:
        asking_for_a_gpu = Context(
            run_id=context.run_id, node_id=context.node_id, node_config=context.node_config, state=context.state,
            run_config={**context.run_config, "device": "cuda:99"},
        )
        return client_app.identify(msg, asking_for_a_gpu)

    config = RunConfig(results_dir=str(tmp_path), run_name="no-gpu", topology="ring", **SMALL)
    run_flower_simulation(config, NUM_AGENTS, server_app, app)
    assert not (tmp_path / "no-gpu").exists()
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].startswith("flower-difmaml: error: device: 'cuda:99'"), errors
    assert "(on the node of partition " in errors[0]
