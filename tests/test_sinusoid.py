"""Sinusoid task family: ranges, heterogeneity slices, seeded streams."""

import math

import numpy as np
import pytest
import torch

from flower_difmaml.streams import keyed_generator
from flower_difmaml.tasks.sinusoid import SinusoidTasks
from flower_difmaml.streams import Stream


def test_shapes_dtype_and_function() -> None:
    batch = SinusoidTasks(shots=10, queries=7).sample(keyed_generator(0, 0, 0, Stream.TRAIN), 4, None)
    assert batch.x_support.shape == (4, 10, 1) and batch.x_query.shape == (4, 7, 1)
    assert batch.x_support.dtype == torch.float64
    assert batch.x_support.abs().max() <= 5 and batch.y_support.abs().max() <= 5
    # Both sets of one task lie on the same sinusoid: recover A and phase from the support set.
    rng = keyed_generator(0, 0, 0, Stream.TRAIN)
    amplitude, phase = rng.uniform(0.1, 5.0, (4, 1, 1)), rng.uniform(0, math.pi, (4, 1, 1))
    np.testing.assert_allclose(batch.y_query.numpy(), amplitude * np.sin(batch.x_query.numpy() - phase))


def test_support_and_query_points_are_drawn_independently() -> None:
    batch = SinusoidTasks().sample(keyed_generator(0, 0, 0, Stream.TRAIN), 3, None)
    assert not torch.equal(batch.x_support, batch.x_query)


@pytest.mark.parametrize(("heterogeneity", "index"), [("amplitude", 0), ("phase", 1)])
def test_agent_k_draws_from_the_kth_slice(heterogeneity: str, index: int) -> None:
    family = SinusoidTasks(num_agents=6, heterogeneity=heterogeneity)
    full = family.ranges(None)[index]
    for k in range(6):
        lo, hi = family.ranges(k)[index]
        width = (full[1] - full[0]) / 6
        assert lo == pytest.approx(full[0] + k * width) and hi == pytest.approx(full[0] + (k + 1) * width)
        assert family.ranges(k)[1 - index] == family.ranges(None)[1 - index]
    # The paper's amplitude split: agent k in U[0.1 + 4.9k/6, 0.1 + 4.9(k+1)/6].
    if heterogeneity == "amplitude":
        assert family.ranges(2)[0] == pytest.approx((0.1 + 4.9 * 2 / 6, 0.1 + 4.9 * 3 / 6))


def test_own_tasks_respect_the_slice() -> None:
    family = SinusoidTasks(num_agents=5, heterogeneity="amplitude", shots=50, queries=1)
    batch = family.sample(keyed_generator(0, 4, 0, Stream.TRAIN), 200, 4)
    peak = batch.y_support.abs().amax(dim=(1, 2))
    assert peak.max() <= family.ranges(4)[0][1] + 1e-12
    assert peak.min() > 0.6 * family.ranges(4)[0][0]  # 50 points: the peak is near A


def test_same_seed_same_tasks_other_round_other_tasks() -> None:
    family = SinusoidTasks(num_agents=3, heterogeneity="phase", shots=5, queries=5)
    a = family.sample(keyed_generator(7, 1, 3, Stream.TRAIN), 2, 1)
    b = family.sample(keyed_generator(7, 1, 3, Stream.TRAIN), 2, 1)
    c = family.sample(keyed_generator(7, 1, 4, Stream.TRAIN), 2, 1)
    d = family.sample(keyed_generator(7, 2, 3, Stream.TRAIN), 2, 1)
    e = family.sample(keyed_generator(7, 1, 3, Stream.EVAL_OWN), 2, 1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not any(torch.equal(a.x_support, other.x_support) for other in (c, d, e))


def test_evaluation_batch_uses_100_evenly_spaced_queries() -> None:
    batch = SinusoidTasks().sample_evaluation(keyed_generator(0, 0, 0, Stream.EVAL_FULL), 3, None)
    assert batch.x_support.shape == (3, 10, 1) and batch.x_query.shape == (3, 100, 1)
    torch.testing.assert_close(batch.x_query[1, :, 0], torch.linspace(-5, 5, 100, dtype=torch.float64))


def test_bad_heterogeneity_names_the_key() -> None:
    with pytest.raises(ValueError, match="heterogeneity: unknown 'amp'; allowed: none, amplitude, phase"):
        SinusoidTasks(num_agents=2, heterogeneity="amp")
