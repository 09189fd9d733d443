"""The in-process vectorised engine and the `flower-difmaml` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from flower_difmaml.config import ConfigError, RunConfig
from flower_difmaml.learner import MetaLearner
from flower_difmaml.cli import main, parse_overrides
from flower_difmaml.block import TrainRequest
from flower_difmaml.runner.vectorized import all_agents, run_vectorized

TINY = dict(num_rounds=3, eval_every=2, eval_tasks=3, tasks_per_agent=2, shots=4, queries=4, topology="ring")


def test_layout_round_trips_stacked_parameters() -> None:
    learner = MetaLearner.from_config(RunConfig(), 3)
    vectors = np.random.default_rng(0).normal(size=(2, 3, learner.layout.size))
    params = learner.layout.params(vectors)
    assert params["0.weight"].shape == (2, 3, 40, 1)
    np.testing.assert_array_equal(learner.layout.vector(params), vectors)
    with pytest.raises(ValueError, match="expected"):
        learner.layout.params(np.zeros(5))


def test_vectorized_step_equals_per_agent_steps_with_adam() -> None:
    config = RunConfig(meta_optimizer="adam", meta_lr=0.01, **TINY)
    learner = MetaLearner.from_config(config, 3)
    engine = all_agents(learner)
    start = np.tile(learner.initial_vector(), (3, 1))
    states = [{} for _ in range(3)]
    for round_ in (1, 2):
        replies = engine.train(TrainRequest(round_, {k: start[k] for k in range(3)}))
        for k in range(3):
            params, states[k], loss = learner.train_step(learner.layout.params(start[k]), states[k], k, round_)
            np.testing.assert_allclose(replies.models[k], learner.layout.vector(params), rtol=1e-12, atol=1e-14)
            assert replies.losses[k] == pytest.approx(loss, rel=1e-12)
        start = np.stack([replies.models[k] for k in range(3)])
    torch.testing.assert_close(engine.states[1]["step"], torch.tensor(2.0, dtype=torch.float64))


def test_compiled_step_gives_the_eager_numbers_with_adam(tmp_path: Path) -> None:
    """Key compile: the torch.compile'd meta-step of all agents (float64, one compile: about
    30 s here) gives the eager numbers to round-off."""
    config = RunConfig(meta_optimizer="adam", meta_lr=0.01, results_dir=str(tmp_path), **TINY)
    eager = run_vectorized(config.replace(run_name="eager"), 4, progress=lambda line: None)
    compiled = run_vectorized(config.replace(run_name="compiled", compile=True), 4, progress=lambda line: None)
    assert eager["final"].keys() == compiled["final"].keys()
    for key, value in eager["final"].items():
        assert compiled["final"][key] == pytest.approx(value, rel=1e-10, abs=1e-12), key
    models = {name: np.load(tmp_path / name / "models.npy") for name in ("eager", "compiled")}
    np.testing.assert_allclose(models["compiled"], models["eager"], rtol=0, atol=1e-10)
    assert np.ptp(models["eager"], axis=0).max() > 0  # the agents' models differ: a real comparison


def test_same_seed_same_numbers(tmp_path: Path) -> None:
    for name in ("a", "b"):
        run_vectorized(RunConfig(results_dir=str(tmp_path), run_name=name, **TINY), 3, progress=lambda line: None)
    lines = [
        [{k: v for k, v in json.loads(line).items() if k not in ("wall-seconds", "agent-seconds")}
         for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        for name in ("a", "b")
    ]
    assert lines[0] == lines[1]
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "models.npy"), np.load(tmp_path / "b" / "models.npy"))


def test_parse_overrides_reads_toml_values() -> None:
    assert parse_overrides("num-rounds=5 strategy='non-coop' first-order=true inner-lr=0.1") == {
        "num-rounds": 5, "strategy": "non-coop", "first-order": True, "inner-lr": 0.1,
    }
    with pytest.raises(ConfigError, match="strategy: cannot read value"):
        parse_overrides("strategy=non-coop")


def test_command_runs_the_vectorized_engine(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    overrides = f"num-rounds=2 eval-every=1 eval-tasks=2 tasks-per-agent=2 topology='ring' results-dir='{tmp_path}' run-name='cli'"
    assert main(["run", "--engine", "vectorized", "--num-agents", "3", "-c", overrides]) == 0
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert summary["engine"] == "vectorized" and summary["num-agents"] == 3 and summary["final-round"] == 2
    assert str(tmp_path / "cli") in capsys.readouterr().out


def test_command_reports_a_bad_value_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "-c", f"meta-optimizer='lbfgs' results-dir='{tmp_path}'"]) == 2
    assert "meta-optimizer: unknown 'lbfgs'; allowed: sgd, adam" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def _replayed(fn):
    """``fn`` as a CUDA graph's replay gives it: each call writes its outputs into the memory
    the last call of that shape wrote them to."""
    memory: dict = {}

    def replay(*args):
        leaves, spec = torch.utils._pytree.tree_flatten(fn(*args))
        buffers = memory.setdefault(tuple(t.shape for t in leaves), [torch.empty_like(t) for t in leaves])
        for buffer, value in zip(buffers, leaves):
            buffer.copy_(value)
        return torch.utils._pytree.tree_unflatten(buffers, spec)

    return replay


def test_on_a_gpu_key_compile_replays_cuda_graphs_and_their_outputs_are_copied_out(monkeypatch) -> None:
    """The step's kind: eager without key compile; compiled with it; on a GPU compiled in mode
    "reduce-overhead" (CUDA graphs), its outputs copied out of the graphs' memory before the
    next replay overwrites them: a block's chunks of one round, and the states it keeps. The
    graphs' memory is simulated here; the GPU run itself is in tests/test_devices.py (cuda)."""
    from flower_difmaml.block import step_function

    modes = []
    monkeypatch.setattr(torch, "compile", lambda fn, mode=None: modes.append(mode) or (_replayed(fn) if mode else fn))
    config = RunConfig(meta_optimizer="adam", meta_lr=0.01, **TINY)
    learner, to_compile = (MetaLearner.from_config(config.replace(compile=compile), 3) for compile in (False, True))
    eager, graphed = all_agents(learner), all_agents(to_compile)
    assert modes == [None]  # the CPU: compiled, no graphs
    graphed._step = step_function(to_compile, cuda_graphs=True)
    assert modes == [None, "reduce-overhead"]
    eager.agents_per_call = graphed.agents_per_call = 1  # three chunks of one shape a round: one memory
    models = {k: to_compile.initial_vector() for k in range(3)}
    for round_ in (1, 2):
        replies = {name: block.train(TrainRequest(round_, models)) for name, block in (("eager", eager), ("graphed", graphed))}
        for k in range(3):
            np.testing.assert_array_equal(replies["graphed"].models[k], replies["eager"].models[k])
        assert replies["graphed"].losses == replies["eager"].losses
        models = {k: replies["eager"].models[k] for k in range(3)}
    for k in range(3):  # the Adam states the block kept across the rounds
        for name, value in eager.states[k].items():
            torch.testing.assert_close(graphed.states[k][name], value, rtol=0, atol=0)
