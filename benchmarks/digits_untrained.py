"""Study: the untrained Conv-4's accuracy on digits' unseen classes, by initialisation and test lr.

Issue 26's setting (benchmarks/digits_conv4.py's SETTING: 5-way 1-shot, 5 queries, Conv-4 of 64
filters, float32), 4 agents x 50 tasks of the full distribution (seed 0), no training: the
accuracy after 0, 1 and 10 SGD steps on the support set, with the project's evaluation
(``metrics_after_adaptation``, batch statistics of the batch at hand), for the authors' Keras
initialisation (``models.Conv4``) and PyTorch's own (``nn.Conv2d`` / ``nn.Linear``
``reset_parameters``), at test lr 0.4 (the setting's inner lr) and 0.1.

    PYTHONPATH=. python benchmarks/digits_untrained.py
"""

from __future__ import annotations

import time

import torch
from torch import nn

from digits_conv4 import SETTING  # benchmarks/digits_conv4.py
from flower_difmaml.config import RunConfig
from flower_difmaml.learner import MetaLearner
from flower_difmaml.meta.maml import metrics_after_adaptation
from flower_difmaml.models import Conv4

AGENTS, TASKS, STEPS = 4, 50, (0, 1, 10)


def pytorch_initialised(seed: int) -> dict[str, torch.Tensor]:
    """Conv-4's parameters with PyTorch's default initialisation of its convolutions and head."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Conv4(1, SETTING["n_way"], SETTING["filters"], 28)
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                nn.Conv2d.reset_parameters(module)
            elif isinstance(module, nn.Linear):
                nn.Linear.reset_parameters(module)
    return {name: p.detach() for name, p in model.named_parameters()}


def accuracy_after_steps(learner: MetaLearner, params_of, batch, lr: float) -> list[float]:
    """The accuracy after each of STEPS SGD steps at test lr ``lr``, the mean over the agents of
    ``batch`` (stacked, one row an agent); ``params_of(k)``: agent k's parameters."""
    return torch.stack([
        metrics_after_adaptation(learner.model, params_of(k), batch.agent(k), inner_lr=lr, steps=STEPS,
                                 loss_fn=learner.family.loss_fn, metrics=learner.family.metrics, chunk_size=25)["acc"].mean(0)
        for k in range(batch.x_support.shape[0])
    ]).mean(0).tolist()


def main() -> None:
    learner = MetaLearner.from_config(RunConfig(**SETTING, eval_tasks=TASKS), AGENTS)
    batch = learner.evaluation_batches(range(AGENTS))["full"]
    inits = {"keras (models.Conv4)": learner.initial_parameters(), "pytorch": pytorch_initialised(learner.config.seed)}
    for lr in (0.4, 0.1):
        for name, params in inits.items():
            start = time.perf_counter()
            accuracy = accuracy_after_steps(learner, lambda k: params, batch, lr)
            shown = " ".join(f"acc-{s} {a:.3f}" for s, a in zip(STEPS, accuracy))
            print(f"init {name}, test lr {lr}: {shown} ({time.perf_counter() - start:.0f} s, {AGENTS * TASKS} tasks)", flush=True)


if __name__ == "__main__":
    main()
