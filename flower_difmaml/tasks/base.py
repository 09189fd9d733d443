"""The task-family interface: what a family says so that every engine can use it.

A family is a class. ``from_config(config, num_agents)`` builds it from the run config
(a ``RunConfig``: keys as attributes, e.g. ``config.shots``, ``config.heterogeneity``) and
raises ``ConfigError`` naming the key when the config does not fit its data. Then it
says its model, its training loss, its metrics, and how it draws the tasks of a set of
agents from a ``DrawKey`` (seed, round, stream), so that every engine draws identical tasks:

- ``sample(key, num_tasks, agents, own=True)``: training tasks of each agent in ``agents``
  from its own distribution (``own=False``: from the full one);
- ``sample_evaluation(key, num_tasks, agents, own)``: evaluation tasks, from the full
  distribution (for image families: the meta-test classes) or from each agent's own.

Both return one ``TaskBatch`` whose tensors lead with (len(agents), num_tasks). Agent k's
tasks must depend only on (key, k): draw them from ``key.generator(k)`` (numpy, one agent
at a time, then ``TaskBatch.stack``) or all at once from ``key.uniform(agents, count)``.

``metrics(prediction, target)`` returns one scalar per name in ``metric_names`` (the first is
the headline a progress line and the plots show); the files get ``<full|own>-<name>-<steps>``,
e.g. ``full-mse-1`` or ``full-acc-10``. ``HETEROGENEITY`` lists the values of key
``heterogeneity`` the family understands; ``DEFAULT_DTYPE`` is what ``dtype = "auto"`` means,
and ``DEFAULT_HETEROGENEITY`` (optional, else the first of ``HETEROGENEITY``) what
``heterogeneity = "auto"`` means, and ``EVAL_TASKS`` (optional, else 20) what
``eval-tasks = 0`` means: ``from_config`` is given a config in which both are resolved.

Optional: ``KEYS``, the run-config keys the family reads beyond shots, queries, heterogeneity
and dtype (a run warns about those of the built-in families that it sets and does not use);
``groups``, each agent's group (heterogeneity ``clusters``: agents of one group share
a task distribution) or None; ``truth_metrics(models, laplacian)``, for a family that knows
the agents' true models: numbers for metrics.jsonl and the summary (e.g. ``msd``);
``has_validation`` (true: ``sample_evaluation`` draws from meta-validation classes and
``sample_test(key, num_tasks, agents, own)`` from meta-test ones, which the final evaluation
reports as ``test-full-*`` and ``test-own-*``) and ``evaluation_classes`` (what
``sample_evaluation`` draws from, e.g. "meta-test", for the results files); ``source``, what
data the family read (a line the run prints first).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError, check_choice
from ..meta.maml import TaskBatch
from ..streams import DrawKey

DTYPES = {"float32": torch.float32, "float64": torch.float64}  # key ``dtype`` (and "auto")


def parse_dtype(value: str, default: torch.dtype) -> torch.dtype:
    """The torch dtype of run-config key ``dtype``: "float32", "float64" or "auto" (``default``)."""
    check_choice("dtype", value, ("auto", *DTYPES))
    return default if value == "auto" else DTYPES[value]


# key eval-tasks = 0 for a family without its own EVAL_TASKS: an evaluation task adapts ten steps
# where a training task adapts one, so 20 a source and agent keep a default run's evaluating under
# a third of its time (the main job: 100 took 6.3 s of its 11 s of rounds, 2 cores); the last
# evaluation draws final-eval-tasks (600) over the network
EVAL_TASKS = 20


def eval_tasks_of(family: type, value: int) -> int:
    """Key ``eval-tasks`` for ``family``: ``value``, or where it is 0 the family's own
    (``EVAL_TASKS``, else 20)."""
    return value or getattr(family, "EVAL_TASKS", EVAL_TASKS)


def heterogeneity_of(family: type, value: str) -> str:
    """Key ``heterogeneity`` for ``family``: ``value``, or where it is "auto" the family's own
    (``DEFAULT_HETEROGENEITY``, else the first of its ``HETEROGENEITY``); checked."""
    if value == "auto":
        return getattr(family, "DEFAULT_HETEROGENEITY", family.HETEROGENEITY[0])
    return check_choice("heterogeneity", value, family.HETEROGENEITY)


def cluster_of(agent: int, num_agents: int, clusters: int) -> int:
    """Heterogeneity ``clusters``: agent k of N is in group floor(k C / N) of C (contiguous blocks)."""
    return agent * clusters // num_agents


def cluster_groups(heterogeneity: str, num_agents: int, clusters: int) -> tuple[int, ...] | None:
    """Each agent's group with heterogeneity ``clusters`` (a family's ``groups``), else None."""
    if heterogeneity != "clusters":
        return None
    return tuple(cluster_of(k, num_agents, clusters) for k in range(num_agents))


def check_clusters(clusters: int, num_agents: int) -> None:
    if not 1 <= clusters <= num_agents:
        raise ConfigError(f"clusters: {clusters} out of range; allowed: 1..{num_agents} (the number of agents)")


REQUIRED = ("HETEROGENEITY", "DEFAULT_DTYPE", "metric_names", "from_config", "make_model", "loss_fn", "metrics",
            "sample", "sample_evaluation")  # what a class needs to be a task family


class TaskFamily(Protocol):
    """A distribution over tasks, split across agents by ``heterogeneity``."""

    HETEROGENEITY: ClassVar[tuple[str, ...]]
    DEFAULT_DTYPE: ClassVar[torch.dtype]
    metric_names: tuple[str, ...]
    dtype: torch.dtype

    @classmethod
    def from_config(cls, config: Any, num_agents: int) -> TaskFamily: ...

    def make_model(self) -> nn.Module:
        """The model, its parameters in ``self.dtype``."""
        ...

    def loss_fn(self, prediction: Tensor, target: Tensor) -> Tensor:
        """The loss MAML adapts with and meta-learns (one task's predictions and targets)."""
        ...

    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        """One scalar per name in ``metric_names`` for one task's query predictions."""
        ...

    def sample(self, key: DrawKey, num_tasks: int, agents: Sequence[int], own: bool = True) -> TaskBatch:
        """Training tasks of each of ``agents``: its own distribution, or (``own=False``) the full one."""
        ...

    def sample_evaluation(self, key: DrawKey, num_tasks: int, agents: Sequence[int], own: bool) -> TaskBatch:
        """Evaluation tasks of each of ``agents``: the full (meta-test) distribution, or its own."""
        ...
