"""The in-process vectorised engine: all agents' meta-steps in one ``torch.func.vmap``.

Same config keys, same learner code, same seeded tasks and the same results files as a
Flower run, without messages: for sweeps. A Flower run and a vectorised run of one config
give the same numbers (to float64 round-off). Computes on key ``device``. With key
``compile`` the meta-step of all agents is compiled by ``torch.compile`` (about 30 s; once
more, for any number of agents, when that number first changes between rounds): the same
numbers to float round-off, training rounds 1.6-3.3x faster on 2 CPU cores at N = 1000-10
(benchmarks/results/vectorized_round.json).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch.func import vmap

from ..config import RunConfig
from ..learner import MetaLearner
from ..meta import TaskBatch
from ..network.faults import INJECTED_FAILURE, agent_fails
from ..network.resilient import initial_running_losses
from ..strategies.base import CombineRequest
from .experiment import run_experiment, set_up_run
from .rounds import CombineReplies, TrainReplies

EVAL_TASKS_PER_CHUNK = 2000  # evaluation tasks in one vmap call (bounds memory at N = 1000)
# agents per vmap call of the meta-step (N = 1000, float32, 2 cores: 533 ms a step vs 721 ms in one call)
TRAIN_AGENTS_PER_CHUNK = 256


class VectorizedAgents:
    """All N agents in this process; each agent's meta-optimizer state and running losses
    kept, never shared. Byzantine agents send their attack's models."""

    def __init__(self, learner: MetaLearner) -> None:
        self.learner = learner
        self.initial_state = learner.optimizer.init(learner.initial_parameters())
        self.states = {k: self.initial_state for k in range(learner.num_agents)}
        self.running_losses = {k: initial_running_losses(learner.num_agents) for k in range(learner.num_agents)}
        step = vmap(learner.meta_step, chunk_size=TRAIN_AGENTS_PER_CHUNK)
        self.step = torch.compile(step) if learner.config.compile else step  # key compile
        self._eval_batches: dict[str, TaskBatch] | None = None

    def train(self, round_: int, plan: dict[int, np.ndarray]) -> TrainReplies:
        config = self.learner.config
        failed = {k: INJECTED_FAILURE for k in plan if agent_fails(config.seed, k, round_, config.fail_prob)}
        agents = sorted(k for k in plan if k not in failed)
        if not agents:
            return TrainReplies({}, {}, {}, 0.0, failed)
        params = self.learner.layout.params(np.stack([plan[k] for k in agents]))
        batch = self.learner.train_batches(agents, round_)
        state = {n: torch.stack([self.states[k][n] for k in agents]) for n in self.initial_state}
        start = time.perf_counter()
        new_params, new_state, losses = self.step(params, state, batch)
        seconds = time.perf_counter() - start
        for i, k in enumerate(agents):
            self.states[k] = {n: v[i] for n, v in new_state.items()}
        vectors = self.learner.layout.vector(new_params)
        tasks = self.learner.config.tasks_per_agent
        return TrainReplies(
            models={k: self.learner.sent_model(vectors[i], k, round_) for i, k in enumerate(agents)},
            num_tasks={k: tasks for k in agents},
            losses=dict(zip(agents, losses.cpu().tolist())),
            agent_seconds=seconds,
            failed=failed,
        )

    def combine(self, round_: int, plan: dict[int, CombineRequest]) -> CombineReplies:
        """Each planned agent's resilient step, one agent after the other."""
        out = CombineReplies({}, {}, {})
        for k, request in plan.items():
            if request.running_losses is not None:
                self.running_losses[k] = np.array(request.running_losses)
            model, self.running_losses[k], out.kept[k] = self.learner.resilient_step(
                k, round_, request.models, self.running_losses[k]
            )
            out.models[k], out.running_losses[k] = model, self.running_losses[k]
        return out

    def optimizer_states(self) -> dict[int, dict[str, np.ndarray]]:
        return {k: {n: v.cpu().numpy() for n, v in state.items()} for k, state in self.states.items() if state}

    def load_optimizer_states(self, states: dict[int, dict[str, np.ndarray]]) -> None:
        device = self.learner.device
        for k, state in states.items():
            self.states[k] = {n: torch.from_numpy(np.array(v)).to(device) for n, v in state.items()}

    def evaluation_batches(self) -> dict[str, TaskBatch]:
        """Every agent's fixed evaluation tasks, stacked (drawn once)."""
        if self._eval_batches is None:
            self._eval_batches = self.learner.evaluation_batches(range(self.learner.num_agents))
        return self._eval_batches

    def evaluate(self, round_: int, models: np.ndarray, steps: Sequence[int]) -> dict[str, np.ndarray]:
        params = self.learner.layout.params(np.asarray(models))
        evaluate = vmap(lambda p, b: self.learner.evaluate_batch(p, b, steps))
        chunk = max(1, EVAL_TASKS_PER_CHUNK // self.learner.config.eval_tasks)
        out = {}
        for source, batch in self.evaluation_batches().items():
            parts = [
                evaluate({n: p[i : i + chunk] for n, p in params.items()}, TaskBatch(*(t[i : i + chunk] for t in batch)))
                for i in range(0, len(models), chunk)
            ]
            for name in parts[0]:
                out[f"{source}-{name}"] = torch.cat([part[name] for part in parts]).cpu().numpy().astype(np.float64)
        return out


def run_vectorized(config: RunConfig, num_agents: int, *, progress: Callable[[str], None] = print) -> dict:
    """Run ``config`` on ``num_agents`` agents in this process; returns the summary.

    numpy's BLAS (the strategies' combination) runs on one thread here: its idle threads
    spin after each product and take the cores from torch's meta-step that follows (on 2
    cores, N = 100: a 118 ms step instead of 65 ms).
    """
    with threadpool_limits(limits=1, user_api="blas"):
        setup = set_up_run(config, num_agents)
        return run_experiment(setup, VectorizedAgents, progress=progress, extra={"engine": "vectorized"})
