"""The comparison runner: strategies x seeds through Flower's simulation, one table, plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from flower_difmaml.config import RunConfig
from flower_difmaml.cli import main, run_in_flower
from flower_difmaml.runner.compare import compare, report

pytestmark = pytest.mark.slow

SMALL = RunConfig(num_rounds=4, eval_every=2, eval_tasks=3, final_eval_tasks=0, tasks_per_agent=2, shots=4, queries=4, topology="ring")


@pytest.fixture(scope="module")
def comparison(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list[str]]:
    folder = tmp_path_factory.mktemp("compare")
    (folder / "runs" / "non-coop-seed1").mkdir(parents=True)  # taken: that one run must fail alone
    lines: list[str] = []
    failed = compare(SMALL, ["dif-maml", "non-coop"], [0, 1], folder, num_agents=4, run=run_in_flower, progress=lines.append)
    return folder, failed, lines


def test_table_is_mean_and_std_of_the_runs_own_summaries(comparison) -> None:
    folder, failed, lines = comparison
    assert failed == ["non-coop-seed1"]
    assert any("non-coop-seed1: FAILED: run-name:" in line for line in lines)
    assert sum("full-mse-1" in line and line.startswith("[") for line in lines) == 3
    with open(folder / "comparison.csv", encoding="utf-8") as handle:
        rows = {row["strategy"]: row for row in csv.DictReader(handle)}
    finals = [json.loads((folder / "runs" / f"dif-maml-seed{s}" / "summary.json").read_text())["final"] for s in (0, 1)]
    for key in ("full-mse-1", "own-mse-10", "disagreement"):
        values = [f[key] for f in finals]
        assert float(rows["dif-maml"][f"{key}-mean"]) == pytest.approx(np.mean(values), rel=1e-12)
        assert float(rows["dif-maml"][f"{key}-std"]) == pytest.approx(np.std(values, ddof=1), rel=1e-9)
    assert rows["dif-maml"]["seeds"] == "2" and rows["non-coop"]["seeds"] == "1"
    for plot in ("mse_vs_round.png", "mse_vs_steps.png", "disagreement.png", "graph.png"):
        assert (folder / plot).stat().st_size > 0


def test_strategies_share_graph_tasks_and_initial_model(comparison) -> None:
    folder, _, _ = comparison
    configs = [json.loads((folder / "runs" / name / "config.json").read_text()) for name in ("dif-maml-seed0", "non-coop-seed0")]
    assert configs[0]["edges"] == configs[1]["edges"]
    lines = [(folder / "runs" / name / "metrics.jsonl").read_text().splitlines()[0] for name in ("dif-maml-seed0", "non-coop-seed0")]
    assert json.loads(lines[0])["full-mse-0"] == json.loads(lines[1])["full-mse-0"]  # same initial model, same tasks


def test_report_redraws_from_files(comparison) -> None:
    folder, _, _ = comparison
    (folder / "comparison.csv").unlink()
    text = report(folder)
    assert (folder / "comparison.csv").exists() and text.startswith("| strategy | seeds |")
    assert "| dif-maml | 2 |" in text


def test_command_rejects_an_unknown_strategy_before_running(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["compare", "--strategies", "dif-maml,fedsgd", "--out", str(tmp_path / "c")]) == 2
    assert "strategy: unknown 'fedsgd'" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
