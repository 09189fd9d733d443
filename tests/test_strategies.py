"""Strategy state updates, by hand (no Flower run needed)."""

from __future__ import annotations

import numpy as np

from flower_difmaml.agent_models import AgentModels
from flower_difmaml.strategies import DifMAML, FedAvgMAML, NonCooperative


def test_atc_combines_neighbour_replies_with_column_weights() -> None:
    A = np.array([[0.5, 0.25, 0.0], [0.5, 0.5, 0.5], [0.0, 0.25, 0.5]])  # columns sum to 1
    strategy = DifMAML(np.zeros(2), A)
    strategy.aggregate_train(1, {0: np.array([4.0, 0.0]), 1: np.array([0.0, 8.0]), 2: np.array([2.0, 2.0])}, {})
    # w_1 = 0.25 phi_0 + 0.5 phi_1 + 0.25 phi_2 = (1.5, 4.5)
    np.testing.assert_allclose(strategy.current_models()[1], [1.5, 4.5])
    np.testing.assert_allclose(strategy.current_models()[0], [2.0, 4.0])


def test_a_round_where_every_agent_replies_in_order_equals_one_in_any_order() -> None:
    """Every agent's reply, in agent order, is combined as it came (no copy); in another order
    it goes through the general path: the same models to the bit, in ATC and CTA, over rounds."""
    rng = np.random.default_rng(0)
    A = rng.random((5, 5)) * (rng.random((5, 5)) < 0.6) + np.eye(5)
    A /= A.sum(axis=0)
    for cta in (False, True):
        in_order, shuffled = DifMAML(np.ones(3), A, cta), DifMAML(np.ones(3), A, cta)
        for round_ in (1, 2, 3):
            phi = {k: rng.normal(size=3) for k in range(5)}
            in_order.aggregate_train(round_, AgentModels(np.arange(5), np.stack([phi[k] for k in range(5)])), {})
            shuffled.aggregate_train(round_, {k: phi[k] for k in (3, 1, 4, 0, 2)}, {})
            np.testing.assert_array_equal(in_order.current_models(), shuffled.current_models())
            np.testing.assert_array_equal(np.stack(list(in_order.train_plan(round_ + 1).values())),
                                          np.stack(list(shuffled.train_plan(round_ + 1).values())))


def test_cta_models_are_the_replies() -> None:
    A = np.full((2, 2), 0.5)
    strategy = DifMAML(np.zeros(1), A, combine_then_adapt=True)
    strategy.aggregate_train(1, {0: np.array([1.0]), 1: np.array([3.0])}, {})
    np.testing.assert_allclose(strategy.current_models(), [[1.0], [3.0]])
    plan = strategy.train_plan(2)  # psi_k = sum_l a_lk w_l
    np.testing.assert_allclose([plan[0], plan[1]], [[2.0], [2.0]])


def test_atc_missing_agent_keeps_its_model_and_weights_are_renormalised() -> None:
    A = np.array([[0.5, 0.25, 0.0], [0.5, 0.5, 0.5], [0.0, 0.25, 0.5]])
    strategy = DifMAML(np.zeros(2), A)
    strategy.aggregate_train(1, {0: np.array([4.0, 0.0]), 2: np.array([2.0, 2.0])}, {})  # agent 1 failed
    models = strategy.current_models()
    np.testing.assert_allclose(models[1], [0.0, 0.0])  # kept w_1 = initial
    # agent 0: only l = 0 of its neighbours {0, 1} replied: weight 0.5 / 0.5 = 1
    np.testing.assert_allclose(models[0], [4.0, 0.0])
    np.testing.assert_allclose(models[2], [2.0, 2.0])
    # round 2, agent 2 failed: agent 1 combines 0.25 phi_0 + 0.5 phi_1 over 0.75
    strategy.aggregate_train(2, {0: np.array([3.0, 0.0]), 1: np.array([0.0, 3.0])}, {})
    np.testing.assert_allclose(strategy.current_models()[1], [1.0, 2.0])
    np.testing.assert_allclose(strategy.current_models()[2], [2.0, 2.0])


def test_cta_combines_over_the_models_that_arrived_last_round() -> None:
    A = np.full((2, 2), 0.5)
    strategy = DifMAML(np.zeros(1), A, combine_then_adapt=True)
    strategy.aggregate_train(1, {0: np.array([4.0])}, {})  # agent 1 failed: keeps w_1 = 0
    np.testing.assert_allclose(strategy.current_models(), [[4.0], [0.0]])
    plan = strategy.train_plan(2)  # only w_0 arrived in round 1: both start from it
    np.testing.assert_allclose([plan[0], plan[1]], [[4.0], [4.0]])


def test_state_round_trip_goes_on_identically() -> None:
    A = np.array([[0.5, 0.25, 0.0], [0.5, 0.5, 0.5], [0.0, 0.25, 0.5]])
    first, second = DifMAML(np.zeros(2), A, True), DifMAML(np.ones(2), A, True)
    first.aggregate_train(1, {0: np.array([4.0, 0.0]), 2: np.array([2.0, 2.0])}, {})
    second.load_state(first.state())
    for strategy in (first, second):
        strategy.aggregate_train(2, {1: np.array([1.0, 1.0])}, {})
    np.testing.assert_array_equal(first.current_models(), second.current_models())
    np.testing.assert_array_equal(first.train_plan(3)[0], second.train_plan(3)[0])
    fedavg = FedAvgMAML(3, np.zeros(2), 1.0, 0)
    fedavg.aggregate_train(1, {0: np.array([1.0, 2.0])}, {0: 1})
    other = FedAvgMAML(3, np.zeros(2), 1.0, 0)
    other.load_state(fedavg.state())
    np.testing.assert_array_equal(other.current_models(), fedavg.current_models())


def test_fedavg_averages_only_the_replies_it_got_and_drops_agents_whose_link_is_down() -> None:
    strategy = FedAvgMAML(10, np.zeros(1), participation=1.0, seed=3, link_drop_prob=0.5)
    plans = [sorted(strategy.train_plan(r)) for r in range(1, 6)]
    assert all(0 < len(p) < 10 for p in plans) and len({tuple(p) for p in plans}) > 1
    assert strategy.round_metrics(1) == {"links-down": 10 - len(plans[0])}
    strategy.aggregate_train(1, {2: np.array([2.0]), 5: np.array([6.0])}, {2: 10, 5: 10})
    np.testing.assert_allclose(strategy.current_models()[0], [4.0])
    strategy.aggregate_train(2, {}, {})  # nobody replied: the global model stays
    np.testing.assert_allclose(strategy.current_models()[0], [4.0])


def test_non_cooperative_keeps_each_reply() -> None:
    strategy = NonCooperative(2, np.zeros(1))
    strategy.aggregate_train(1, {0: np.array([1.0]), 1: np.array([3.0])}, {})
    np.testing.assert_allclose(strategy.current_models(), [[1.0], [3.0]])


def test_fedavg_weights_by_number_of_tasks_and_samples_reproducibly() -> None:
    strategy = FedAvgMAML(10, np.zeros(1), participation=0.3, seed=4)
    sample = strategy.sample(7)
    assert len(sample) == 3 and sample == strategy.sample(7) and sample == sorted(sample)
    assert any(strategy.sample(r) != sample for r in range(8, 12))
    strategy.aggregate_train(1, {sample[0]: np.array([1.0]), sample[1]: np.array([4.0])}, {sample[0]: 1, sample[1]: 2})
    np.testing.assert_allclose(strategy.current_models(), np.full((10, 1), 3.0))
    assert FedAvgMAML(2, np.zeros(1), participation=0.1, seed=0).sample(1) in ([0], [1])


def test_plans_name_who_trains_from_what() -> None:
    A = np.array([[0.5, 0.5], [0.5, 0.5]])
    strategy = DifMAML(np.array([1.0]), A)
    strategy.aggregate_train(1, {0: np.array([2.0]), 1: np.array([4.0])}, {})
    assert {k: float(v[0]) for k, v in strategy.train_plan(2).items()} == {0: 3.0, 1: 3.0}
    fed = FedAvgMAML(4, np.array([7.0]), participation=0.5, seed=0)
    plan = fed.train_plan(1)
    assert sorted(plan) == fed.sample(1) and all(float(v[0]) == 7.0 for v in plan.values())
