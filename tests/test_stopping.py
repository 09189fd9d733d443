"""Stopping a run: SIGINT ends it after the round, with a checkpoint and the command that resumes it."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import run_until_killed

from flower_difmaml.cli import main, parse_overrides
from flower_difmaml.config import ConfigError, RunConfig
from flower_difmaml.runner.results import read_metrics
from flower_difmaml.runner.stopping import resume_overrides
from flower_difmaml.runner.vectorized import run_vectorized

KEYS = "eval-every=1000 eval-tasks=4 tasks-per-agent=3 shots=5 queries=5 topology='ring' meta-optimizer='adam' meta-lr=0.003"


def _rounds(metrics: Path) -> list[int]:
    return [json.loads(line)["round"] for line in metrics.read_text().splitlines() if line.endswith("}")] if metrics.exists() else []


def _interrupt_after(args: list[str], metrics: Path, after_round: int) -> subprocess.CompletedProcess:
    """Run ``flower-difmaml args``; send it SIGINT once metrics.jsonl has ``after_round``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "flower_difmaml", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and max(_rounds(metrics), default=-1) < after_round:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be stopped"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


@pytest.mark.parametrize("checkpoint_every", [1000, 3], ids=["before-the-first-checkpoint", "after-it"])
def test_sigint_stops_a_vectorized_run_in_one_line_and_its_command_resumes_to_the_numbers_of_a_whole_run(
    tmp_path: Path, checkpoint_every: int
) -> None:
    keys = f"{KEYS} checkpoint-every={checkpoint_every} results-dir='{tmp_path}'"
    stopped = _interrupt_after(["run", "--num-agents", "3", "-c", f"num-rounds=100000 {keys} run-name='s'"],
                               tmp_path / "s" / "metrics.jsonl", 5)
    assert stopped.returncode == 130
    assert "Traceback" not in stopped.stderr and "KeyboardInterrupt" not in stopped.stderr, stopped.stderr
    last = stopped.stderr.strip().splitlines()[-1]
    match = re.fullmatch(r"flower-difmaml: stopped after round (\d+) of 100000; checkpoint in (\S+); resume with: (.+)", last)
    assert match, stopped.stderr
    round_, command = int(match.group(1)), shlex.split(match.group(3))
    assert round_ >= 5 and Path(match.group(2)) == tmp_path / "s" and _rounds(tmp_path / "s" / "metrics.jsonl")[-1] == round_
    assert command[:2] == ["flower-difmaml", "run"] and command[-2] == "-c"

    total = round_ + 4  # the printed command, with more rounds
    resumed = subprocess.run([sys.executable, "-m", "flower_difmaml", *command[1:-1], f"{command[-1]} num-rounds={total}"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert main(["run", "--num-agents", "3", "-c", f"num-rounds={total} {keys} run-name='whole'"]) == 0
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["final"] == json.loads((tmp_path / "whole" / "summary.json").read_text())["final"]
    np.testing.assert_array_equal(np.load(tmp_path / "s" / "models.npy"), np.load(tmp_path / "whole" / "models.npy"))
    assert [line["round"] for line in read_metrics(tmp_path / "s")] == list(range(total + 1))
    assert summary["session-seconds"] < summary["wall-seconds"]


def test_the_resume_overrides_give_back_the_config() -> None:
    config = RunConfig(strategy="non-coop", num_rounds=70, inner_lr=0.02, first_order=True, topology="ring",
                       run_name="x", results_dir="/tmp/a b")
    text = resume_overrides(config, Path("/tmp/a b/x"))
    assert text == "strategy='non-coop' topology='ring' num-rounds=70 results-dir='/tmp/a b' inner-lr=0.02 first-order=true resume-from='/tmp/a b/x'"
    assert RunConfig.from_mapping({**RunConfig().to_mapping(), **parse_overrides(text)}) == config.replace(
        run_name="", resume_from="/tmp/a b/x")


def test_a_run_killed_before_its_first_checkpoint_is_run_again_under_its_run_name(tmp_path: Path, capsys) -> None:
    keys = f"num-rounds=100000 {KEYS} checkpoint-every=100000 results-dir='{tmp_path}' run-name='k'"
    run_until_killed(["run", "--num-agents", "3", "-c", keys], tmp_path / "k" / "metrics.jsonl", 3)
    config = RunConfig.from_mapping({**RunConfig().to_mapping(), **parse_overrides(keys.replace("100000 ", "6 "))})
    with pytest.raises(ConfigError, match=r"resume-from: .*/k has no checkpoint.npz: its run was killed before its first "
                                          r"checkpoint; allowed: .* run it again from round 0 in that folder with run-name='k'"):
        run_vectorized(config.replace(resume_from=str(tmp_path / "k")), 3, progress=lambda line: None)
    assert main(["check", "--num-agents", "3", "-c", keys.replace("100000 ", "6 ")]) == 0
    assert "killed before its first checkpoint: run again from round 0" in capsys.readouterr().out
    lines: list[str] = []
    run_vectorized(config, 3, progress=lines.append)
    assert any("holds a run killed before its first checkpoint (nothing to resume)" in line for line in lines)
    assert [line["round"] for line in read_metrics(tmp_path / "k")] == list(range(7))
    (aside,) = (tmp_path / "k").glob("killed-*")  # the killed run's files are kept
    assert [line["round"] for line in read_metrics(aside)][:4] == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="run-name: .*/k exists already"):  # a finished run is kept
        run_vectorized(config, 3, progress=lambda line: None)


def test_sigint_stops_the_in_process_flower_engine_after_its_round(tmp_path: Path) -> None:
    """The ServerApp runs in a thread of Flower's simulation there: the signal reaches its run."""
    import numpy as np

    env_keys = f"num-rounds=100000 {KEYS} checkpoint-every=100000 results-dir='{tmp_path}' run-name='f'"
    stopped = _interrupt_after(["run", "--engine", "flower", "--num-agents", "3", "-c", env_keys], tmp_path / "f" / "metrics.jsonl", 5)
    assert stopped.returncode == 130 and "Traceback" not in stopped.stderr, stopped.stderr[-3000:]
    last = stopped.stderr.strip().splitlines()[-1]
    match = re.fullmatch(r"flower-difmaml: stopped after round (\d+) of 100000; checkpoint in \S+; resume with: "
                         r"flower-difmaml run --engine flower --num-agents 3 -c .*resume-from=.*", last)
    assert match, stopped.stderr[-3000:]
    round_ = int(match.group(1))
    assert int(np.load(tmp_path / "f" / "checkpoint.npz")["round"]) == round_ == _rounds(tmp_path / "f" / "metrics.jsonl")[-1]
    assert stopped.stderr.count("stopped after round") == 1  # the engine reports it, not the ServerApp too
