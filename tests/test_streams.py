"""Keyed draws: Philox4x32-10 against Random123's known answers, one agent vs all agents."""

import numpy as np
import pytest
import torch

from flower_difmaml.streams import DrawKey, Stream, agent_tensor, keyed_uniform, philox4x32

# Random123's kat_vectors, the three "philox4x32 10" lines: counter, key, result.
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize(("counter", "key", "expected"), KNOWN_ANSWERS)
def test_philox_matches_random123(counter, key, expected) -> None:
    words = philox4x32([torch.tensor(c, dtype=torch.int64) for c in counter], key)
    assert tuple(int(w) for w in words) == expected


@pytest.mark.parametrize(("counter", "key", "expected"), KNOWN_ANSWERS)
def test_philox_in_numpy_matches_random123(counter, key, expected) -> None:
    words = philox4x32([np.array([c], dtype=np.uint64) for c in counter], key)
    assert tuple(int(w[0]) for w in words) == expected


def test_philox_gives_the_same_words_in_numpy_and_torch() -> None:
    """The CPU draws (numpy) and the other devices' (torch integer ops) are the same bits."""
    counter = np.random.default_rng(0).integers(0, 2**32, size=(4, 10_000), dtype=np.uint64)
    in_numpy = philox4x32(list(counter), (0x9E3779B9, 7))
    in_torch = philox4x32([torch.from_numpy(c.astype(np.int64)) for c in counter], (0x9E3779B9, 7))
    for a, b in zip(in_numpy, in_torch):
        np.testing.assert_array_equal(a.astype(np.int64), b.numpy())


def test_one_agent_draws_what_it_draws_among_all() -> None:
    together = keyed_uniform(3, range(50), 7, Stream.TRAIN, 9)
    assert together.shape == (50, 9) and together.dtype == torch.float64
    for k in (0, 17, 49):
        assert torch.equal(keyed_uniform(3, [k], 7, Stream.TRAIN, 9)[0], together[k])
    # A longer draw starts with the shorter one (counter j gives draws 2j, 2j + 1).
    assert torch.equal(keyed_uniform(3, [5], 7, Stream.TRAIN, 4)[0], together[5, :4])


def test_every_part_of_the_key_changes_the_draws() -> None:
    base = keyed_uniform(1, [2], 3, Stream.TRAIN, 64)
    for other in (keyed_uniform(0, [2], 3, Stream.TRAIN, 64), keyed_uniform(1, [1], 3, Stream.TRAIN, 64),
                  keyed_uniform(1, [2], 4, Stream.TRAIN, 64), keyed_uniform(1, [2], 3, Stream.SCORE, 64)):
        assert not torch.isclose(base, other).any()


def test_draws_look_uniform() -> None:
    u = keyed_uniform(0, range(1000), 0, Stream.TRAIN, 200).numpy()
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 1e-3 and abs(u.var() - 1 / 12) < 1e-3  # 200,000 draws: 5 sigma bounds
    counts, _ = np.histogram(u, bins=20, range=(0, 1))
    chi2 = float(((counts - u.size / 20) ** 2 / (u.size / 20)).sum())
    assert chi2 < 43.8  # 19 degrees of freedom, p = 0.001
    assert abs(np.corrcoef(u[:, :-1].ravel(), u[:, 1:].ravel())[0, 1]) < 0.01  # neighbouring draws


def test_words_out_of_range_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"^seed: 4294967296 out of range 0\.\.4294967295"):
        keyed_uniform(2**32, [0], 0, Stream.TRAIN, 1)
    with pytest.raises(ValueError, match=r"^agents: out of range"):
        keyed_uniform(0, [-1], 0, Stream.TRAIN, 1)


def test_draw_key_gives_both_generators() -> None:
    key = DrawKey(4, 2, Stream.EVAL_OWN)
    assert torch.equal(key.uniform([3], 5), keyed_uniform(4, [3], 2, Stream.EVAL_OWN, 5))
    assert key.generator(3).random() == DrawKey(4, 2, Stream.EVAL_OWN).generator(3).random()


@pytest.mark.cuda
def test_cuda_draws_equal_cpu_draws() -> None:
    on_gpu = keyed_uniform(9, range(1000), 5, Stream.TRAIN, 33, device="cuda")
    assert torch.equal(on_gpu.cpu(), keyed_uniform(9, range(1000), 5, Stream.TRAIN, 33))


def test_agents_become_a_tensor_without_a_loop_and_draw_the_same() -> None:
    """A block's agents as a range (all of them) or an array give the list's tensor and draws."""
    for agents in (range(3, 9), np.arange(3, 9), torch.arange(3, 9), range(3, 9, 2), [3, 5, 7]):
        torch.testing.assert_close(agent_tensor(agents), torch.tensor(list(agents), dtype=torch.int64), rtol=0, atol=0)
    torch.testing.assert_close(keyed_uniform(4, range(3, 9), 2, Stream.TRAIN, 7),
                               keyed_uniform(4, list(range(3, 9)), 2, Stream.TRAIN, 7), rtol=0, atol=0)
