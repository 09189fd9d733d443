"""AgentModels: agents' models as stacked rows, read as a mapping; replies checked whole."""

from __future__ import annotations

import numpy as np
import pytest

from flower_difmaml.agent_models import AgentModels
from flower_difmaml.block import TrainReplies
from flower_difmaml.network.combination import weighted_mean
from flower_difmaml.runner.rounds import checked


def test_rows_read_as_a_mapping_without_copies() -> None:
    rows = np.arange(6.0).reshape(3, 2)
    models = AgentModels([4, 1, 7], rows)
    assert list(models) == [4, 1, 7] and len(models) == 3 and 1 in models and 2 not in models
    np.testing.assert_array_equal(models[7], [4.0, 5.0])
    assert np.shares_memory(models[1], rows)
    assert dict(models.items()).keys() == {1, 4, 7}
    with pytest.raises(KeyError):
        models[2]
    with pytest.raises(ValueError, match="rows of shape"):
        AgentModels([0, 1], rows)
    kept = models.select(np.array([True, False, True]))
    assert list(kept) == [4, 7]


def test_of_stacks_a_dict_and_keeps_stacked_rows() -> None:
    stacked = AgentModels([0, 1], np.ones((2, 3)))
    assert AgentModels.of(stacked) is stacked
    made = AgentModels.of({2: np.zeros(3), 0: np.ones(3)})
    assert made.ids.tolist() == [2, 0] and made.rows.shape == (2, 3)


def test_weighted_mean_is_the_same_for_a_dict_and_stacked_rows_in_any_order() -> None:
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((4, 5))
    tasks = {0: 1, 1: 3, 2: 2, 3: 5}
    by_hand = (1 * rows[0] + 3 * rows[1] + 2 * rows[2] + 5 * rows[3]) / 11
    shuffled = AgentModels([2, 0, 3, 1], rows[[2, 0, 3, 1]])
    np.testing.assert_allclose(weighted_mean(shuffled, tasks), by_hand, rtol=1e-14)
    assert weighted_mean(shuffled, tasks).tobytes() == weighted_mean(dict(enumerate(rows)), tasks).tobytes()


def test_stacked_replies_are_checked_whole_and_a_nan_row_is_rejected() -> None:
    rows = np.zeros((3, 4))
    ok = TrainReplies(AgentModels([0, 1, 2], rows), dict.fromkeys(range(3), 1), dict.fromkeys(range(3), 0.5), 0.0)
    assert checked(ok, 4) is ok
    rows[1, 2] = np.nan
    bad = checked(ok, 4)
    assert sorted(bad.models) == [0, 2] and sorted(bad.losses) == [0, 2]
    assert bad.failed == {1: "reply rejected: model has NaN or Inf entries"}
    wrong = checked(TrainReplies(AgentModels([0], np.zeros((1, 4), dtype=np.float32)), {0: 1}, {0: 0.5}, 0.0), 4)
    assert not wrong.models and "dtype float32" in wrong.failed[0]


def test_a_replys_numbers_read_as_a_mapping_and_are_taken_whole() -> None:
    """AgentValues: a reply's task counts and meta-losses as two arrays, read as a dict would
    be (Python numbers); values_of and mean_loss take them without per-agent Python."""
    from flower_difmaml.agent_models import AgentValues, values_of
    from flower_difmaml.runner.rounds import mean_loss

    losses = AgentValues([2, 5, 9], np.array([0.5, 1.5, 4.0], dtype=np.float32))
    assert dict(losses) == {2: 0.5, 5: 1.5, 9: 4.0} and isinstance(losses[5], float) and 3 not in losses
    assert np.shares_memory(values_of(losses, np.array([2, 5, 9]), np.float32), losses.numbers)  # whole, no copy
    assert sorted(losses.values()) == [0.5, 1.5, 4.0] and sum(AgentValues([0, 1], [2, 2]).values()) == 4  # a mapping's
    np.testing.assert_array_equal(values_of(losses, np.array([9, 2])), [4.0, 0.5])  # another order: by agent
    np.testing.assert_array_equal(values_of({9: 4.0, 2: 0.5}, np.array([2, 9])), [0.5, 4.0])  # a dict (Flower's replies)
    assert mean_loss(losses) == pytest.approx(2.0) and mean_loss(losses, frozenset({9})) == pytest.approx(1.0)
    assert mean_loss(dict(losses), frozenset({9})) == mean_loss(losses, frozenset({9}))
    assert mean_loss(losses, frozenset({2, 5, 9})) is None and mean_loss({}) is None
    with pytest.raises(ValueError, match="2 numbers for 3 agents"):
        AgentValues([1, 2, 3], [0.0, 1.0])
    tasks = AgentValues([0, 1], [1, 3])  # FedAvg's weights n_k
    np.testing.assert_allclose(weighted_mean(AgentModels([0, 1], np.array([[0.0], [4.0]])), tasks), [3.0])
