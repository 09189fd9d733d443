"""Strategy state updates, by hand (no Flower run needed)."""

from __future__ import annotations

import numpy as np

from flower_difmaml.strategies import DifMAML, FedAvgMAML, NonCooperative


def test_atc_combines_neighbour_replies_with_column_weights() -> None:
    A = np.array([[0.5, 0.25, 0.0], [0.5, 0.5, 0.5], [0.0, 0.25, 0.5]])  # columns sum to 1
    strategy = DifMAML(np.zeros(2), A)
    strategy.aggregate_train(1, {0: np.array([4.0, 0.0]), 1: np.array([0.0, 8.0]), 2: np.array([2.0, 2.0])}, {})
    # w_1 = 0.25 phi_0 + 0.5 phi_1 + 0.25 phi_2 = (1.5, 4.5)
    np.testing.assert_allclose(strategy.current_models()[1], [1.5, 4.5])
    np.testing.assert_allclose(strategy.current_models()[0], [2.0, 4.0])


def test_cta_models_are_the_replies() -> None:
    A = np.full((2, 2), 0.5)
    strategy = DifMAML(np.zeros(1), A, combine_then_adapt=True)
    strategy.aggregate_train(1, {0: np.array([1.0]), 1: np.array([3.0])}, {})
    np.testing.assert_allclose(strategy.current_models(), [[1.0], [3.0]])
    np.testing.assert_allclose(strategy.combined(), [[2.0], [2.0]])


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
