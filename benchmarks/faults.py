"""Benchmark: final MSE under failing agents and dropped links (default experiment, N = 10).

Dif-MAML and FedAvg-MAML, 500 rounds, seeds 0-2, in the vectorised engine (a Flower run
gives the same numbers: tests/test_flower_simulation.py), with fail-prob 0, 0.2, 0.4,
with link-drop-prob 0.3, and with fail-prob 0.2 for 625 rounds (as many expected updates per
agent as 500 fault-free rounds). Writes benchmarks/results/faults.json and prints a
markdown table (mean ± std over seeds) for benchmarks/faults.md.

    python benchmarks/faults.py [--rounds 500] [--seeds 0,1,2] [--faults "fail-prob 0.2,fault-free"]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from flower_difmaml.config import RunConfig
from flower_difmaml.runner.results import read_metrics
from flower_difmaml.runner.vectorized import run_vectorized

RESULTS = Path(__file__).parent / "results" / "faults.json"
STRATEGIES = ("dif-maml", "fedavg-maml")
FAULTS = {
    "fault-free": {},
    "fail-prob 0.2": {"fail_prob": 0.2},
    "fail-prob 0.4": {"fail_prob": 0.4},
    "link-drop-prob 0.3": {"link_drop_prob": 0.3},
    # the same expected number of updates per agent as the fault-free run: 500 / (1 - 0.2) rounds
    "fail-prob 0.2 for 625 rounds": {"fail_prob": 0.2, "num_rounds": 625},
}
KEYS = ("full-mse-1", "full-mse-10", "own-mse-1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--faults", default=",".join(FAULTS), help="conditions to (re)run; other rows are kept")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    chosen = [f.strip() for f in args.faults.split(",")]
    old = json.loads(RESULTS.read_text())["rows"] if RESULTS.exists() else []
    rows = [r for r in old if r["fault"] not in chosen and r["fault"] in FAULTS]
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in STRATEGIES:
            for fault in chosen:
                for seed in seeds:
                    name = f"{strategy}-{fault.replace(' ', '')}-{seed}"
                    change = {"num_rounds": args.rounds, "eval_tasks": 100, **FAULTS[fault]}
                    config = RunConfig(strategy=strategy, seed=seed, results_dir=tmp, run_name=name, **change)
                    final = run_vectorized(config, 10, progress=lambda line: None)["final"]
                    lines = read_metrics(Path(tmp) / name)[1:]
                    rows.append({
                        "strategy": strategy, "fault": fault, "seed": seed, "final": final,
                        "failed-per-round": float(np.mean([line["failed"] for line in lines])),
                        "links-down-per-round": float(np.mean([line.get("links-down", 0) for line in lines])),
                    })
                    print(json.dumps(rows[-1]), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    rows.sort(key=lambda r: (STRATEGIES.index(r["strategy"]), list(FAULTS).index(r["fault"]), r["seed"]))
    RESULTS.write_text(json.dumps({"benchmark": __doc__.splitlines()[0], "rounds": args.rounds, "rows": rows}, indent=2) + "\n")
    print(table(rows))


def table(rows: list[dict]) -> str:
    """Mean ± std over seeds, and each fault's full-mse-1 relative to the fault-free run."""
    out = ["| strategy | faults | failed / round | links down / round | " + " | ".join(KEYS) + " | full-mse-1 vs fault-free |",
           "|---|---|---|---|" + "---|" * (len(KEYS) + 1)]
    for strategy in STRATEGIES:
        base = np.mean([r["final"]["full-mse-1"] for r in rows if r["strategy"] == strategy and r["fault"] == "fault-free"])
        for fault in FAULTS:
            group = [r for r in rows if r["strategy"] == strategy and r["fault"] == fault]
            if not group:
                continue
            cells = []
            for key in KEYS:
                values = [r["final"][key] for r in group]
                cells.append(f"{np.mean(values):.3f} ± {np.std(values):.3f}")
            mse1 = np.mean([r["final"]["full-mse-1"] for r in group])
            failed = np.mean([r["failed-per-round"] for r in group])
            down = np.mean([r["links-down-per-round"] for r in group])
            out.append(f"| {strategy} | {fault} | {failed:.2f} | {down:.2f} | " + " | ".join(cells) + f" | {100 * (mse1 / base - 1):+.1f} % |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
