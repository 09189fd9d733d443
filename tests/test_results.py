"""Results folder helpers and round metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flower_difmaml.runner.plots import plot_run
import torch

from flower_difmaml.runner import results
from flower_difmaml.runner.results import RunRecorder, disagreement, evaluation_metrics, read_metrics, resolve_run_dir


def test_disagreement_in_chunks_on_arrays_and_tensors_equals_the_formula(monkeypatch: pytest.MonkeyPatch) -> None:
    """(1/n) sum_k ||w_k - w_bar||^2 over the kept rows, in float64 from float32 models: one
    chunk gives the formula's numbers to the bit; chunks of 3 rows (the last one short), and
    tensors, give them to float64 round-off."""
    models = np.random.default_rng(0).normal(3.0, 1.0, size=(10, 7)).astype(np.float32)
    keep = np.array([True] * 8 + [False, True])

    def formula(rows: np.ndarray) -> float:
        rows = rows.astype(np.float64)
        return float(np.mean(np.sum((rows - rows.mean(axis=0)) ** 2, axis=1)))

    assert disagreement(models) == formula(models)
    assert disagreement(models, keep) == formula(models[keep])
    assert np.isnan(disagreement(models, np.zeros(10, dtype=bool)))  # none kept
    model = np.random.default_rng(1).normal(size=1761)  # FedAvg's rows, one model broadcast: round-off
    assert disagreement(np.broadcast_to(model, (10, 1761))) == formula(np.tile(model, (10, 1)))  # only, summed in one order
    monkeypatch.setattr(results, "DISAGREEMENT_CHUNK_BYTES", 3 * 7 * 8)
    for rows in (models, torch.from_numpy(models)):
        assert disagreement(rows) == pytest.approx(formula(models), rel=1e-14)
        assert disagreement(rows, keep) == pytest.approx(formula(models[keep]), rel=1e-14)


def test_disagreement_and_means_by_hand() -> None:
    models = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 3.0]])  # mean (1, 1)
    # ||w_k - mean||^2 = 2, 2, 4 -> disagreement 8/3
    curves = {"full-mse": np.array([[3.0, 2.0, 1.0]] * 3), "own-mse": np.array([[1.0, 1.0, 0.5], [3.0, 1.0, 0.5], [2.0, 1.0, 0.5]])}
    metrics = evaluation_metrics(curves, (0, 1, 10), (0, 1, 10), models)
    assert metrics["disagreement"] == pytest.approx(8 / 3)
    assert metrics["full-mse-10"] == 1.0 and metrics["own-mse-0"] == 2.0
    assert metrics["agents"]["own-mse-0"] == [1.0, 3.0, 2.0]
    assert "full-mse-curve" not in metrics


def test_full_curve_is_reported_when_all_steps_were_evaluated() -> None:
    curve = np.tile(np.arange(11.0), (2, 1))
    metrics = evaluation_metrics({"full-mse": curve, "own-mse": curve}, range(11), (0, 1, 10), np.zeros((2, 3)))
    assert metrics["full-mse-curve"] == list(np.arange(11.0)) and metrics["full-mse-10"] == 10.0


def test_explicit_run_name_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    with pytest.raises(ValueError, match="run-name: .*mine exists already"):
        resolve_run_dir(str(tmp_path), "mine", "default")
    (tmp_path / "default").mkdir()
    assert resolve_run_dir(str(tmp_path), "", "default") == tmp_path / "default-2"


def test_recorder_writes_lines_and_summary(tmp_path: Path) -> None:
    recorder = RunRecorder(tmp_path / "run", {"seed": 0}, extra={"num-agents": 2})
    curve = np.tile(np.linspace(2, 1, 11), (2, 1))
    recorder.record(0, evaluation_metrics({"full-mse": curve, "own-mse": curve}, range(11), (0, 1, 10), np.zeros((2, 3))))
    recorder.record(1, {"train-loss": 0.5})
    summary = recorder.finish(num_rounds=1)
    assert [m["round"] for m in read_metrics(tmp_path / "run")] == [0, 1]
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk == summary and summary["final"]["full-mse-0"] == 2.0 and summary["num-agents"] == 2
    plot_run(tmp_path / "run")
    assert (tmp_path / "run" / "adaptation.png").stat().st_size > 0


def test_agents_that_did_not_answer_are_left_out_of_the_means() -> None:
    curve = np.array([[2.0, 1.0, 0.5], [np.nan, np.nan, np.nan], [4.0, 3.0, 1.5]])
    metrics = evaluation_metrics({"full-mse": curve, "own-mse": curve}, (0, 1, 10), (0, 1, 10), np.zeros((3, 2)))
    assert metrics["full-mse-1"] == 2.0 and metrics["full-evaluated"] == 2
    assert metrics["agents"]["own-mse-10"] == [0.5, None, 1.5]
    nobody = evaluation_metrics({"full-mse": curve[[1]], "own-mse": curve[[1]]}, (0, 1, 10), (0, 1, 10), np.zeros((1, 2)))
    assert nobody["full-mse-1"] is None and nobody["own-evaluated"] == 0


def test_progress_line_survives_a_round_without_numbers() -> None:
    from flower_difmaml.runner.rounds import progress_line

    line = {"train-loss": None, "full-mse-1": None, "full-mse-10": 0.5, "own-mse-1": 1.0, "disagreement": 0.0}
    text = progress_line(5, 10, line, 2.0, 5)
    assert "train-loss n/a full-mse-1 n/a full-mse-10 0.5000" in text and "ETA 2 s" in text


def test_resumed_recorder_keeps_lines_up_to_the_checkpoint(tmp_path: Path) -> None:
    recorder = RunRecorder(tmp_path / "run", {"seed": 0})
    for round_ in range(6):
        recorder.record(round_, {"full-mse-1": float(round_), "disagreement": 0.0} if round_ % 2 == 0 else {})
    recorder._metrics.close()
    resumed = RunRecorder(tmp_path / "run", {"seed": 0}, resume_round=3)
    assert [line["round"] for line in read_metrics(tmp_path / "run")] == [0, 1, 2, 3]
    assert resumed.last_evaluation["round"] == 2
    resumed.record(4, {"full-mse-1": 9.0, "disagreement": 0.0})
    assert [line["round"] for line in read_metrics(tmp_path / "run")] == [0, 1, 2, 3, 4]


def test_plots_of_a_diverged_run_are_drawn(tmp_path: Path) -> None:
    lines = [
        {"round": 0, "full-mse-1": 3.0, "full-mse-10": 2.0, "own-mse-1": 3.0, "own-mse-10": 2.0, "disagreement": 1e-31},
        {"round": 50, "full-mse-1": None, "full-mse-10": None, "own-mse-1": 1e300, "own-mse-10": None, "disagreement": 1e277,
         "full-mse-curve": [1e300] * 11, "own-mse-curve": [np.inf] * 11},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert [p.name for p in plot_run(tmp_path)] == ["mse.png", "disagreement.png", "adaptation.png"]


def test_plots_show_the_setting_start_the_disagreement_at_round_1_and_tell_coinciding_curves_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flower_difmaml.runner import plots

    figures = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.setdefault(path.name, fig) and path)
    (tmp_path / "config.json").write_text(json.dumps(
        {"strategy": "fedavg-maml", "num-agents": 3, "topology": "ring", "task": "sinusoid", "num-rounds": 20, "seed": 4}))
    lines = [{"round": r, "full-mse-1": 3.0 - r / 10, "full-mse-10": 2.0, "own-mse-1": 3.0 - r / 10, "own-mse-10": 1.0,
              "disagreement": d} for r, d in ((0, 0.0), (10, 1e-30), (20, 2e-30))]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    plot_run(tmp_path)
    (disagreement,) = figures["disagreement.png"].axes[0].get_lines()
    assert list(disagreement.get_xdata()) == [10, 20] and list(disagreement.get_ydata()) == [1e-30, 2e-30]  # no floor
    assert disagreement.get_label() == "disagreement (0 or < 1e-20 at every round: round-off, one model)"
    mse = figures["mse.png"].axes[0]
    assert [line.get_label() for line in mse.get_lines()] == ["full-mse-1", "full-mse-10", "own-mse-1 (= full-mse-1)", "own-mse-10"]
    assert len({line.get_marker() for line in mse.get_lines()}) == 4
    assert mse.get_title().endswith("fedavg-maml, 3 agents, ring graph, sinusoid, 20 rounds, seed 4")


def test_log_axes_of_less_than_two_decades_have_plain_tick_labels() -> None:
    from flower_difmaml.runner import plots

    fig, ax = plots._subplots(figsize=(6, 4))
    ax.plot([0, 1], [0.6, 2.5])
    ax.set_yscale("log")
    plots._readable_log(ax)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels(minor=True) + ax.get_yticklabels() if t.get_text()]
    assert {"0.6", "1", "2"} <= set(labels) and not any("10^" in t or "times" in t or "e-" in t for t in labels), labels
