"""Evaluation: per-task metrics in calls of bounded memory, 95 % intervals, the final protocol."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from flower_difmaml.block import TRAIN_AGENTS_PER_CHUNK, AgentBlock, EvaluateRequest, TrainRequest
from flower_difmaml.config import RunConfig
from flower_difmaml.flower import codec
from flower_difmaml.learner import MetaLearner
from flower_difmaml.meta.maml import evaluate_after_adaptation, metrics_after_adaptation
from flower_difmaml.runner.compare import markdown
from flower_difmaml.runner.results import Z95, evaluation_metrics, interval95
from flower_difmaml.runner.rounds import progress_line
from flower_difmaml.runner.vectorized import run_vectorized

TINY = dict(eval_tasks=6, tasks_per_agent=2, shots=4, queries=4, topology="ring")


def test_interval_of_a_mean_over_agents_by_hand() -> None:
    # two agents, 4 tasks each, standard deviations 1 and 2 over their tasks:
    # Var(mean of the agents' means) = (1/2)^2 (1/4 + 4/4) = 5/16, half-width 1.96 * sqrt(5)/4
    assert interval95(np.array([1.0, 2.0]), 4) == pytest.approx(1.959964 * math.sqrt(5) / 4, rel=1e-6)
    assert interval95(np.array([1.0, np.nan]), 4) is None  # one task: no spread, no interval
    curves = {"full-mse": np.array([[1.0, 0.5], [3.0, 1.5], [9.0, 9.0]])}
    sd = {"full-mse": np.array([[1.0, 0.2], [2.0, 0.4], [50.0, 50.0]])}
    out = evaluation_metrics(curves, (0, 1), (0, 1), np.zeros((3, 2)), frozenset({2}), sd, 4)
    assert out["full-mse-0"] == 2.0 and out["full-mse-0-ci95"] == pytest.approx(Z95 * math.sqrt(5) / 4)
    assert out["full-mse-1-ci95"] == pytest.approx(Z95 * math.sqrt(0.2) / 4)  # the Byzantine agent 2 left out
    assert out["tasks-per-agent"] == 4


def test_per_task_metrics_average_to_the_mean_and_chunks_change_nothing() -> None:
    learner = MetaLearner.from_config(RunConfig(**TINY), 3)
    batch = learner.evaluation_batches([0])["full"].agent(0)
    params = learner.initial_parameters()
    kwargs = dict(inner_lr=0.01, steps=(0, 2))
    per_task = metrics_after_adaptation(learner.model, params, batch, **kwargs)["loss"]
    assert per_task.shape == (6, 2)
    torch.testing.assert_close(per_task.mean(0), evaluate_after_adaptation(learner.model, params, batch, **kwargs)["loss"])
    chunked = metrics_after_adaptation(learner.model, params, batch, chunk_size=4, **kwargs)["loss"]
    torch.testing.assert_close(chunked, per_task, rtol=1e-12, atol=0)


def _budget(monkeypatch: pytest.MonkeyPatch, num_bytes: int) -> None:
    """Key chunk-memory-mb, in bytes (a key in MB cannot go below one task of these tiny models)."""
    monkeypatch.setattr(MetaLearner, "_chunk_bytes", property(lambda self: num_bytes))


@pytest.mark.parametrize("budget", [10**12, 5, None])  # all agents in one call; one task a call; agents in pairs
def test_block_evaluation_is_the_same_whatever_the_memory_budget(monkeypatch: pytest.MonkeyPatch, budget) -> None:
    learner = MetaLearner.from_config(RunConfig(**TINY), 5)
    models = learner.initial_vector()[None] + np.random.default_rng(0).normal(0, 0.1, (5, learner.layout.size))
    request = EvaluateRequest(2, dict(enumerate(models)), (0, 1, 3))
    reference = AgentBlock(learner, range(5)).evaluate(request)
    if budget is None:
        budget = 2 * 6 * learner.evaluation_task_bytes  # two agents' 6 tasks a call
    _budget(monkeypatch, budget)
    assert learner.evaluation_chunk == {10**12: 10**12 // learner.evaluation_task_bytes, 5: 1}.get(budget, 12)
    replies = AgentBlock(learner, range(5)).evaluate(request)
    for key in reference.metrics:
        for k in range(5):
            np.testing.assert_allclose(replies.metrics[key][k], reference.metrics[key][k], rtol=1e-12)
            np.testing.assert_allclose(replies.sd[key][k], reference.sd[key][k], rtol=1e-10)
    # the SD is the spread of the agent's own per-task values (ddof 1)
    batch = learner.evaluation_batches([3])["own"].agent(0)
    per_task = metrics_after_adaptation(learner.model, learner.layout.params(models[3]), batch, inner_lr=0.01, steps=(0, 1, 3))
    np.testing.assert_allclose(replies.sd["own-mse"][3], per_task["loss"].std(0).numpy(), rtol=1e-10)
    decoded = codec.decode_evaluate_replies(codec.encode_evaluate_replies(replies))
    np.testing.assert_array_equal(decoded.sd["full-mse"][4], replies.sd["full-mse"][4])
    assert codec.decode_evaluate_request(codec.encode_evaluate_request(EvaluateRequest(1, {}, (0,), 7))).tasks == 7


def test_an_agents_tasks_in_chunks_give_its_meta_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    """7 tasks an agent in calls of 3 (3 + 3 + 1, weighted 3/7, 3/7, 1/7): the same adapted
    models, Adam states and meta-losses as in one call, float64 to round-off."""
    config = RunConfig(**{**TINY, "tasks_per_agent": 7}, meta_optimizer="adam", meta_lr=0.01)
    learner = MetaLearner.from_config(config, 4)
    models = dict(enumerate(np.tile(learner.initial_vector(), (4, 1))))
    whole = AgentBlock(learner, range(4))
    first = [whole.train(TrainRequest(r, models)) for r in (1, 2)][-1]
    _budget(monkeypatch, 3 * learner.train_task_bytes)
    assert learner.train_chunk == 3
    chunked = AgentBlock(learner, range(4))
    second = [chunked.train(TrainRequest(r, models)) for r in (1, 2)][-1]
    for k in range(4):
        np.testing.assert_allclose(second.models[k], first.models[k], rtol=1e-12, atol=1e-15)
        assert second.losses[k] == pytest.approx(first.losses[k], rel=1e-12)
        for name, value in whole.optimizer_states()[k].items():
            np.testing.assert_allclose(chunked.optimizer_states()[k][name], value, rtol=1e-10, atol=1e-18)


def test_image_chunks_come_from_memory_not_a_task_count() -> None:
    """Digits' defaults (Conv-4 of 64 filters on 28x28, 5-way 10-shot, 10 queries): MBs a
    task, so a call holds a few tasks, not an agent's 10 (one call of all: 35 GB)."""
    learner = MetaLearner.from_config(RunConfig(task="digits"), 10)
    for per_task, chunk in ((learner.evaluation_task_bytes, learner.evaluation_chunk),
                            (learner.train_task_bytes, learner.train_chunk)):
        assert 1e8 < per_task < 5e8
        assert chunk == max(1, 2**29 // per_task) and 1 <= chunk < learner.config.tasks_per_agent
    sinusoid = MetaLearner.from_config(RunConfig(dtype="float32"), 10)
    assert sinusoid.train_chunk >= TRAIN_AGENTS_PER_CHUNK * sinusoid.config.tasks_per_agent  # 256 agents a call
    sinusoid = MetaLearner.from_config(RunConfig(), 10)  # float64: over 128 agents a call, never a part of one's tasks
    assert sinusoid.train_chunk >= TRAIN_AGENTS_PER_CHUNK // 2 * sinusoid.config.tasks_per_agent


def test_last_evaluation_draws_the_literatures_600_tasks_over_the_network(tmp_path) -> None:
    config = RunConfig(num_rounds=2, eval_every=1, final_eval_tasks=20, results_dir=str(tmp_path), run_name="r", **TINY)
    assert MetaLearner.from_config(config, 4).final_tasks() == 6  # eval-tasks is more than 20/4
    assert MetaLearner.from_config(config.replace(final_eval_tasks=600), 4).final_tasks() == 150
    assert MetaLearner.from_config(config.replace(final_eval_tasks=0), 4).final_tasks() == 6
    main_job = MetaLearner.from_config(RunConfig(), 10)  # eval-tasks 0: 20 at every evaluation, 60 at the last
    assert (main_job.config.eval_tasks, main_job.final_tasks()) == (20, 60)
    run_vectorized(config.replace(final_eval_tasks=40), 4, progress=lambda line: None)
    lines = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [line.get("tasks-per-agent") for line in lines] == [6, 6, 10]
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    for key in ("full-mse-1", "own-mse-10"):
        assert 0 < summary["final"][f"{key}-ci95"] < summary["final"][key]
    assert len(summary["final-curves"]["full-mse-curve-ci95"]) == 11
    row = {"strategy": "dif-maml", "seeds": 1, "full-mse-1-mean": 1.5, "full-mse-1-std": 0.0,
           "full-mse-1-ci95-mean": 0.25, "full-mse-1-ci95-std": 0.0}
    assert markdown([row]).splitlines()[-1] == "| dif-maml | 1 | 1.5 ± 0 [±0.25] |"
    line = {"train-loss": 2.0, "full-mse-1": 1.5, "full-mse-1-ci95": 0.25, "disagreement": 0.0}
    assert "full-mse-1 1.5000 ±0.25 " in progress_line(2, 4, line, 1.0, 2, ("full-mse-1",))


def test_evaluation_adapts_with_eval_inner_lr_and_with_inner_lr_where_it_is_zero() -> None:
    """Key ``eval-inner-lr`` is the test-time step of every evaluation path (the block's
    per-task metrics and the one-agent mean); 0 means ``inner-lr``; training is untouched."""
    by_lr = {}
    for eval_lr in (0.0, 0.01, 0.05):
        learner = MetaLearner.from_config(RunConfig(**TINY, eval_inner_lr=eval_lr), 2)
        vector = learner.initial_vector() + np.random.default_rng(0).normal(0, 0.1, learner.layout.size)
        models = {0: vector, 1: vector}
        replies = AgentBlock(learner, range(2)).evaluate(EvaluateRequest(1, models, (0, 1, 3)))
        batch = learner.evaluation_batches([1])["full"].agent(0)
        params = learner.layout.params(vector)
        by_hand = metrics_after_adaptation(learner.model, params, batch, inner_lr=eval_lr or 0.01, steps=(0, 1, 3))
        np.testing.assert_allclose(replies.metrics["full-mse"][1], by_hand["loss"].mean(0).numpy(), rtol=1e-12)
        np.testing.assert_allclose(learner.evaluate(params, 1, (0, 1, 3))["full-mse"].numpy(), by_hand["loss"].mean(0).numpy(), rtol=1e-12)
        by_lr[eval_lr] = replies.metrics["full-mse"][1]
    np.testing.assert_array_equal(by_lr[0.0], by_lr[0.01])  # TINY's inner-lr
    assert by_lr[0.05][0] == by_lr[0.01][0] and not np.allclose(by_lr[0.05][1:], by_lr[0.01][1:])
