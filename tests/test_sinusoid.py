"""Sinusoid task family: ranges, heterogeneity slices, seeded streams."""

import math

import numpy as np
import pytest
import torch

from helpers import agent_tasks
from flower_difmaml.streams import DrawKey, Stream, keyed_uniform
from flower_difmaml.tasks.sinusoid import SinusoidTasks


def test_shapes_dtype_and_function() -> None:
    batch = agent_tasks(SinusoidTasks(shots=10, queries=7).sample, 4)
    assert batch.x_support.shape == (4, 10, 1) and batch.x_query.shape == (4, 7, 1)
    assert batch.x_support.dtype == torch.float64
    assert batch.x_support.abs().max() <= 5 and batch.y_support.abs().max() <= 5
    # Both sets of one task lie on the same sinusoid: recover A and phase from the support set.
    u = keyed_uniform(0, [0], 0, Stream.TRAIN, 8)[0].numpy().reshape(2, 4, 1, 1)
    amplitude, phase = 0.1 + 4.9 * u[0], math.pi * u[1]
    np.testing.assert_allclose(batch.y_query.numpy(), amplitude * np.sin(batch.x_query.numpy() - phase))


def test_support_and_query_points_are_drawn_independently() -> None:
    batch = agent_tasks(SinusoidTasks().sample, 3)
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
    batch = agent_tasks(family.sample, 200, 4)
    peak = batch.y_support.abs().amax(dim=(1, 2))
    assert peak.max() <= family.ranges(4)[0][1] + 1e-12
    assert peak.min() > 0.6 * family.ranges(4)[0][0]  # 50 points: the peak is near A


def test_same_seed_same_tasks_other_round_other_tasks() -> None:
    family = SinusoidTasks(num_agents=3, heterogeneity="phase", shots=5, queries=5)
    a = agent_tasks(family.sample, 2, 1, seed=7, round_=3)
    b = agent_tasks(family.sample, 2, 1, seed=7, round_=3)
    c = agent_tasks(family.sample, 2, 1, seed=7, round_=4)
    d = agent_tasks(family.sample, 2, 2, seed=7, round_=3)
    e = agent_tasks(family.sample, 2, 1, seed=7, round_=3, stream=Stream.EVAL_OWN)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not any(torch.equal(a.x_support, other.x_support) for other in (c, d, e))


def test_evaluation_batch_uses_100_evenly_spaced_queries() -> None:
    batch = agent_tasks(SinusoidTasks().sample_evaluation, 3, stream=Stream.EVAL_FULL)
    assert batch.x_support.shape == (3, 10, 1) and batch.x_query.shape == (3, 100, 1)
    torch.testing.assert_close(batch.x_query[1, :, 0], torch.linspace(-5, 5, 100, dtype=torch.float64))


def test_bad_heterogeneity_names_the_key() -> None:
    with pytest.raises(ValueError, match="heterogeneity: unknown 'amp'; allowed: none, amplitude, phase"):
        SinusoidTasks(num_agents=2, heterogeneity="amp")


def test_all_agents_at_once_give_each_agent_its_own_tasks() -> None:
    """The vectorised engine draws all agents in one call, a ClientApp one agent: the same tasks."""
    family = SinusoidTasks(num_agents=5, heterogeneity="amplitude", shots=3, queries=4, dtype=torch.float32)
    for draw in (family.sample, lambda key, t, agents: family.sample_evaluation(key, t, agents, own=True)):
        key = DrawKey(11, 2, Stream.TRAIN)
        together = draw(key, 6, range(5))
        assert together.x_support.shape == (5, 6, 3, 1) and together.x_support.dtype == torch.float32
        for k in range(5):
            alone = draw(key, 6, [k]).agent(0)
            assert all(torch.equal(x, y) for x, y in zip(together.agent(k), alone))
            assert together.y_support[k].abs().max() <= family.ranges(k)[0][1]
