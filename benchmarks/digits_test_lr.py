"""Study: issue 26's digits setting, trained as it is, evaluated at test lr 0.4 (its inner lr) and 0.1.

Dif-MAML and non-coop, seeds 0-2, trained by the vectorised engine with benchmarks/digits_conv4.py's
SETTING (100 rounds; evaluation left out of the runs), then every agent's final model evaluated on
50 tasks of the full distribution (200 in all, the project's evaluation: ``metrics_after_adaptation``)
after 0, 1 and 10 SGD steps at each test lr; the mean over agents.

    PYTHONPATH=. python benchmarks/digits_test_lr.py
"""

from __future__ import annotations

import tempfile
import time

import numpy as np

from digits_conv4 import SETTING  # benchmarks/digits_conv4.py
from digits_untrained import AGENTS, STEPS, TASKS, accuracy_after_steps  # benchmarks/digits_untrained.py
from flower_difmaml.config import RunConfig
from flower_difmaml.learner import MetaLearner
from flower_difmaml.runner.vectorized import run_vectorized

TEST_LRS = (0.4, 0.1)


def main() -> None:
    root = tempfile.mkdtemp()
    for seed in (0, 1, 2):
        for strategy in ("dif-maml", "non-coop"):
            config = RunConfig(**{**SETTING, "eval_every": 1000}, strategy=strategy, seed=seed, eval_tasks=1,
                               final_eval_tasks=0, checkpoint_every=0, results_dir=root, run_name=f"{strategy}-{seed}")
            start = time.perf_counter()
            run_vectorized(config, AGENTS, progress=lambda line: None)
            trained = time.perf_counter() - start
            learner = MetaLearner.from_config(config.replace(eval_tasks=TASKS), AGENTS)
            batch = learner.evaluation_batches(range(AGENTS))["full"]
            models = np.load(f"{root}/{strategy}-{seed}/models.npy")
            for lr in TEST_LRS:
                accuracy = accuracy_after_steps(learner, lambda k: learner.layout.params(models[k]), batch, lr)
                shown = " ".join(f"acc-{s} {a:.3f}" for s, a in zip(STEPS, accuracy))
                print(f"{strategy} seed {seed}, test lr {lr}: {shown} (trained in {trained:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
