"""Model-Agnostic Meta-Learning on ``torch.func`` (Finn et al., 2017).

For a task t with support set S_t and query set Q_t, one inner step is

    theta_t = w - alpha * grad_w L(w; S_t)                                   (1)

(repeated ``inner_steps`` times), and the meta-objective of a batch of T tasks is

    J(w) = (1/T) sum_t L(theta_t(w); Q_t).                                   (2)

The meta-gradient grad J(w) differentiates through (1) (second order, MAML) or treats
grad L(w; S_t) as a constant (first order, FOMAML), in which case it is the query-loss
gradient at the adapted parameters, (1/T) sum_t grad L(theta_t; Q_t).

Any ``torch.nn.Module`` works: parameters are a ``dict[str, Tensor]`` used through
``torch.func.functional_call``, and the task batch is vectorised with ``torch.func.vmap``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, grad_and_value, vmap

Params = dict[str, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]
MetricsFn = Callable[[Tensor, Tensor], dict[str, Tensor]]  # named query metrics of one task


class TaskBatch(NamedTuple):
    """A batch of T tasks: support (K points) and query (Q points) sets, leading dim T
    (a stacked batch of several agents' tasks leads with (agents, T))."""

    x_support: Tensor
    y_support: Tensor
    x_query: Tensor
    y_query: Tensor

    @property
    def num_tasks(self) -> int:
        return int(self.x_support.shape[0])

    def to(self, device: torch.device) -> TaskBatch:
        """The batch on ``device`` (drawn on the CPU, computed on where the agent computes)."""
        return TaskBatch(*(part.to(device) for part in self))

    @staticmethod
    def stack(batches: Sequence[TaskBatch]) -> TaskBatch:
        """Several agents' batches as one, leading dim (agents, T)."""
        return TaskBatch(*(torch.stack(parts) for parts in zip(*batches)))

    def agent(self, i: int) -> TaskBatch:
        """The tasks of the ``i``-th agent of a stacked batch."""
        return TaskBatch(*(part[i] for part in self))


def mse_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean squared error (the sinusoid regression loss)."""
    return torch.mean((prediction - target) ** 2)


def _task_loss(model: nn.Module, loss_fn: LossFn) -> Callable[[Params, Tensor, Tensor], Tensor]:
    def loss(params: Params, x: Tensor, y: Tensor) -> Tensor:
        return loss_fn(functional_call(model, params, (x,)), y)

    return loss


def adapt(
    model: nn.Module,
    params: Params,
    x_support: Tensor,
    y_support: Tensor,
    *,
    inner_lr: float,
    inner_steps: int,
    first_order: bool = False,
    loss_fn: LossFn = mse_loss,
) -> Params:
    """Inner adaptation on one task: ``inner_steps`` SGD steps of eq. (1).

    With ``first_order`` the support gradients are detached, so a transform that
    differentiates the result sees d theta / d w = I (FOMAML).
    """
    support_loss = _task_loss(model, loss_fn)
    for _ in range(inner_steps):
        grads = grad(support_loss)(params, x_support, y_support)
        if first_order:
            grads = {name: g.detach() for name, g in grads.items()}
        params = {name: p - inner_lr * grads[name] for name, p in params.items()}
    return params


def meta_objective(
    model: nn.Module, inner_lr: float, inner_steps: int, first_order: bool, loss_fn: LossFn
) -> Callable[[Params, TaskBatch], Tensor]:
    """J(w) of eq. (2) for a batch, vectorised over tasks with ``vmap``."""
    query_loss = _task_loss(model, loss_fn)

    def one_task(params: Params, xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> Tensor:
        adapted = adapt(
            model, params, xs, ys,
            inner_lr=inner_lr, inner_steps=inner_steps, first_order=first_order, loss_fn=loss_fn,
        )
        return query_loss(adapted, xq, yq)

    def objective(params: Params, batch: TaskBatch) -> Tensor:
        losses = vmap(one_task, in_dims=(None, 0, 0, 0, 0))(params, *batch)
        return losses.mean()

    return objective


def meta_gradient(
    model: nn.Module,
    params: Params,
    batch: TaskBatch,
    *,
    inner_lr: float,
    inner_steps: int = 1,
    first_order: bool = False,
    loss_fn: LossFn = mse_loss,
) -> tuple[Params, Tensor]:
    """Return (grad J(w), J(w)) of eq. (2), the task batch vectorised with ``vmap``.

    Pure in ``params`` and ``batch``: it can itself be ``vmap``-ed over agents.
    """
    objective = meta_objective(model, inner_lr, inner_steps, first_order, loss_fn)
    grads, loss = grad_and_value(objective)(params, batch)
    return grads, loss.detach()


def meta_gradient_loop(
    model: nn.Module,
    params: Params,
    batch: TaskBatch,
    *,
    inner_lr: float,
    inner_steps: int = 1,
    first_order: bool = False,
    loss_fn: LossFn = mse_loss,
) -> tuple[Params, Tensor]:
    """The same as :func:`meta_gradient` with plain autograd and a Python loop over tasks.

    The reference implementation for tests and benchmarks.
    """
    names = list(params)
    leaves = [params[n].detach().requires_grad_(True) for n in names]
    total = torch.zeros((), dtype=leaves[0].dtype)
    for t in range(batch.num_tasks):
        theta = leaves
        for _ in range(inner_steps):
            out = functional_call(model, dict(zip(names, theta)), (batch.x_support[t],))
            support_grads = torch.autograd.grad(
                loss_fn(out, batch.y_support[t]), theta, create_graph=not first_order
            )
            theta = [p - inner_lr * g for p, g in zip(theta, support_grads)]
        out = functional_call(model, dict(zip(names, theta)), (batch.x_query[t],))
        total = total + loss_fn(out, batch.y_query[t])
    loss = total / batch.num_tasks
    grads = torch.autograd.grad(loss, leaves)
    return dict(zip(names, grads)), loss.detach()


def metrics_after_adaptation(
    model: nn.Module,
    params: Params,
    batch: TaskBatch,
    *,
    inner_lr: float,
    steps: Sequence[int] = tuple(range(11)),
    loss_fn: LossFn = mse_loss,
    metrics: MetricsFn | None = None,
    chunk_size: int | None = None,
) -> dict[str, Tensor]:
    """Query metrics of each task after ``steps`` SGD steps of eq. (1) on its support set.

    ``metrics(prediction, target)`` gives named scalars (default: ``{"loss": loss_fn}``).
    Returns {name: tensor of shape (T, len(steps))}: entry (t, j) is the metric at
    theta_t^{steps[j]} on Q_t, theta_t^0 = w. Adapts max(steps) times and evaluates only at
    the listed steps. No graph is kept (first-order evaluation). ``chunk_size`` tasks go
    through one ``vmap`` call at a time (memory; default: all).
    """
    task_loss = _task_loss(model, loss_fn)
    support_grad = grad(task_loss)
    measure = metrics or (lambda prediction, target: {"loss": loss_fn(prediction, target)})
    start = {name: p.detach() for name, p in params.items()}
    wanted = sorted(set(steps))

    def one_task(xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> dict[str, Tensor]:
        theta, measured = start, {}
        for step in range(wanted[-1] + 1):
            if step in wanted:
                measured[step] = measure(functional_call(model, theta, (xq,)), yq)
            if step < wanted[-1]:
                grads = support_grad(theta, xs, ys)
                theta = {name: p - inner_lr * grads[name] for name, p in theta.items()}
        return {name: torch.stack([measured[step][name] for step in steps]) for name in measured[wanted[0]]}

    with torch.no_grad():
        return vmap(one_task, chunk_size=chunk_size)(*batch)


def evaluate_after_adaptation(
    model: nn.Module,
    params: Params,
    batch: TaskBatch,
    *,
    inner_lr: float,
    steps: Sequence[int] = tuple(range(11)),
    loss_fn: LossFn = mse_loss,
    metrics: MetricsFn | None = None,
) -> dict[str, Tensor]:
    """The mean over the batch's tasks of :func:`metrics_after_adaptation`: {name: (len(steps),)}."""
    per_task = metrics_after_adaptation(model, params, batch, inner_lr=inner_lr, steps=steps, loss_fn=loss_fn, metrics=metrics)
    return {name: values.mean(dim=0) for name, values in per_task.items()}
