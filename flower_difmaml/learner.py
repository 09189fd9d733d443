"""What one agent computes, for any engine: a meta-step on its own tasks, and evaluation.

No Flower import: the ClientApp calls this with what a message brings, and an in-process
engine can call (or ``vmap``) the same functions. Every draw comes from the key
(seed, agent, round, stream) (``streams``), so engines agree to the last bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import vmap

from .agent_models import numpy_dtype, on_host
from .config import ConfigError, RunConfig
from .devices import resolve_device
from .meta import MetaOptimizer, Params, TaskBatch, make_meta_optimizer, meta_gradient
from .meta.maml import evaluate_after_adaptation, meta_objective, metrics_after_adaptation
from .meta.optimizers import OptimizerState
from .models import initial_parameters
from .network.attacks import attacked_model, byzantine_agents
from .network.resilient import resilient_combine
from .streams import DrawKey, Stream
from .tasks import TaskFamily, family_class
from .tasks.base import eval_tasks_of, heterogeneity_of

EVAL_ROUND = 0  # evaluation tasks are the same at every evaluation
SOURCES = ("full", "own")  # evaluation tasks from the full distribution, and from the agent's own
TEST_SOURCES = ("test-full", "test-own")  # the final evaluation's meta-test tasks, where there is a validation split


@dataclass(frozen=True)
class ParamLayout:
    """Names and shapes of a model's parameters, to pack them into one flat vector.

    Vectors are numpy arrays on the host (what messages and checkpoints hold); parameters
    are tensors on the device the agent computes on.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtype: torch.dtype = torch.float64
    device: torch.device = torch.device("cpu")

    @classmethod
    def of(cls, params: Params) -> ParamLayout:
        first = next(iter(params.values()))
        return cls(tuple(params), tuple(tuple(p.shape) for p in params.values()), first.dtype, first.device)

    @property
    def numpy_dtype(self) -> np.dtype:
        """The dtype of the flat vectors (messages, checkpoints): the model's."""
        return numpy_dtype(self.dtype)

    @property
    def size(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    def flat(self, params: Params) -> Tensor:
        """The parameters in layout order, concatenated, shape (..., P), in the model's dtype,
        on its device. Leading dimensions (e.g. agents, for stacked parameters) are kept."""
        first = params[self.names[0]]
        lead = tuple(first.shape[: first.ndim - len(self.shapes[0])])
        return torch.cat([params[n].detach().reshape(*lead, -1) for n in self.names], dim=-1)

    def vector(self, params: Params) -> np.ndarray:
        """:meth:`flat` on the host, as numpy (what messages and checkpoints hold)."""
        return on_host(self.flat(params))

    def params(self, vector: np.ndarray | Tensor) -> Params:
        """Inverse of :meth:`vector` (and :meth:`flat`): tensors of shapes (..., *shape) in the
        model's dtype, on its device."""
        if tuple(vector.shape[-1:]) != (self.size,):
            raise ValueError(f"model vector has shape {tuple(vector.shape)}; expected (..., {self.size})")
        if isinstance(vector, Tensor):
            flat = vector.to(self.device, self.dtype)  # on its device already: itself
        else:
            vector = np.asarray(vector, dtype=self.numpy_dtype)
            if not vector.flags.writeable:  # torch shares only writeable memory (a message's, a broadcast, are not)
                vector = vector.copy()
            flat = torch.from_numpy(vector).to(self.device)  # on the CPU: the same memory, not a copy
        lead = tuple(flat.shape[:-1])
        out, start = {}, 0
        for name, shape in zip(self.names, self.shapes):
            size = math.prod(shape)
            out[name] = flat[..., start : start + size].reshape(*lead, *shape)
            start += size
        return out


@dataclass(frozen=True)
class MetaLearner:
    """Agent-side MAML for a run config on ``num_agents`` agents, computing on ``device``;
    ``config`` has the family's own values where the run config left them to it (``auto``, 0).

    Tasks are drawn on the CPU (the same numbers on every device) and moved to ``device``;
    parameters and optimizer states live there; models leave as numpy vectors.
    """

    config: RunConfig
    num_agents: int
    family: TaskFamily
    model: nn.Module
    optimizer: MetaOptimizer
    device: torch.device = torch.device("cpu")

    @classmethod
    def from_config(cls, config: RunConfig, num_agents: int, device: str | None = None) -> MetaLearner:
        """The learner of ``config``; ``device`` (default: key ``device``) must exist here."""
        where = resolve_device(config.device if device is None else device)
        family_type = family_class(config.task)
        resolved = config.replace(  # "auto" and 0: the family's own
            heterogeneity=heterogeneity_of(family_type, config.heterogeneity),
            eval_tasks=eval_tasks_of(family_type, config.eval_tasks),
        )
        try:
            family = family_type.from_config(resolved, num_agents)
        except ConfigError as error:  # a key the user never set: say that it is the default
            key, defaults = str(error).split(":", 1)[0], RunConfig().to_mapping()
            value = config.to_mapping().get(key)
            if key in defaults and value == defaults[key]:
                raise ConfigError(f"{error} ({key} = {value!r} is the run config's default, not a value of task "
                                  f"{config.task!r}: set {key} for this task)") from None
            raise
        return cls(
            config=resolved,
            num_agents=num_agents,
            family=family,
            model=family.make_model().to(where),
            optimizer=make_meta_optimizer(config.meta_optimizer, config.meta_lr),
            device=where,
        )

    def check_metrics(self) -> None:
        """The family's ``metrics`` give the names its ``metric_names`` declare (one task, dry run)."""
        got = list(self.evaluate_batch(self.initial_parameters(), self._one_evaluation_task(), (0,)))
        if sorted(got) != sorted(self.family.metric_names):
            raise ConfigError(
                f"task: {self.config.task!r} metrics() gives {got} but its metric_names are "
                f"{list(self.family.metric_names)}; they must be the same names"
            )

    def _one_evaluation_task(self) -> TaskBatch:
        """Agent 0's first evaluation task from the full distribution (dry runs and sizes)."""
        batch = self.family.sample_evaluation(self.draw_key(EVAL_ROUND, Stream.EVAL_FULL), 1, [0], own=False)
        return batch.to(self.device).agent(0)

    def initial_parameters(self) -> Params:
        """The model every agent starts from (seeded by ``seed``), on the device."""
        return initial_parameters(self.model, self.config.seed)

    @cached_property
    def initial_optimizer_state(self) -> OptimizerState:
        """The meta-optimizer's state before any step (the same for every agent; read only)."""
        return self.optimizer.init(self.initial_parameters())

    @cached_property
    def layout(self) -> ParamLayout:
        return ParamLayout.of(self.initial_parameters())

    def initial_vector(self) -> np.ndarray:
        return self.layout.vector(self.initial_parameters())

    @property
    def reported_steps(self) -> tuple[int, ...]:
        """Adaptation steps every evaluation round reports: 0, 1 and ``eval-inner-steps``."""
        return tuple(sorted({0, 1, self.config.eval_inner_steps}))

    @property
    def curve_steps(self) -> tuple[int, ...]:
        """Steps the last evaluation reports: 0..``eval-inner-steps`` (the adaptation curve)."""
        return tuple(range(self.config.eval_inner_steps + 1))

    @property
    def evaluation_keys(self) -> tuple[str, ...]:
        """What an evaluation returns per agent: ``<full|own>-<metric>``, e.g. ``full-mse``."""
        return tuple(f"{source}-{name}" for source in SOURCES for name in self.family.metric_names)

    @property
    def has_validation(self) -> bool:
        """Whether the family has meta-validation classes (``sample_evaluation`` draws from
        them, ``sample_test`` from the meta-test classes)."""
        return bool(getattr(self.family, "has_validation", False))

    @property
    def final_keys(self) -> tuple[str, ...]:
        """What the final evaluation returns beyond ``evaluation_keys``: with a validation split,
        ``test-<full|own>-<metric>`` on the meta-test classes; else nothing."""
        if not self.has_validation:
            return ()
        return tuple(f"{source}-{name}" for source in TEST_SOURCES for name in self.family.metric_names)

    @property
    def evaluation_classes(self) -> dict[str, str]:
        """Which classes each source's tasks come from (for metrics.jsonl and summary.json)."""
        evaluated = getattr(self.family, "evaluation_classes", None)
        classes = {source: evaluated for source in SOURCES} if evaluated else {}
        return {**classes, **({source: "meta-test" for source in TEST_SOURCES} if self.has_validation else {})}

    def draw_key(self, round_: int, stream: Stream) -> DrawKey:
        return DrawKey(self.config.seed, round_, stream, self.device)

    def train_batches(self, agents: Sequence[int], round_: int, stream: Stream = Stream.TRAIN) -> TaskBatch:
        """The tasks of round ``round_`` of each of ``agents``, from its own distribution:
        one batch, leading dims (agents, tasks-per-agent)."""
        batch = self.family.sample(self.draw_key(round_, stream), self.config.tasks_per_agent, agents)
        return batch.to(self.device)

    def train_batch(self, agent: int, round_: int, stream: Stream = Stream.TRAIN) -> TaskBatch:
        """Agent ``agent``'s tasks of round ``round_`` (the same as its part of :meth:`train_batches`)."""
        return self.train_batches([agent], round_, stream).agent(0)

    def meta_step(self, params: Params, state: OptimizerState, batch: TaskBatch) -> tuple[Params, OptimizerState, Tensor]:
        """Adapt: phi_k = w_k - mu * step(grad J_k(w_k)) on ``batch``; returns (phi_k, new state, J_k(w_k)).

        Pure: ``vmap`` it over agents. An empty ``state`` is initialised first. Tasks that do
        not fit in one call (``train_chunk``) are taken in chunks.
        """
        c = self.config
        kwargs = dict(inner_lr=c.inner_lr, inner_steps=c.inner_steps, first_order=c.first_order, loss_fn=self.family.loss_fn)
        num_tasks, chunk = batch.num_tasks, self.train_chunk
        if num_tasks <= chunk:
            grads, loss = meta_gradient(self.model, params, batch, **kwargs)
        else:  # grad J = sum over chunks of (T_c / T) grad J_c: the graph of one chunk at a time
            grads, loss = {n: torch.zeros_like(p) for n, p in params.items()}, torch.zeros((), dtype=self.layout.dtype, device=self.device)
            for i in range(0, num_tasks, chunk):
                part = TaskBatch(*(t[i : i + chunk] for t in batch))
                part_grads, part_loss = meta_gradient(self.model, params, part, **kwargs)
                share = part.num_tasks / num_tasks
                grads = {n: g + share * part_grads[n] for n, g in grads.items()}
                loss = loss + share * part_loss
        new_params, new_state = self.optimizer.step(params, grads, state or self.optimizer.init(params))
        return new_params, new_state, loss

    def train_step(
        self, params: Params, state: OptimizerState, agent: int, round_: int
    ) -> tuple[Params, OptimizerState, float]:
        """:meth:`meta_step` on agent ``agent``'s fresh tasks of round ``round_`` (``state``
        may come from a message, on the CPU: it moves to the device)."""
        state = {n: v.to(self.device) for n, v in state.items()}
        new_params, new_state, loss = self.meta_step(params, state, self.train_batch(agent, round_))
        return new_params, new_state, float(loss)

    @cached_property
    def byzantine(self) -> frozenset[int]:
        """The Byzantine agents of this run (keys ``byzantine`` / ``byzantine-fraction``)."""
        c = self.config
        return byzantine_agents(c.byzantine_ids, c.byzantine_fraction, c.seed, self.num_agents)

    def sent_model(self, model: np.ndarray, agent: int, round_: int) -> np.ndarray:
        """What agent ``agent`` sends after adapting to ``model``: the model itself, or, for a
        Byzantine agent, the attack's model (keys ``attack``, ``attack-scale``)."""
        if agent not in self.byzantine:
            return model
        c = self.config
        return attacked_model(c.attack, model, c.attack_scale, c.seed, agent, round_)

    def scores(self, models: np.ndarray, agent: int, round_: int) -> np.ndarray:
        """J_k(phi_l) of eq. (2) for each row phi_l of ``models`` (M, P) on agent ``agent``'s
        tasks of round ``round_``: the post-adaptation query loss the resilient rule scores.

        ``resilient-score = "current"``: the tasks the agent just adapted on (the authors'
        rule); ``"fresh"``: other tasks from its own distribution, drawn for scoring only.
        """
        c = self.config
        objective = meta_objective(self.model, c.inner_lr, c.inner_steps, c.first_order, self.family.loss_fn)
        batch = self.train_batch(agent, round_, Stream.TRAIN if c.resilient_score == "current" else Stream.SCORE)
        with torch.no_grad():
            losses = vmap(objective, in_dims=(0, None))(self.layout.params(models), batch)
        return losses.cpu().numpy().astype(np.float64)

    def resilient_step(
        self, agent: int, round_: int, models: dict[int, np.ndarray], running_losses: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """Agent ``agent``'s resilient combination of the phi_l that reached it in round
        ``round_``, scored on its own tasks: (w_k, new running losses, kept agents)."""
        candidates = sorted(models)
        losses = self.scores(np.stack([models[l] for l in candidates]), agent, round_)
        return resilient_combine(
            models, dict(zip(candidates, losses.tolist())), running_losses, agent, self.config.resilient_gamma
        )

    def final_tasks(self) -> int:
        """Tasks per agent and source of the last evaluation: at least ``eval-tasks``, and
        ``final-eval-tasks`` over the network (the literature's 600 test tasks: the network's
        mean and 95 % interval are over at least that many)."""
        return max(self.config.eval_tasks, math.ceil(self.config.final_eval_tasks / self.num_agents))

    def evaluation_batches(self, agents: Sequence[int], num_tasks: int = 0, final: bool = False) -> dict[str, TaskBatch]:
        """The evaluation tasks of each of ``agents`` (the same at every evaluation), from the
        full distribution and from its own: stacked batches, leading dims (agents, tasks);
        ``num_tasks`` per agent (default ``eval-tasks``). ``final`` with a validation split: the
        meta-test tasks too (sources ``test-full``, ``test-own``)."""
        draws = [(SOURCES, self.family.sample_evaluation)]
        if final and self.has_validation:
            draws.append((TEST_SOURCES, self.family.sample_test))
        num_tasks = num_tasks or self.config.eval_tasks
        return {  # full and own from their own streams, in either split
            source: draw(self.draw_key(EVAL_ROUND, stream), num_tasks, agents, own).to(self.device)
            for sources, draw in draws
            for source, stream, own in zip(sources, (Stream.EVAL_FULL, Stream.EVAL_OWN), (False, True))
        }

    @cached_property
    def activation_bytes(self) -> tuple[int, int]:
        """(support, query): the bytes of every module's outputs on one task's support set and
        on its query set (measured once, on one evaluation task, in the model's dtype)."""
        batch = self._one_evaluation_task()
        outputs: list[int] = []
        hooks = [m.register_forward_hook(lambda m, i, out: outputs.append(out.numel() * out.element_size()))
                 for m in self.model.modules() if not list(m.children())]
        try:
            with torch.no_grad():
                params = self.initial_parameters()
                torch.func.functional_call(self.model, params, (batch.x_support[0],))
                support = sum(outputs)
                torch.func.functional_call(self.model, params, (batch.x_query[0],))
        finally:
            for hook in hooks:
                hook.remove()
        return support, sum(outputs) - support

    @property
    def _parameter_bytes(self) -> int:
        return self.layout.size * torch.finfo(self.layout.dtype).bits // 8

    @property
    def evaluation_task_bytes(self) -> int:
        """An estimate of what one evaluation task holds while it adapts: its adapted
        parameters and their gradient, a support pass's activations kept for the backward pass
        and their gradients (4x the support outputs), and a query pass's outputs. Digits'
        defaults: 208 MB estimated, 137-183 MB measured a task (peak RSS of 16 and 4 tasks a call)."""
        support, query = self.activation_bytes
        return 2 * self._parameter_bytes + 4 * support + query

    @property
    def train_task_bytes(self) -> int:
        """An estimate of what one task's meta-gradient holds: the graph of each inner step
        (its support pass, and the gradient's own graph for second order: 4x the support
        outputs a step), the query pass and the backward through all of it (4x the support
        outputs more), and four copies of the parameters. Digits' defaults (one inner step):
        370 MB estimated, 352 MB measured a task (peak RSS of 8 tasks a call vs 2)."""
        support, query = self.activation_bytes
        return (4 * max(self.config.inner_steps, 1) + 4) * support + query + 4 * self._parameter_bytes

    @property
    def _chunk_bytes(self) -> int:
        return self.config.chunk_memory_mb * 2**20

    @property
    def evaluation_chunk(self) -> int:
        """Evaluation tasks in one vmap call: as many as key ``chunk-memory-mb`` holds (at least one)."""
        return max(1, self._chunk_bytes // self.evaluation_task_bytes)

    @property
    def train_chunk(self) -> int:
        """Training tasks in one vmap call: as many as key ``chunk-memory-mb`` holds (at least one)."""
        return max(1, self._chunk_bytes // self.train_task_bytes)

    @property
    def test_lr(self) -> float:
        """The fine-tuning step of every evaluation: key ``eval-inner-lr``, or ``inner-lr`` where it is 0."""
        return self.config.eval_inner_lr or self.config.inner_lr

    def evaluation_per_task(self, params: Params, batch: TaskBatch, steps: Sequence[int]) -> dict[str, Tensor]:
        """The family's metrics of each task after ``steps`` fine-tuning steps (lr ``test_lr``),
        stacked parameters and batches of A agents: {metric: (A, T, len(steps))}. Computed
        in calls of at most ``evaluation_chunk`` tasks: whole agents at a time where an
        agent's tasks fit in one call, else one agent at a time in chunks of its tasks."""
        chunk, num_agents, num_tasks = self.evaluation_chunk, batch.x_support.shape[0], batch.x_support.shape[1]

        def per_agent(p: Params, b: TaskBatch, chunk_size: int | None = None) -> dict[str, Tensor]:
            return metrics_after_adaptation(
                self.model, p, b, inner_lr=self.test_lr, steps=steps, loss_fn=self.family.loss_fn,
                metrics=self.family.metrics, chunk_size=chunk_size,
            )

        if chunk >= num_tasks:
            agents = chunk // num_tasks
            parts = [
                vmap(per_agent)({n: p[i : i + agents] for n, p in params.items()}, TaskBatch(*(t[i : i + agents] for t in batch)))
                for i in range(0, num_agents, agents)
            ]
        else:
            parts = [
                {name: v.unsqueeze(0) for name, v in per_agent({n: p[i] for n, p in params.items()}, batch.agent(i), chunk).items()}
                for i in range(num_agents)
            ]
        return {name: torch.cat([part[name] for part in parts]) for name in parts[0]}

    def evaluate_batch(self, params: Params, batch: TaskBatch, steps: Sequence[int]) -> dict[str, Tensor]:
        """The family's metrics after ``steps`` fine-tuning steps (lr ``test_lr``), mean over
        the batch's tasks: {metric: (len(steps),)}."""
        return evaluate_after_adaptation(
            self.model, params, batch,
            inner_lr=self.test_lr, steps=steps, loss_fn=self.family.loss_fn, metrics=self.family.metrics,
        )

    def evaluate(self, params: Params, agent: int, steps: Sequence[int]) -> dict[str, Tensor]:
        """{``<full|own>-<metric>``: values after ``steps``} for agent ``agent``."""
        return {
            f"{source}-{name}": curve
            for source, batch in self.evaluation_batches([agent]).items()
            for name, curve in self.evaluate_batch(params, batch.agent(0), steps).items()
        }
