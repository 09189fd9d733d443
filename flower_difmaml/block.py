"""An agent block: what a set of agents computes, for every engine (no Flower import).

A block is the agent side of a run for agents ``k in agents`` (one agent, a SuperNode's
share, or all N): their meta-optimizer states and running losses, and one method per
request the round loop sends them,

    train(TrainRequest)       -> TrainReplies     phi_k = w_k - mu * step(grad J_k(w_k)), all in one vmap
    combine(CombineRequest)   -> CombineReplies   the resilient rule on each agent's own tasks
    evaluate(EvaluateRequest) -> EvaluateReplies  the family's metrics after adaptation (vmapped calls of bounded memory)

The vectorised engine is one block of all N agents in its process; a Flower ClientApp
hosts the block of its node (``block_agents``: node m of M hosts a contiguous range), and
``flower.codec`` turns the same requests and replies into messages. Every draw is keyed
by (seed, agent, round, stream), so a block of any size gives each agent the same numbers.
Adapted models leave a block as numpy rows (messages), or, for the vectorised engine's
tensor-native rounds (``on_device``), as one tensor on the device the agents computed on.

Faults (``fail-prob``) are drawn per agent: a failing agent is left out of its block's
reply, with the reason, and keeps its meta-optimizer state. A Byzantine agent runs this
same code and sends its attack's model instead of the one it adapted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.func import vmap

from .agent_models import AgentModels, AgentValues, as_rows_of, on_host
from .config import ConfigError, RunConfig
from .learner import MetaLearner
from .meta import TaskBatch
from .network.combination import weighted_mean
from .network.faults import INJECTED_FAILURE, failing_agents
from .network.resilient import initial_running_losses
from .strategies.base import NeighbourModels

# at most this many agents a vmap call of the meta-step (N = 1000, float32, 2 cores: 533 ms a
# step vs 721 ms in one call), fewer where their tasks exceed key chunk-memory-mb
TRAIN_AGENTS_PER_CHUNK = 256

OptimizerStates = dict[int, dict[str, np.ndarray]]  # agent -> its meta-optimizer state, on the host


def num_agents_of(config: RunConfig, num_nodes: int) -> int:
    """N for a run on ``num_nodes`` nodes: key ``num-agents``, or one agent a node where it is 0."""
    if config.num_agents == 0:
        return num_nodes
    if num_nodes > config.num_agents:
        raise ConfigError(
            f"num-agents: {config.num_agents} agents on {num_nodes} SuperNodes; "
            f"allowed: at least one agent a node (num-agents >= {num_nodes}), or 0 (one agent a node)"
        )
    return config.num_agents


def block_agents(partition: int, num_partitions: int, num_agents: int) -> range:
    """The agents node ``partition`` of ``num_partitions`` hosts: a contiguous range, the
    sizes differing by at most one, together covering 0..N-1 once."""
    if not 0 <= partition < num_partitions:
        raise ConfigError(f"partition-id: {partition} out of range; allowed: 0..{num_partitions - 1}")
    return range(partition * num_agents // num_partitions, (partition + 1) * num_agents // num_partitions)


@dataclass
class TrainRequest:
    """Round ``round``: each agent in ``models`` adapts from its model w_k (flat, run dtype).
    ``states``: meta-optimizer states to go on from (resume; else the block's own);
    ``return_states``: send every trained agent's new state back (checkpoints)."""

    round: int
    models: dict[int, np.ndarray]
    states: OptimizerStates = field(default_factory=dict)
    return_states: bool = False


@dataclass
class TrainReplies:
    """What the agents that trained sent back: adapted models, task counts, meta-losses,
    the seconds the agents spent computing (summed over blocks), why the others failed,
    and, when asked, their new meta-optimizer states."""

    models: dict[int, np.ndarray]
    num_tasks: Mapping[int, int]
    losses: Mapping[int, float]
    agent_seconds: float
    failed: dict[int, str] = field(default_factory=dict)
    states: OptimizerStates = field(default_factory=dict)


@dataclass
class CombineRequest:
    """Round ``round``'s second exchange: agent k gets ``agents[k]``, the phi_l that reached it."""

    round: int
    agents: dict[int, NeighbourModels]


@dataclass
class CombineReplies:
    """What the agents that combined on their side sent back: w_k, their running losses,
    the agents whose models they kept, and why the others failed."""

    models: dict[int, np.ndarray]
    running_losses: dict[int, np.ndarray]
    kept: dict[int, list[int]]
    failed: dict[int, str] = field(default_factory=dict)


@dataclass
class EvaluateRequest:
    """Each agent in ``models`` evaluates its model after each of ``steps`` adaptation steps,
    on ``tasks`` tasks per source (0: key ``eval-tasks``)."""

    round: int
    models: dict[int, np.ndarray]
    steps: tuple[int, ...]
    tasks: int = 0


@dataclass
class EvaluateReplies:
    """{``<full|own>-<metric>``: {agent: values after each step}} for the agents that answered:
    ``metrics`` the means over the agent's tasks, ``sd`` their standard deviations (ddof 1;
    NaN for one task), what the 95 % intervals are made of."""

    metrics: dict[str, dict[int, np.ndarray]]
    sd: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)


def node_mean(replies: TrainReplies) -> tuple[np.ndarray, int, float]:
    """What a node answers one of Flower's strategies, which holds one model a node: its
    agents' task-weighted mean model sum_k n_k phi_k / sum_k n_k, their tasks sum_k n_k, and
    their task-weighted mean meta-loss (so Flower's mean weighted by tasks is the mean over
    agents). ValueError where no agent trained."""
    if not replies.models:
        raise ValueError(f"no agent of this node trained: {'; '.join(sorted(set(replies.failed.values())))}")
    losses = {k: np.array([loss]) for k, loss in replies.losses.items()}
    tasks = sum(replies.num_tasks.values())
    return weighted_mean(replies.models, replies.num_tasks), tasks, float(weighted_mean(losses, replies.num_tasks)[0])


def evaluation_means(replies: EvaluateReplies, steps: Sequence[int]) -> dict[str, float]:
    """{``<full|own>-<metric>-<steps>``: mean over the answering agents}: a node's answer to
    one of Flower's strategies' evaluate messages."""
    return {
        f"{key}-{step}": float(np.mean([values[i] for values in curves.values()]))
        for key, curves in replies.metrics.items() for i, step in enumerate(steps)
    }


def _cat(parts: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stacked tensors of consecutive agents' parts, as one (concatenated along agents)."""
    return {n: torch.cat([part[n] for part in parts]) for n in parts[0]}


def step_function(learner: MetaLearner, cuda_graphs: bool | None = None) -> Callable:
    """The meta-step of stacked agents, ``vmap(learner.meta_step)``; with key ``compile``
    compiled by ``torch.compile``, and where the agents compute on a GPU (``cuda_graphs``;
    None: there) in its mode "reduce-overhead": each call replays one CUDA graph of the whole
    step. A step of few agents is launch-bound on a GPU (N = 10, the default experiment:
    about 300 kernels, each launched after Python's and vmap's dispatch); a graph is one launch.

    A graph writes its outputs into memory that its next replay reuses (every call begins a
    new replay), so the outputs are cloned out of it before the next call: the block keeps
    the optimizer states, and the chunks of one step are all alive together."""
    step = vmap(learner.meta_step)
    if not learner.config.compile:
        return step
    if cuda_graphs is None:
        cuda_graphs = learner.device.type == "cuda"
    if not cuda_graphs:
        return torch.compile(step)
    return _owned_outputs(torch.compile(step, mode="reduce-overhead"))


def _owned_outputs(step: Callable) -> Callable:
    """``step`` whose outputs are copies, not the memory of a CUDA graph's replay."""

    def call(*args: object) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
        params, state, losses = step(*args)
        return {n: p.clone() for n, p in params.items()}, {n: v.clone() for n, v in state.items()}, losses.clone()

    return call


class AgentBlock:
    """Agents ``agents`` of a run: their states, and their computation in one vmapped call."""

    def __init__(self, learner: MetaLearner, agents: Sequence[int], on_device: bool = False) -> None:
        self.learner = learner
        self.agents = tuple(agents)
        self.on_device = on_device  # reply adapted models as tensors on the learner's device (tensor-native rounds)
        self._row = {k: i for i, k in enumerate(self.agents)}
        self.initial_state = learner.initial_optimizer_state
        # every agent's meta-optimizer state, stacked in block order (made at the first step),
        # and whose differs from the initial one
        self._states: dict[str, torch.Tensor] | None = None
        self._touched = np.zeros(len(self.agents), dtype=bool)
        self.running_losses: dict[int, np.ndarray] = {}  # resilient r_k; agents not here start at 1
        self.agents_per_call = max(1, min(TRAIN_AGENTS_PER_CHUNK, learner.train_chunk // learner.config.tasks_per_agent))
        self._step = step_function(learner)
        self._eval_batches: dict[tuple[int, bool], dict[str, TaskBatch]] = {}  # (tasks, final) -> source -> batch

    def step(
        self, params: dict[str, torch.Tensor], state: dict[str, torch.Tensor], batch: TaskBatch
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
        """The vmapped meta-step of stacked agents, ``agents_per_call`` at a time. Sliced by
        hand: vmap's own ``chunk_size`` costs 2 ms a call even where all agents fit in one chunk
        (N = 10, float32, one thread: 10.3 ms a step vs 8.4 ms)."""
        num = batch.x_support.shape[0]
        if num <= self.agents_per_call:
            return self._step(params, state, batch)
        size = self.agents_per_call
        parts = [
            self._step({n: p[i : i + size] for n, p in params.items()}, {n: v[i : i + size] for n, v in state.items()},
                       TaskBatch(*(t[i : i + size] for t in batch)))
            for i in range(0, num, size)
        ]
        new_params, new_states, losses = zip(*parts)
        return _cat(new_params), _cat(new_states), torch.cat(losses)

    def _check(self, agents: Sequence[int]) -> None:
        foreign = sorted(set(agents) - set(self.agents))
        if foreign:
            raise ValueError(f"agents {foreign} are not in this block ({self.agents[0]}..{self.agents[-1]})")

    def _rows(self, agents: Sequence[int]) -> torch.Tensor | None:
        """The rows of ``agents`` (sorted) in the block's stacked states; None: all, in order."""
        if len(agents) == len(self.agents):
            return None
        return torch.tensor([self._row[k] for k in agents], dtype=torch.int64, device=self.learner.device)

    def _stacked_states(self) -> dict[str, torch.Tensor]:
        if self._states is None:
            self._states = {n: v.expand(len(self.agents), *v.shape).clone() for n, v in self.initial_state.items()}
        return self._states

    @property
    def states(self) -> dict[int, dict[str, torch.Tensor]]:
        """Agent -> its meta-optimizer state, for the agents whose state is not the initial one."""
        stacked = self._stacked_states()
        return {k: {n: v[i] for n, v in stacked.items()} for i, k in enumerate(self.agents) if self._touched[i]}

    def train(self, request: TrainRequest) -> TrainReplies:
        self._check(request.models)
        config, round_ = self.learner.config, request.round
        self.load_optimizer_states(request.states)
        asked = AgentModels.of(request.models).ascending()
        fails = failing_agents(config.seed, asked.ids, round_, config.fail_prob)
        failed = dict.fromkeys(asked.ids[fails].tolist(), INJECTED_FAILURE)
        if fails.all():
            return TrainReplies({}, {}, {}, 0.0, failed)
        trained = asked.select(~fails) if fails.any() else asked
        ids = trained.ids  # ascending; contiguous ones (every agent of the block) as a range: no list of N
        contiguous = len(ids) > 0 and ids[-1] - ids[0] + 1 == len(ids)
        agents = range(int(ids[0]), int(ids[-1]) + 1) if contiguous else ids.tolist()
        params = self.learner.layout.params(trained.rows)
        batch = self.learner.train_batches(agents, round_)
        state_rows, stacked = self._rows(agents), self._stacked_states()
        state = stacked if state_rows is None else {n: v[state_rows] for n, v in stacked.items()}
        start = time.perf_counter()
        new_params, new_state, losses = self.step(params, state, batch)
        seconds = time.perf_counter() - start
        if state_rows is None:
            self._states = dict(new_state)
            self._touched[:] = bool(self.initial_state)
        else:
            for n, v in new_state.items():
                stacked[n][state_rows] = v
            self._touched[state_rows.cpu().numpy()] = bool(self.initial_state)
        layout = self.learner.layout
        vectors = layout.flat(new_params) if self.on_device else layout.vector(new_params)
        for k in ids[np.isin(ids, sorted(self.learner.byzantine))].tolist():
            i = int(np.searchsorted(ids, k))
            vectors[i] = as_rows_of(self.learner.sent_model(on_host(vectors[i]), k, round_), vectors[i])
        return TrainReplies(
            models=AgentModels(ids, vectors),
            num_tasks=AgentValues(ids, np.full(len(ids), config.tasks_per_agent)),
            losses=AgentValues(ids, losses.cpu().numpy()),
            agent_seconds=seconds,
            failed=failed,
            states=self.optimizer_states(agents) if request.return_states else {},
        )

    def combine(self, request: CombineRequest) -> CombineReplies:
        """Each asked agent's resilient step, one agent after the other."""
        self._check(request.agents)
        out = CombineReplies({}, {}, {})
        for k, neighbours in request.agents.items():
            if neighbours.running_losses is not None:
                self.running_losses[k] = np.array(neighbours.running_losses, dtype=np.float64)
            running = self.running_losses.get(k, initial_running_losses(self.learner.num_agents))
            model, self.running_losses[k], out.kept[k] = self.learner.resilient_step(
                k, request.round, neighbours.models, running
            )
            out.models[k], out.running_losses[k] = model, self.running_losses[k]
        return out

    def evaluation_batches(self, num_tasks: int = 0, final: bool = False) -> dict[str, TaskBatch]:
        """The block's agents' fixed evaluation tasks, ``num_tasks`` per agent (default
        ``eval-tasks``), stacked in block order (drawn once per count); ``final``: the last
        round's, with the meta-test tasks of a family with a validation split."""
        num_tasks = num_tasks or self.learner.config.eval_tasks
        final = final and self.learner.has_validation  # else the final tasks are the same ones
        if (num_tasks, final) not in self._eval_batches:
            self._eval_batches[num_tasks, final] = self.learner.evaluation_batches(self.agents, num_tasks, final)
        return self._eval_batches[num_tasks, final]

    def evaluate(self, request: EvaluateRequest) -> EvaluateReplies:
        self._check(request.models)
        asked = AgentModels.of(request.models).ascending()
        agents = list(asked)
        rows = [self._row[k] for k in agents]
        params = self.learner.layout.params(asked.rows)
        out = EvaluateReplies({})
        final = request.round >= self.learner.config.num_rounds  # the run's last evaluation
        for source, batch in self.evaluation_batches(request.tasks, final).items():
            batch = TaskBatch(*(t[rows] for t in batch)) if len(rows) < len(self.agents) else batch
            for name, values in self.learner.evaluation_per_task(params, batch, request.steps).items():
                values = values.to(torch.float64)  # (agents, tasks, steps)
                sd = values.std(dim=1) if values.shape[1] > 1 else torch.full_like(values[:, 0], float("nan"))
                out.metrics[f"{source}-{name}"] = dict(zip(agents, values.mean(dim=1).cpu().numpy()))
                out.sd[f"{source}-{name}"] = dict(zip(agents, sd.cpu().numpy()))
        return out

    def optimizer_states(self, agents: Sequence[int] | None = None) -> OptimizerStates:
        """Each agent's (of ``agents``, default all) meta-optimizer state that differs from the
        initial one, on the host."""
        stacked = self._stacked_states()
        chosen = self.agents if agents is None else agents
        host = {n: v.cpu().numpy().copy() for n, v in stacked.items()} if self._touched.any() else {}  # not a view
        return {k: {n: v[self._row[k]] for n, v in host.items()} for k in chosen if self._touched[self._row[k]]}

    def load_optimizer_states(self, states: Mapping[int, Mapping[str, np.ndarray]]) -> None:
        """The given agents go on from these states (resume, or a ClientApp's ``context.state``)."""
        self._check(states)
        if not states:
            return
        stacked, device = self._stacked_states(), self.learner.device
        for k, state in states.items():
            for n, v in state.items():
                stacked[n][self._row[k]] = torch.from_numpy(np.array(v)).to(device)
            self._touched[self._row[k]] = bool(state)

    def reset(self) -> None:
        """Every agent back to the initial meta-optimizer state and running losses."""
        self._states = None
        self._touched[:] = False
        self.running_losses.clear()
