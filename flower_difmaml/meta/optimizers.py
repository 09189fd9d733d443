"""Functional meta-optimizers: w <- w - mu * step(grad J(w)).

Optimizer state is a flat ``dict[str, Tensor]`` so that it can be stored in a Flower
``ArrayRecord`` (``context.state``) between rounds and stacked over agents for ``vmap``.
Each agent owns its state; states are never combined across agents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from ..errors import check_choice
from .maml import Params

OptimizerState = dict[str, Tensor]
META_OPTIMIZERS = ("sgd", "adam")


class MetaOptimizer(Protocol):
    """A pure update rule: ``step`` returns new parameters and state, mutating nothing."""

    def init(self, params: Params) -> OptimizerState: ...

    def step(
        self, params: Params, grads: Params, state: OptimizerState
    ) -> tuple[Params, OptimizerState]: ...


@dataclass(frozen=True)
class SGD:
    """Plain SGD, the rule of the Dif-MAML analysis: phi = w - mu * grad J(w)."""

    lr: float

    def init(self, params: Params) -> OptimizerState:
        return {}

    def step(
        self, params: Params, grads: Params, state: OptimizerState
    ) -> tuple[Params, OptimizerState]:
        return {n: p - self.lr * grads[n] for n, p in params.items()}, state


@dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba, 2015) as ``torch.optim.Adam`` computes it, one per agent.

    m <- b1 m + (1 - b1) g,  v <- b2 v + (1 - b2) g^2,
    w <- w - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
    """

    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def init(self, params: Params) -> OptimizerState:
        """Zero moments, and the step count t = 0 on the parameters' device (stacked over
        agents, a count on another device than the moments cannot be vmapped)."""
        first = next(iter(params.values()))
        state: OptimizerState = {"step": torch.zeros((), dtype=first.dtype, device=first.device)}
        for n, p in params.items():
            state[f"exp_avg.{n}"] = torch.zeros_like(p)
            state[f"exp_avg_sq.{n}"] = torch.zeros_like(p)
        return state

    def step(
        self, params: Params, grads: Params, state: OptimizerState
    ) -> tuple[Params, OptimizerState]:
        t = state["step"] + 1
        bias1 = 1 - self.beta1**t
        bias2 = 1 - self.beta2**t
        new_params: Params = {}
        new_state: OptimizerState = {"step": t}
        for n, p in params.items():
            m = self.beta1 * state[f"exp_avg.{n}"] + (1 - self.beta1) * grads[n]
            v = self.beta2 * state[f"exp_avg_sq.{n}"] + (1 - self.beta2) * grads[n] ** 2
            new_params[n] = p - self.lr * (m / bias1) / (torch.sqrt(v / bias2) + self.eps)
            new_state[f"exp_avg.{n}"] = m
            new_state[f"exp_avg_sq.{n}"] = v
        return new_params, new_state


def make_meta_optimizer(name: str, lr: float) -> MetaOptimizer:
    """``sgd`` or ``adam`` with learning rate ``lr`` (run-config key ``meta-optimizer``)."""
    check_choice("meta-optimizer", name, META_OPTIMIZERS)
    return SGD(lr) if name == "sgd" else Adam(lr)
