"""Several strategies x seeds on one graph: runs, one table (mean ± std over seeds, and the
runs' 95 % interval over tasks), plots.

    flower-difmaml compare --strategies dif-maml,fedavg-maml,non-coop --seeds 0,1,2 -c "..."
    flower-difmaml report <folder>

Every run uses the same config but for ``strategy`` and ``seed``: the same graph
(``topology-seed``), and for one seed the same tasks and initial model across strategies.
The runs go to ``<folder>/runs/<strategy>-seed<seed>/``; the table and plots are drawn from
their files only, so ``report`` redraws them at any time.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..config import RunConfig
from ..strategies import strategy_label
from .plots import plot_comparison
from .results import read_metrics
from .stopping import RunStopped

RUNS = "runs"


def run_name(strategy: str, seed: int) -> str:
    return f"{strategy_label(strategy)}-seed{seed}"


def compare(
    base: RunConfig,
    strategies: Sequence[str],
    seeds: Sequence[int],
    folder: Path,
    *,
    num_agents: int,
    run: Callable[[RunConfig, int], object],
    progress: Callable[[str], None] = print,
) -> list[str]:
    """Run every strategy x seed with ``run(config, num_agents)`` (an engine: Flower's
    simulation or the vectorised one; a failing run is reported, the others still run),
    then write the report. Returns the names of the runs that failed."""
    folder.mkdir(parents=True, exist_ok=True)
    total, failed = len(strategies) * len(seeds), []
    for i, (strategy, seed) in enumerate(((s, seed) for s in strategies for seed in seeds), start=1):
        name = run_name(strategy, seed)
        start = time.perf_counter()
        try:
            config = base.replace(strategy=strategy, seed=seed, results_dir=str(folder / RUNS), run_name=name)
            run(config, num_agents)
            final = json.loads((folder / RUNS / name / "summary.json").read_text())["final"]
            shown = " ".join(f"{k} {v:.4f}" for k, v in final.items() if k.endswith("-1") and not k.startswith("byz"))
            progress(f"[{i}/{total}] {name}: {shown} ({time.perf_counter() - start:.1f} s)")
        except RunStopped:  # a stop request stops the comparison (the stopped run keeps its checkpoint)
            progress(f"[{i}/{total}] {name}: stopped; finished runs are in {folder / RUNS}")
            raise
        except Exception as error:  # noqa: BLE001 - one failed run must not stop the others
            failed.append(name)
            progress(f"[{i}/{total}] {name}: FAILED: {' '.join(str(error).split())}")
    progress(report(folder))
    return failed


def _runs(folder: Path) -> dict[str, list[Path]]:
    """Finished runs (with a summary.json), grouped by strategy, in seed order."""
    groups: dict[str, list[Path]] = {}
    for summary in sorted((folder / RUNS).glob("*/summary.json")):
        config = json.loads((summary.parent / "config.json").read_text())
        groups.setdefault(config["strategy"], []).append(summary.parent)
    if not groups:
        raise ValueError(f"report: no finished runs under {folder / RUNS}")
    return groups


def table(folder: Path, groups: dict[str, list[Path]] | None = None) -> list[dict]:
    """One row per strategy: mean and std over seeds of every ``final`` metric all runs have
    (those of Byzantine agents aside)."""
    finals = {
        strategy: [json.loads((run / "summary.json").read_text())["final"] for run in runs]
        for strategy, runs in (groups or _runs(folder)).items()
    }
    every = [final for runs in finals.values() for final in runs]
    keys = [k for k in every[0] if not k.startswith("byzantine-") and all(k in final for final in every)]
    rows = []
    for strategy, runs in finals.items():
        row: dict = {"strategy": strategy, "seeds": len(runs)}
        for key in keys:
            values = np.array([f[key] for f in runs], dtype=np.float64)
            row[f"{key}-mean"] = float(values.mean())
            row[f"{key}-std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def _cell(row: dict, key: str) -> str:
    """mean ± std over seeds, and [± the seeds' mean 95 % half-width over tasks] where known."""
    interval = row.get(f"{key}-ci95-mean")
    return f"{row[f'{key}-mean']:.4g} ± {row[f'{key}-std']:.2g}" + ("" if interval is None else f" [±{interval:.2g}]")


def markdown(rows: list[dict]) -> str:
    """The table: one column a final metric, "mean ± std over seeds [± 95 % interval over tasks]"."""
    keys = [k.removesuffix("-mean") for k in rows[0] if k.endswith("-mean") and not k.endswith("-ci95-mean")]
    header = "| strategy | seeds | " + " | ".join(keys) + " |"
    lines = [header, "|---|---:|" + "---:|" * len(keys)]
    for row in rows:
        cells = [_cell(row, k) for k in keys]
        lines.append(f"| {row['strategy']} | {row['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(folder: Path) -> str:
    """Write comparison.csv and the plots from the runs' files; return the Markdown table."""
    folder = Path(folder)
    groups = _runs(folder)
    rows = table(folder, groups)
    with open(folder / "comparison.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_comparison(folder, {strategy: [read_metrics(run) for run in runs] for strategy, runs in groups.items()})
    text = markdown(rows)
    (folder / "comparison.md").write_text(text + "\n")
    return text
