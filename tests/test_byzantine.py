"""Byzantine agents, their attacks, and the combination rules that resist them (in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flower_difmaml.network.attacks import attacked_model, byzantine_agents
from flower_difmaml.network.resilient import (
    resilient_combine,
    resilient_weights,
    update_running_losses,
)
from flower_difmaml.network.robust import coordinate_median, trimmed_mean
from flower_difmaml.config import ConfigError, RunConfig
from flower_difmaml.learner import MetaLearner
from flower_difmaml.runner.experiment import set_up_run
from flower_difmaml.runner.results import evaluation_metrics, read_metrics
from flower_difmaml.runner.vectorized import run_vectorized
from flower_difmaml.strategies import DifMAML, ResilientDifMAML

SMALL = dict(eval_every=10, eval_tasks=4, tasks_per_agent=3, shots=5, queries=5, topology="ring")
QUIET = dict(progress=lambda line: None)


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


# --- the resilient rule, by hand -----------------------------------------------------------


def test_running_losses_are_exponential_averages_of_the_scored_agents_only() -> None:
    running = np.ones(4)
    running = update_running_losses(running, {0: 0.5, 1: 2.0, 2: 0.8}, gamma=0.5)
    np.testing.assert_allclose(running, [0.75, 1.5, 0.9, 1.0])  # agent 3 not scored: kept
    running = update_running_losses(running, {0: 0.25, 2: 0.1}, gamma=0.1)
    np.testing.assert_allclose(running, [0.9 * 0.75 + 0.1 * 0.25, 1.5, 0.9 * 0.9 + 0.1 * 0.1, 1.0])


def test_weights_keep_neighbours_that_fit_at_least_as_well_and_are_inverse_losses() -> None:
    running = np.array([0.75, 1.5, 0.9, 0.9])
    assert resilient_weights(running, [0, 1, 2], own=0) == {0: 1.0}  # both neighbours fit worse
    # own = 2 (r = 0.9): keep 0 (0.75) and 2; drop 1 (1.5). a ∝ (1/0.75, 1/0.9) = (4/3, 10/9) -> (6/11, 5/11)
    weights = resilient_weights(running, [0, 1, 2], own=2)
    assert weights.keys() == {0, 2}
    assert weights[0] == pytest.approx(6 / 11) and weights[2] == pytest.approx(5 / 11)
    # a tie (r_kl = r_kk) is kept
    assert resilient_weights(running, [2, 3], own=3) == pytest.approx({2: 0.5, 3: 0.5})


def test_one_combination_step_by_hand() -> None:
    models = {0: np.array([1.0, 0.0]), 1: np.array([100.0, -100.0]), 2: np.array([0.0, 2.0])}
    model, running, kept = resilient_combine(models, {0: 0.5, 1: 2.0, 2: 0.8}, np.ones(3), own=2, gamma=0.5)
    np.testing.assert_allclose(running, [0.75, 1.5, 0.9])
    assert kept == [0, 2]
    np.testing.assert_allclose(model, 6 / 11 * models[0] + 5 / 11 * models[2])


# --- robust baselines -----------------------------------------------------------------------


def test_coordinate_median_and_trimmed_mean_by_hand() -> None:
    models = np.array([[1.0, 10.0], [2.0, -50.0], [3.0, 20.0], [100.0, 30.0], [4.0, 0.0]])
    np.testing.assert_allclose(coordinate_median(models), [3.0, 10.0])
    np.testing.assert_allclose(trimmed_mean(models, trim=1), [3.0, 10.0])  # (2+3+4)/3, (0+10+20)/3
    np.testing.assert_allclose(trimmed_mean(models, trim=0), models.mean(axis=0))
    # too few models for trim 3: trim lowered to (5 - 1) // 2 = 2, the median
    np.testing.assert_allclose(trimmed_mean(models, trim=3), [3.0, 10.0])
    np.testing.assert_allclose(trimmed_mean(models[:2], trim=1), models[:2].mean(axis=0))


def test_difmaml_median_uses_each_closed_neighbourhood_of_the_senders() -> None:
    A = np.array([[0.5, 1 / 3, 0.0], [0.5, 1 / 3, 0.5], [0.0, 1 / 3, 0.5]])  # path 0 - 1 - 2
    strategy = DifMAML(np.zeros(1), A, aggregate=coordinate_median)
    strategy.aggregate_train(1, {0: np.array([1.0]), 1: np.array([5.0]), 2: np.array([9.0])}, {})
    np.testing.assert_allclose(strategy.current_models(), [[3.0], [5.0], [7.0]])  # medians of {1,5}, {1,5,9}, {5,9}
    strategy.aggregate_train(2, {0: np.array([1.0]), 1: np.array([100.0])}, {})  # agent 2 failed: keeps 7
    np.testing.assert_allclose(strategy.current_models(), [[50.5], [50.5], [7.0]])


# --- attacks ----------------------------------------------------------------------------------


def test_attacks_are_what_they_say_and_seeded() -> None:
    phi = np.arange(5.0)
    np.testing.assert_array_equal(attacked_model("sign-flip", phi, 2.0, 0, 1, 3), -2.0 * phi)
    gaussian = attacked_model("gaussian", phi, 0.5, 0, 1, 3)
    np.testing.assert_array_equal(gaussian, attacked_model("gaussian", phi, 0.5, 0, 1, 3))
    assert not np.array_equal(gaussian, attacked_model("gaussian", phi, 0.5, 0, 1, 4))  # fresh every round
    assert 0 < np.std(gaussian - phi) < 2.0
    random = attacked_model("random", phi, 3.0, 0, 1, 3)
    np.testing.assert_array_equal(random, attacked_model("random", 7 * phi, 3.0, 0, 1, 3))  # ignores the model
    fixed = attacked_model("fixed", phi, 1.0, 0, 1, 3)
    np.testing.assert_array_equal(fixed, attacked_model("fixed", 2 * phi, 1.0, 0, 1, 99))  # same every round
    assert not np.array_equal(fixed, attacked_model("fixed", phi, 1.0, 0, 2, 3))  # its own per agent


def test_byzantine_agents_by_id_or_by_seeded_fraction() -> None:
    assert byzantine_agents((2, 7), 0.0, 0, 10) == {2, 7}
    assert byzantine_agents((), 0.0, 0, 10) == frozenset()
    drawn = byzantine_agents((), 0.2, 5, 10)
    assert len(drawn) == 2 and drawn == byzantine_agents((), 0.2, 5, 10) and max(drawn) < 10
    assert len(byzantine_agents((), 0.25, 5, 100)) == 25


def test_only_byzantine_agents_send_attacked_models() -> None:
    learner = MetaLearner.from_config(RunConfig(byzantine="1", attack="sign-flip", attack_scale=3.0), 4)
    phi = learner.initial_vector()
    np.testing.assert_array_equal(learner.sent_model(phi, 0, 1), phi)
    np.testing.assert_array_equal(learner.sent_model(phi, 1, 1), -3.0 * phi)


def test_scores_are_the_meta_loss_on_the_current_or_on_fresh_tasks() -> None:
    config = RunConfig(tasks_per_agent=3, shots=5, queries=5, aggregation="resilient")
    learner = MetaLearner.from_config(config, 4)
    w = learner.initial_vector()
    *_, loss = learner.train_step(learner.layout.params(w), {}, 1, 7)  # J_1(w) on agent 1's round-7 tasks
    assert learner.scores(np.stack([w, w]), 1, 7) == pytest.approx([loss, loss], rel=1e-12)
    fresh = MetaLearner.from_config(config.replace(resilient_score="fresh"), 4)
    assert fresh.scores(w[np.newaxis], 1, 7)[0] != pytest.approx(loss, rel=1e-6)


# --- config and set-up errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (dict(byzantine="1,x"), "byzantine: '1,x'; allowed: comma-separated agent ids"),
        (dict(byzantine="-1"), "byzantine: '-1'; allowed"),
        (dict(byzantine="1", byzantine_fraction=0.2), "byzantine: give either"),
        (dict(byzantine_fraction=1.0), r"byzantine-fraction: 1.0 out of range; allowed: \[0.0, 1.0\)"),
        (dict(attack="flip"), "attack: unknown 'flip'; allowed: gaussian, sign-flip, random, fixed"),
        (dict(attack_scale=0.0), "attack-scale: 0.0 out of range; allowed: > 0.0"),
        (dict(resilient_gamma=0.0), r"resilient-gamma: 0.0 out of range; allowed: \(0.0, 1.0\]"),
        (dict(trim=-1), "trim: -1 out of range; allowed: >= 0"),
        (dict(resilient_score="next"), "resilient-score: unknown 'next'; allowed: current, fresh"),
        (dict(aggregation="resilient", diffusion_order="cta"), "diffusion-order: aggregation 'resilient' needs 'atc'"),
        (dict(aggregation="krum"), "aggregation: unknown 'krum'; allowed: weighted, median, trimmed-mean, resilient"),
    ],
)
def test_bad_byzantine_and_combination_keys_name_the_key(keys: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RunConfig(**keys)


def test_byzantine_ids_are_checked_against_the_agents_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"byzantine: agent 4 out of range; allowed: ids 0..3"):
        set_up_run(RunConfig(byzantine="1,4", topology="ring", results_dir=str(tmp_path)), 4)
    with pytest.raises(ConfigError, match="byzantine-fraction: all 4 agents would be Byzantine"):
        set_up_run(RunConfig(byzantine_fraction=0.9, topology="ring", results_dir=str(tmp_path)), 4)
    assert list(tmp_path.iterdir()) == []


# --- metrics over the normal agents ------------------------------------------------------------


def test_metrics_leave_byzantine_agents_out_and_show_them_apart() -> None:
    models = np.array([[0.0], [2.0], [1000.0]])  # agent 2 is Byzantine
    steps = (0, 1, 10)
    curve = np.array([[1.0, 2.0, 0.5], [3.0, 4.0, 1.5], [100.0, 200.0, 50.0]])
    out = evaluation_metrics({"full-mse": curve, "own-mse": curve}, steps, (0, 1, 10), models, frozenset({2}))
    assert out["full-mse-1"] == pytest.approx(3.0) and out["own-mse-10"] == pytest.approx(1.0)
    assert out["byzantine-full-mse-1"] == pytest.approx(200.0)
    assert out["full-evaluated"] == 2
    assert out["disagreement"] == pytest.approx(1.0)  # normal agents at 0 and 2 around 1
    assert out["agents"]["full-mse-1"] == [2.0, 4.0, 200.0]  # per agent: all of them


# --- whole runs (vectorised engine) -------------------------------------------------------------


def _run(tmp_path: Path, name: str, num_agents: int = 6, **keys) -> dict:
    config = RunConfig(results_dir=str(tmp_path), run_name=name, **{**SMALL, "num_rounds": 40, **keys})
    run_vectorized(config, num_agents, **QUIET)
    return _summary(tmp_path / name)


def test_resilient_agents_drop_a_random_attacker_that_plain_diffusion_averages_in(tmp_path: Path) -> None:
    attack = dict(byzantine="2", attack="random", attack_scale=3.0, topology="complete")
    plain = _run(tmp_path, "plain", combination="metropolis", **attack)
    resilient = _run(tmp_path, "resilient", aggregation="resilient", **attack)
    clean = _run(tmp_path, "clean", aggregation="resilient", topology="complete")
    assert "full-mse-1" not in plain["final"]  # the normal agents' models diverged: no finite MSE
    normal = np.delete(np.load(tmp_path / "plain" / "models.npy"), 2, axis=0)
    assert np.abs(normal).max(axis=1).min() > 1e6  # every normal agent's model blew up
    assert resilient["final"]["full-mse-1"] < 1.2 * clean["final"]["full-mse-1"]
    assert "byzantine-full-mse-1" in resilient["final"] and "byzantine-full-mse-1" not in clean["final"]
    lines = read_metrics(tmp_path / "resilient")[1:]
    assert all(line["combined"] == 6 and line["byzantine-kept"] == 0 for line in lines)
    assert all(1 <= line["kept"] <= 5 for line in lines)


def test_a_resumed_resilient_run_goes_on_with_its_running_losses(tmp_path: Path) -> None:
    keys = dict(aggregation="resilient", byzantine="1", attack="gaussian", fail_prob=0.2, checkpoint_every=5)
    whole = _run(tmp_path, "whole", num_rounds=20, **keys)
    _run(tmp_path, "short", num_rounds=10, **keys)
    config = RunConfig(results_dir=str(tmp_path), **{**SMALL, **keys, "num_rounds": 20})
    run_vectorized(config.replace(resume_from=str(tmp_path / "short")), 6, **QUIET)
    assert _summary(tmp_path / "short")["final"] == whole["final"]
    np.testing.assert_array_equal(np.load(tmp_path / "short" / "models.npy"), np.load(tmp_path / "whole" / "models.npy"))


def test_resilient_strategy_relays_neighbours_only_and_restores_running_losses() -> None:
    A = np.array([[0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]])  # edges 0-1, 1-2 (support only)
    strategy = ResilientDifMAML(np.zeros(1), A)
    strategy.aggregate_train(1, {0: np.array([1.0]), 2: np.array([3.0])}, {})  # agent 1 failed
    plan = strategy.combine_plan(1)
    assert plan.keys() == {0, 2} and plan[0].models.keys() == {0} and plan[2].models.keys() == {2}
    assert plan[0].running_losses is None
    strategy.aggregate_combine(1, {0: np.array([1.5]), 2: np.array([2.5])}, {0: np.array([0.5, 1.0, 1.0])})
    np.testing.assert_array_equal(strategy.current_models(), [[1.5], [0.0], [2.5]])
    restored = ResilientDifMAML(np.zeros(1), A)
    restored.load_state(strategy.state())
    restored.aggregate_train(2, {0: np.array([1.0])}, {})
    np.testing.assert_array_equal(restored.combine_plan(2)[0].running_losses, [0.5, 1.0, 1.0])
