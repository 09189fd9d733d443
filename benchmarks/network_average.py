"""Diagnostic: full-distribution MSE of the network-average model of each run of a comparison.

Dif-MAML's agents each keep their own model w_k; this evaluates mean_k w_k (what FedAvg-MAML's
global model corresponds to) on every agent's full-distribution evaluation tasks, after 0, 1
and 10 adaptation steps, averaged over agents.

    python benchmarks/network_average.py benchmarks/results/reproduce_difmaml/a [--strategies dif-maml,fedavg-maml]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from flower_difmaml.config import RunConfig
from flower_difmaml.learner import MetaLearner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--strategies", default="dif-maml,fedavg-maml")
    args = parser.parse_args()
    keys = RunConfig().to_mapping()
    for strategy in args.strategies.split(","):
        for run in sorted((Path(args.folder) / "runs").glob(f"{strategy}-seed*")):
            saved = json.loads((run / "config.json").read_text())
            config = RunConfig.from_mapping({k: v for k, v in saved.items() if k in keys})
            learner = MetaLearner.from_config(config, saved["num-agents"])
            mean = learner.layout.params(np.load(run / "models.npy").mean(axis=0))
            curves = [learner.evaluate(mean, k, (0, 1, 10))["full"].numpy() for k in range(saved["num-agents"])]
            own = json.loads((run / "summary.json").read_text())["final"]
            print(f"{run.name}: network-average model full-mse-0/1/10 {np.round(np.mean(curves, axis=0), 4).tolist()} "
                  f"| agents' own models full-mse-1 {own['full-mse-1']:.4f}")


if __name__ == "__main__":
    main()
