"""Failing agents, dropped links, reply checks, checkpoint and resume, `sim check` (in-process)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from helpers import run_until_killed

from flower_difmaml.config import ConfigError, RunConfig
from flower_difmaml.network.faults import agent_fails, failing_agents, links_up
from flower_difmaml.cli import main
from flower_difmaml.runner.results import read_metrics
from flower_difmaml.runner.vectorized import run_vectorized
from flower_difmaml.strategies import DifMAML
from flower_difmaml.block import EvaluateReplies, TrainReplies
from flower_difmaml.runner.rounds import MAX_SILENT_ROUNDS, checked, reply_problem, run_rounds

SMALL = dict(eval_every=5, eval_tasks=4, tasks_per_agent=3, shots=5, queries=5, topology="ring")
QUIET = dict(progress=lambda line: None)


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_injected_failures_are_seeded_and_have_the_asked_rate() -> None:
    draws = [agent_fails(7, k, r, 0.2) for k in range(20) for r in range(1, 251)]
    assert draws == [agent_fails(7, k, r, 0.2) for k in range(20) for r in range(1, 251)]
    assert abs(np.mean(draws) - 0.2) < 0.02
    assert not any(agent_fails(7, k, 1, 0.0) for k in range(20))
    for round_ in (1, 2, 3):  # all agents' in one draw: each agent's own
        assert failing_agents(7, np.arange(20), round_, 0.2).tolist() == [agent_fails(7, k, round_, 0.2) for k in range(20)]
    assert links_up(5, 7, 3, 0.0).all() and np.array_equal(links_up(50, 7, 3, 0.5), links_up(50, 7, 3, 0.5))


def test_failed_agents_are_counted_and_skip_the_round(tmp_path: Path) -> None:
    config = RunConfig(results_dir=str(tmp_path), run_name="f", num_rounds=12, fail_prob=0.3, **SMALL)
    run_vectorized(config, 5, **QUIET)
    lines = read_metrics(tmp_path / "f")[1:]
    for line in lines:
        expected = [k for k in range(5) if agent_fails(0, k, line["round"], 0.3)]
        assert line["failed"] == len(expected) and line.get("failed-agents", []) == expected
        assert line["replies"] == 5 - len(expected)
    assert sum(line["failed"] for line in lines) > 0


def test_dropped_links_are_counted_and_change_the_result(tmp_path: Path) -> None:
    base = RunConfig(results_dir=str(tmp_path), num_rounds=10, **SMALL)
    run_vectorized(base.replace(run_name="up"), 6, **QUIET)
    run_vectorized(base.replace(run_name="drop", link_drop_prob=0.5), 6, **QUIET)
    lines = read_metrics(tmp_path / "drop")[1:]
    assert all(0 <= line["links-down"] <= 6 for line in lines) and sum(line["links-down"] for line in lines) > 0
    assert not np.array_equal(np.load(tmp_path / "up" / "models.npy"), np.load(tmp_path / "drop" / "models.npy"))


class _FakeEngine:
    """Agent 1 sends NaN, or every agent fails with a real error."""

    def __init__(self, all_fail: bool = False) -> None:
        self.all_fail = all_fail

    def train(self, request):
        plan = request.models
        if self.all_fail:
            return TrainReplies({}, {}, {}, 0.0, {k: "node went away" for k in plan})
        models = {k: m + 1.0 for k, m in plan.items()}
        models[1] = np.full_like(plan[1], np.nan)
        return TrainReplies(models, {k: 1 for k in plan}, {k: 0.5 for k in plan}, 0.0)

    def evaluate(self, request):
        curves = {k: np.ones(len(request.steps)) for k in request.models}
        return EvaluateReplies({f"{s}-mse": curves for s in ("full", "own")})


class _Recorder:
    def __init__(self) -> None:
        self.lines: list[dict] = []

    def record(self, round_, metrics):
        self.lines.append({"round": round_, **metrics})


def test_malformed_replies_are_rejected_logged_and_the_agent_keeps_its_model() -> None:
    assert reply_problem(np.zeros(3, dtype=np.float32), 3).startswith("model dtype float32")
    assert reply_problem(np.zeros(4), 3).startswith("model shape (4,)")
    assert reply_problem(np.array([0.0, np.inf, 1.0]), 3) == "model has NaN or Inf entries"
    assert reply_problem(np.zeros(3), 3) is None
    replies = checked(TrainReplies({0: np.zeros(2), 1: np.zeros(3)}, {0: 1, 1: 1}, {0: 0.1, 1: 0.2}, 0.0), 2)
    assert list(replies.models) == [0] and list(replies.losses) == [0] and "shape (3,)" in replies.failed[1]

    strategy, recorder, log = DifMAML(np.zeros(2), np.full((3, 3), 1 / 3)), _Recorder(), []
    run_rounds(strategy, _FakeEngine(), recorder, num_rounds=2, eval_every=1, progress=log.append)
    assert [line["failed"] for line in recorder.lines[1:]] == [1, 1]
    assert any("round 1: agent 1 failed: reply rejected: model has NaN or Inf entries" in line for line in log)
    assert np.isfinite(strategy.current_models()).all()
    np.testing.assert_allclose(strategy.current_models()[1], [0.0, 0.0])  # kept its model
    np.testing.assert_allclose(strategy.current_models()[0], [2.0, 2.0])  # averaged 0 and 2 (twice +1)


def test_a_run_without_any_reply_for_many_rounds_stops_with_the_reason() -> None:
    strategy = DifMAML(np.zeros(2), np.eye(3))
    with pytest.raises(RuntimeError, match=f"no agent replied in {MAX_SILENT_ROUNDS} rounds.*node went away"):
        run_rounds(strategy, _FakeEngine(all_fail=True), _Recorder(), num_rounds=50, eval_every=100, **QUIET)


def test_injected_failures_are_not_logged_as_warnings(tmp_path: Path) -> None:
    log: list[str] = []
    run_vectorized(RunConfig(results_dir=str(tmp_path), num_rounds=4, fail_prob=0.5, **SMALL), 4, progress=log.append)
    assert not any(line.startswith("warning") for line in log)


def test_extending_a_finished_run_equals_the_longer_run_exactly(tmp_path: Path) -> None:
    config = RunConfig(
        results_dir=str(tmp_path), meta_optimizer="adam", meta_lr=0.003, fail_prob=0.2, link_drop_prob=0.3,
        checkpoint_every=4, **SMALL,
    )
    run_vectorized(config.replace(run_name="long", num_rounds=16), 5, **QUIET)
    run_vectorized(config.replace(run_name="short", num_rounds=10), 5, **QUIET)
    run_vectorized(config.replace(num_rounds=16, resume_from=str(tmp_path / "short")), 5, **QUIET)
    assert _summary(tmp_path / "short")["final"] == _summary(tmp_path / "long")["final"]
    np.testing.assert_array_equal(np.load(tmp_path / "short" / "models.npy"), np.load(tmp_path / "long" / "models.npy"))
    assert [line["round"] for line in read_metrics(tmp_path / "short")] == list(range(17))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(seed=1), "seed: 1 differs from 0 of the run in resume-from="),
        (dict(fail_prob=0.1), "fail-prob: 0.1 differs from 0.0"),
        (dict(num_rounds=6), "num-rounds: 6; the run in .* is checkpointed at round 6; allowed: > 6"),
    ],
)
def test_resume_refuses_a_config_that_does_not_continue_the_run(tmp_path: Path, change: dict, message: str) -> None:
    config = RunConfig(results_dir=str(tmp_path), run_name="r", num_rounds=6, checkpoint_every=3, **SMALL)
    run_vectorized(config, 4, **QUIET)
    before = (tmp_path / "r" / "metrics.jsonl").read_text()
    with pytest.raises(ConfigError, match=message):
        run_vectorized(config.replace(resume_from=str(tmp_path / "r"), **change), 4, **QUIET)
    with pytest.raises(ConfigError, match="resume-from: the run in .* has 4 agents, not 5"):
        run_vectorized(config.replace(resume_from=str(tmp_path / "r"), num_rounds=9), 5, **QUIET)
    assert (tmp_path / "r" / "metrics.jsonl").read_text() == before  # nothing written is lost


def test_a_killed_run_resumes_to_the_same_numbers_exactly(tmp_path: Path) -> None:
    keys = (f"num-rounds=400 eval-every=100 checkpoint-every=50 meta-optimizer='adam' meta-lr=0.003 fail-prob=0.2 "
            f"link-drop-prob=0.2 results-dir='{tmp_path}'")
    run_until_killed(["run", "--engine", "vectorized", "-c", f"{keys} run-name='killed'"], tmp_path / "killed" / "metrics.jsonl", 120)
    assert not (tmp_path / "killed" / "summary.json").exists()
    assert main(["run", "--engine", "vectorized", "-c", f"{keys} run-name='killed' resume-from='{tmp_path / 'killed'}'"]) == 0
    assert main(["run", "--engine", "vectorized", "-c", f"{keys} run-name='whole'"]) == 0
    assert _summary(tmp_path / "killed")["final"] == _summary(tmp_path / "whole")["final"]
    np.testing.assert_array_equal(np.load(tmp_path / "killed" / "models.npy"), np.load(tmp_path / "whole" / "models.npy"))
    assert [line["round"] for line in read_metrics(tmp_path / "killed")] == list(range(401))


def test_check_validates_without_running_or_writing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "edges.txt").write_text("0 1\n1 2\n2 0\n")
    np.savetxt(tmp_path / "bad.csv", np.full((3, 3), 0.5), delimiter=",")
    (tmp_path / "a-file").write_text("")
    cases = {
        "": "ok: dif-maml on 10 agents",
        "strategy='gossip'": "strategy: unknown 'gossip'; allowed: dif-maml, fedavg-maml, non-coop",
        "topology-seed=0": "topology: 'erdos-renyi' on 10 agents is not connected",
        f"topology='file' topology-file='{tmp_path / 'edges.txt'}'": "topology-file: .* names agents 0..2 \\(3 agents\\) but num_agents=10",
        f"topology='complete' combination='{tmp_path / 'bad.csv'}'": r"combination: .*bad.csv: shape \(3, 3\) does not match",
        f"results-dir='{tmp_path / 'a-file'}'": "results-dir: .*a-file is a file, not a folder",
        f"resume-from='{tmp_path}'": "resume-from: .* has no config.json",
        "colour='red'": "colour: unknown key",
    }
    for overrides, message in cases.items():
        code = main(["check", "-c", f"results-dir='{tmp_path / 'out'}' {overrides}"])
        captured = capsys.readouterr()
        text = (captured.out + captured.err).strip()
        assert len(text.splitlines()) == 1, text
        assert (code == 0) == message.startswith("ok"), (overrides, text)
        assert re.search(message, text), (overrides, text)
    assert not (tmp_path / "out").exists()
