"""Keyed random streams: every draw of a run comes from (seed, agent, round, stream).

So any engine (Flower simulation, a real SuperNode, the in-process vectorised engine)
draws exactly the same tasks, failures, dropped links and attack noise. Two generators
give the draws of one key:

- ``keyed_generator``: a numpy generator per (seed, agent, round, stream), for draws made
  one agent at a time (failures, attack noise, image tasks: their cost is the images');
- ``keyed_uniform``: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as
  1, 2, 3", SC 2011), a counter-based generator in torch integer ops: the draws of any
  set of agents in one call, on any device, the same bits for one agent as for all
  agents at once and on CPU as on GPU. Its cost does not grow with Python work per
  agent (a numpy generator per agent costs ~40 us: 4 s a round at 100,000 agents).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import torch
from torch import Tensor


class Stream(IntEnum):
    """Independent random streams drawn for one (seed, agent, round)."""

    TRAIN = 0
    EVAL_FULL = 1
    EVAL_OWN = 2
    FAILURE = 3  # does the agent fail this round (fail-prob)
    LINKS = 4  # which links are down this round (link-drop-prob); agent 0 only
    ATTACK = 5  # a Byzantine agent's attack noise
    BYZANTINE = 6  # which agents are Byzantine (byzantine-fraction); agent 0, round 0 only
    SCORE = 7  # tasks the resilient rule scores models on (resilient-score = "fresh")
    TRUTH = 8  # a synthetic family's true models and task graph; agent 0, round 0 only


WORD = 2**32  # seed, agent and round are 32-bit words of Philox's key and counter
MASK32 = WORD - 1
PHILOX_M = (0xD2511F53, 0xCD9E8D57)  # Philox4x32 multipliers
PHILOX_W = (0x9E3779B9, 0xBB67AE85)  # Weyl key increments (golden ratio, sqrt(3) - 1)
PHILOX_ROUNDS = 10


def keyed_generator(seed: int, agent: int, round_: int, stream: Stream) -> np.random.Generator:
    """The numpy generator for agent ``agent``'s draws in round ``round_`` of run ``seed``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, agent, round_, stream])))


Words = Tensor | np.ndarray  # 32-bit words, in int64 tensors or uint64 numpy arrays


def _mulhilo(a: Words, m: int) -> tuple[Words, Words]:
    """(high, low) 32-bit words of a * m, for 32-bit words ``a`` and a 32-bit constant m.
    numpy uint64 holds the 64-bit product; torch's int64 would overflow, so there it is
    multiplied in 16-bit halves."""
    if isinstance(a, np.ndarray):
        product = a * np.uint64(m)
        return product >> np.uint64(32), product & np.uint64(MASK32)
    low_half = (a & 0xFFFF) * m  # < 2^48
    middle = (a >> 16) * m + (low_half >> 16)  # a * m = middle * 2^16 + low_half % 2^16
    return middle >> 16, ((middle & 0xFFFF) << 16) | (low_half & 0xFFFF)


def philox4x32(counter: Sequence[Words], key: Sequence[int]) -> tuple[Words, Words, Words, Words]:
    """Philox4x32-10 of four counter words (int64 tensors or uint64 numpy arrays of 32-bit
    words, broadcast) under a two-word key: each of 10 rounds maps (c0, c1, c2, c3) to
    (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2), hi(M0 c0) ^ c3 ^ k1, lo(M0 c0)), the key bumped by
    the Weyl increments between rounds. Random123's known answers are in tests/test_streams.py."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(PHILOX_ROUNDS):
        if r:
            k0, k1 = (k0 + PHILOX_W[0]) & MASK32, (k1 + PHILOX_W[1]) & MASK32
        hi0, lo0 = _mulhilo(c0, PHILOX_M[0])
        hi1, lo1 = _mulhilo(c2, PHILOX_M[1])
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def _check_word(name: str, value: int) -> None:
    if not 0 <= value < WORD:
        raise ValueError(f"{name}: {value} out of range 0..{WORD - 1} (a 32-bit word of the random key)")


def agent_tensor(agents: Sequence[int] | np.ndarray | Tensor) -> Tensor:
    """``agents`` as an int64 tensor (on the CPU unless it is a tensor already): a ``range``
    (a whole block's agents) or an array without a loop over the agents."""
    if isinstance(agents, range) and agents.step == 1:
        return torch.arange(agents.start, agents.stop, dtype=torch.int64)
    if isinstance(agents, np.ndarray):
        return torch.from_numpy(agents.astype(np.int64, copy=False))
    return torch.as_tensor(agents, dtype=torch.int64)


def keyed_uniform(
    seed: int, agents: Sequence[int] | np.ndarray | Tensor, round_: int, stream: Stream, count: int,
    device: torch.device | str = "cpu",
) -> Tensor:
    """``count`` float64 draws from U[0, 1) for each agent: a (len(agents), count) tensor.

    Key (seed, stream); counter (j, agent, round, 0) gives draws 2j and 2j + 1, each from
    two 32-bit words as numpy makes a double: ((w0 >> 5) 2^26 + (w1 >> 6)) / 2^53. Row i
    depends only on (seed, agents[i], round, stream): the same for one agent as for many.
    """
    _check_word("seed", seed)
    _check_word("round", round_)
    agents = agent_tensor(agents).cpu().reshape(-1, 1)
    if len(agents) and not (0 <= int(agents.min()) and int(agents.max()) < WORD):
        raise ValueError(f"agents: out of range 0..{WORD - 1}")
    pairs = (count + 1) // 2
    if torch.device(device).type == "cpu":  # numpy: a quarter of torch's per-operation cost, the same bits
        j, rows = np.arange(pairs, dtype=np.uint64).reshape(1, -1), agents.numpy().astype(np.uint64)
        zero = np.zeros((1, 1), dtype=np.uint64)
        words = philox4x32((j, rows, zero + np.uint64(round_), zero), (seed, int(stream)))
        double = np.stack([(words[0] >> np.uint64(5)) * np.uint64(2**26) + (words[1] >> np.uint64(6)),
                           (words[2] >> np.uint64(5)) * np.uint64(2**26) + (words[3] >> np.uint64(6))], axis=-1)
        draws = torch.from_numpy(double.astype(np.int64))
    else:
        j = torch.arange(pairs, dtype=torch.int64, device=device).reshape(1, -1)
        zero = torch.zeros((), dtype=torch.int64, device=device)
        words = philox4x32((j, agents.to(device), zero + round_, zero), (seed, int(stream)))
        draws = torch.stack(
            [(words[0] >> 5) * 2**26 + (words[1] >> 6), (words[2] >> 5) * 2**26 + (words[3] >> 6)], dim=-1
        )
    return draws.reshape(len(agents), 2 * pairs)[:, :count].to(torch.float64) / 2.0**53


@dataclass(frozen=True)
class DrawKey:
    """The key of one round's draws of one stream, for any set of agents: (seed, round, stream).

    A task family draws agent k's tasks from ``generator(k)`` (numpy, one agent at a
    time) or from ``uniform(agents, count)`` (all agents at once); ``device`` is where
    tensor draws are made (the uniforms do not depend on it).
    """

    seed: int
    round: int
    stream: Stream
    device: torch.device | str = "cpu"

    def generator(self, agent: int) -> np.random.Generator:
        return keyed_generator(self.seed, agent, self.round, self.stream)

    def uniform(self, agents: Sequence[int], count: int) -> Tensor:
        return keyed_uniform(self.seed, agents, self.round, self.stream, count, self.device)

    def normal(self, agents: Sequence[int], count: int) -> Tensor:
        """``count`` standard normal float64 draws per agent (``box_muller`` of 2 ``count`` uniforms)."""
        return box_muller(self.uniform(agents, 2 * count))


def box_muller(uniform: Tensor) -> Tensor:
    """Standard normals from uniforms in [0, 1) (..., 2n): uniforms 2j and 2j + 1 give
    sqrt(-2 ln(1 - u_2j)) cos(2 pi u_2j+1) (..., n)."""
    return torch.sqrt(-2.0 * torch.log1p(-uniform[..., 0::2])) * torch.cos(2.0 * math.pi * uniform[..., 1::2])
