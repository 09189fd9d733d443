"""MAML on torch.func (no Flower import): adaptation, meta-gradients, meta-optimizers, evaluation."""

from .maml import (
    Params,
    TaskBatch,
    adapt,
    evaluate_after_adaptation,
    meta_gradient,
    meta_gradient_loop,
)
from .optimizers import SGD, Adam, MetaOptimizer, make_meta_optimizer

__all__ = [
    "Adam",
    "MetaOptimizer",
    "Params",
    "SGD",
    "TaskBatch",
    "adapt",
    "evaluate_after_adaptation",
    "make_meta_optimizer",
    "meta_gradient",
    "meta_gradient_loop",
]
