"""Multitask diffusion over a learned task graph (Wan and Vlaski, "Multitask Learning with
Learned Task Relationships", arXiv 2510.10570; "Decentralized Multitask Learning over
Learned Task Graphs").

Phase I, rounds 1..``graph-warmup``: the agents learn alone, w_k = phi_k = w_k - mu grad J_k(w_k).
Estimate, at round ``graph-warmup`` + 1 and every ``graph-reestimate-every`` rounds after
(0: never again): row k of L' from the models w_l of agent k's closed neighbourhood at the
start of the round, Gamma_k = (X_k X_k^T / M)^-1; L_hat = (L' + L'^T) / 2
(``network.laplacian.estimate_laplacian``). The bus computes row k on agent k's behalf from
exactly the models agent k would receive, as it computes Dif-MAML's combination with known
weights; it holds no model of its own. ``graph-form``: ``laplacian`` (default) estimates from
the neighbourhood's centred models and combines with the Laplacian of the learned positive
weights between agents whose partial correlation is at least ``graph-threshold`` (0.25), the
centred Sigma_k shrunk by ``graph-shrinkage`` (0.1; see ``network.laplacian``); ``ggl`` with
L_hat itself (the paper).
Phase II, the multitask step:

    psi_k = phi_k = w_k - mu' grad J_k(w_k),    w_k = psi_k - c_k sum_{l in N_k} L_kl psi_l,

c_k = mu' eta with eta = ``graph-eta`` (> 0, and c <= 2 / lambda_max(L): a ConfigError names
the keys otherwise), or the Jacobi step c_k = s / L_kk, s = ``graph-step`` * 2 /
lambda_max(D^-1/2 L D^-1/2) (``graph-eta`` = 0: each agent moves the fraction s of the way to
its neighbours' weighted mean; see ``network.laplacian.multitask_steps``). A known
task graph (``known``: key ``graph-laplacian``) replaces the estimate (multitask diffusion with
the true L, never re-estimated). That is
Dif-MAML's combination with A = I - L diag(c), so faults are handled as Dif-MAML handles them: an
agent that does not reply keeps its model, the others renormalise over the senders. With
L = 0 it is the non-cooperative rule.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..agent_models import AgentModels
from ..network.laplacian import (
    estimate_laplacian, extreme_eigenvalues, graph_form, multitask_combination, multitask_steps,
)
from .diffusion import DifMAML


class LearnedGraph(DifMAML):
    """Agents alone for ``warmup`` rounds, then multitask diffusion over the task graph they
    estimate on the support of ``support`` (the graph: its closed neighbourhoods)."""

    name = "learned-graph"
    tensor_models = False  # numpy code: the graph estimate from the models

    def __init__(
        self,
        initial: np.ndarray,
        support: sp.sparray,
        *,
        warmup: int,
        reestimate_every: int = 0,
        form: str = "laplacian",
        threshold: float = 0.25,
        shrinkage: float = 0.1,
        eta: float = 0.0,
        step: float = 0.5,
        meta_lr: float = 0.03,
        known: sp.sparray | None = None,
    ) -> None:
        self.support = sp.csc_array(support)
        self.known = known
        self.warmup, self.reestimate_every = warmup, reestimate_every
        self.threshold = threshold if known is None else 0.0  # a known L is taken whole
        self.shrinkage = shrinkage if form == "laplacian" else 0.0  # ggl: the paper's estimate
        self.form, self.eta, self.step, self.meta_lr = form, eta, step, meta_lr
        self.estimate: sp.csc_array | None = None  # L_hat
        self.estimated_at = 0  # the round of the latest estimate (0: none yet)
        self.graph_steps = np.zeros(self.support.shape[0])  # c_k
        self.multitask = sp.eye_array(self.support.shape[0], format="csc")  # A = I - L diag(c); I before the estimate
        super().__init__(initial, lambda round_: self.multitask)

    def due(self, round_: int) -> bool:
        """Whether round ``round_`` starts with a (new) estimate."""
        if round_ <= self.warmup or round_ == self.estimated_at:
            return False
        if self.estimate is None:
            return True
        return self.known is None and self.reestimate_every > 0 and (round_ - self.warmup - 1) % self.reestimate_every == 0

    def train_plan(self, round_: int) -> AgentModels:
        if self.due(round_):
            estimate = (estimate_laplacian(self.models, self.support, centred=self.form == "laplacian",
                                           shrinkage=self.shrinkage)
                        if self.known is None else self.known)
            self.estimate, self.estimated_at = sp.csc_array(estimate), round_
            self._set_combination()
        return super().train_plan(round_)

    def _set_combination(self) -> None:
        laplacian = graph_form(self.estimate, self.form, self.threshold)
        self.graph_steps = multitask_steps(laplacian, self.meta_lr, self.eta, self.step)
        self.multitask = multitask_combination(laplacian, self.graph_steps)

    def round_metrics(self, round_: int) -> dict:
        """On an estimate's round: its edges (l < k, learned weight -L_hat_kl > 0), the weight of
        every pair of neighbours [l, k, -L_hat_kl], each agent's step c_k, and lambda_min and lambda_max of
        the L it combines with (lambda_min < 0: the multitask step is unstable, see
        ``extreme_eigenvalues``)."""
        if self.estimated_at != round_:
            return {}
        upper = sp.triu(self.estimate, k=1).tocoo()
        weights = [[int(l), int(k), float(-v)] for l, k, v in zip(upper.row, upper.col, upper.data)]
        lambda_min, lambda_max = extreme_eigenvalues(graph_form(self.estimate, self.form, self.threshold))
        return {
            "graph-edges": sum(w > 0 for _, _, w in weights),
            "graph-weights": weights,
            "graph-step": [float(c) for c in self.graph_steps],
            "graph-lambda-min": lambda_min,
            "graph-lambda-max": lambda_max,
        }

    def artifacts(self) -> dict[str, np.ndarray]:
        return {} if self.estimate is None else {"laplacian": self.estimate.toarray()}

    def state(self) -> dict[str, np.ndarray]:
        estimate = np.zeros((0, 0)) if self.estimate is None else self.estimate.toarray()
        return {**super().state(), "laplacian": estimate, "estimated-at": np.array(self.estimated_at)}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        super().load_state(state)
        self.estimated_at = int(state["estimated-at"])
        if state["laplacian"].size:
            self.estimate = sp.csc_array(np.array(state["laplacian"]))
            self._set_combination()
