"""End to end: the real `flwr run` CLI on this project, with its own FLWR_HOME and ports.

`flwr run` starts a local SuperLink in the background that outlives it. The tests give it
their own FLWR_HOME and their own free ports (FLWR_LOCAL_SUPERLINK_HTTP_API_PORT,
FLWR_LOCAL_CONTROL_API_PORT), so a SuperLink the user's main job left on the default port
does not stand in the way, and stop the one they started by PID, also when a test fails.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from flower_difmaml.flower.local_superlink import local_superlink_pids, stop_processes

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def flwr_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    flwr_home = tmp_path_factory.mktemp("flwr-home")
    env = {
        **os.environ,
        "FLWR_HOME": str(flwr_home),
        "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(_free_port()),
        "FLWR_LOCAL_CONTROL_API_PORT": str(_free_port()),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    }
    try:
        yield env
    finally:
        stop_processes(local_superlink_pids(flwr_home))
    assert not local_superlink_pids(flwr_home)


def _flwr_run(env: dict[str, str], overrides: str, supernodes: int = 4) -> str:
    command = [
        "flwr", "run", str(PROJECT), "--stream",
        "--federation-config", f"num-supernodes={supernodes} client-resources-num-cpus=1",
        "-c", overrides,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
    return done.stdout + done.stderr


def test_a_config_error_reaches_the_user_as_one_line(flwr_env: dict[str, str], tmp_path: Path) -> None:
    # the default graph (erdos-renyi, p = 0.3, topology-seed 1) is not connected on 4 agents
    results = tmp_path / "results"
    output = _flwr_run(flwr_env, f"results-dir='{results}' run-name='bad'")
    errors = [line for line in output.splitlines() if "flower-difmaml: error:" in line]
    assert len(errors) == 1, output[-3000:]
    assert "topology: 'erdos-renyi' on 4 agents is not connected" in errors[0] and "ERROR" in errors[0]
    assert "Traceback" not in output and "Exit Code" not in output, output[-3000:]
    assert not results.exists()


def test_flwr_run_writes_summary(flwr_env: dict[str, str], tmp_path: Path) -> None:
    results = tmp_path / "results"
    output = _flwr_run(
        flwr_env,
        f"results-dir='{results}' run-name='e2e' num-rounds=3 eval-every=2 eval-tasks=5 topology='ring' tasks-per-agent=3 "
        "num-agents=6",  # 6 agents on the 4 SuperNodes: nodes 0..3 host agents 0, 1-2, 3, 4-5
    )
    # `flwr run --stream` exits 0 even when the ServerApp fails: check the files.
    summary_path = results / "e2e" / "summary.json"
    assert summary_path.exists(), output[-3000:]
    summary = json.loads(summary_path.read_text())
    assert summary["rounds"] == 3 and summary["final-round"] == 3
    assert summary["num-agents"] == 6 and summary["num-nodes"] == 4
    assert set(summary["final"]) >= {"full-mse-1", "full-mse-10", "own-mse-1", "own-mse-10", "disagreement"}
    assert len(summary["final-curves"]["full-mse-curve"]) == 11
    rounds = [json.loads(line)["round"] for line in (results / "e2e" / "metrics.jsonl").read_text().splitlines()]
    assert rounds == [0, 1, 2, 3]
    assert {p.name for p in (results / "e2e").glob("*.png")} == {"mse.png", "disagreement.png", "adaptation.png"}
    assert str(results / "e2e") in output


def test_flwr_stop_ends_the_run_after_its_round_with_a_checkpoint_that_resumes(flwr_env: dict[str, str], tmp_path: Path) -> None:
    import re
    import time

    import numpy as np

    from flower_difmaml.cli import main
    from flower_difmaml.runner.results import read_metrics

    keys = f"eval-every=1000 eval-tasks=4 tasks-per-agent=3 topology='ring' checkpoint-every=100000 results-dir='{tmp_path}'"
    started = subprocess.run(
        ["flwr", "run", str(PROJECT), "--federation-config", "num-supernodes=4 client-resources-num-cpus=1",
         "-c", f"num-rounds=100000 {keys} run-name='s'"], env=flwr_env, capture_output=True, text=True, timeout=200)
    run_id = re.search(r"started run (\d+)", started.stdout + started.stderr).group(1)
    metrics = tmp_path / "s" / "metrics.jsonl"
    deadline = time.monotonic() + 200
    while time.monotonic() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) > 20):
        time.sleep(0.5)
    stopped = subprocess.run(["flwr", "stop", run_id], env=flwr_env, capture_output=True, text=True, timeout=120)
    assert "successfully stopped" in stopped.stdout, stopped.stdout + stopped.stderr
    checkpoint = tmp_path / "s" / "checkpoint.npz"
    while time.monotonic() < deadline and not checkpoint.exists():  # Flower tells the app at its next heartbeat
        time.sleep(0.5)
    time.sleep(3)
    last = read_metrics(tmp_path / "s")[-1]["round"]
    assert int(np.load(checkpoint)["round"]) == last and last > 20
    time.sleep(3)
    assert read_metrics(tmp_path / "s")[-1]["round"] == last  # the run has ended
    line = (tmp_path / "s" / "stopped.txt").read_text()
    assert line.startswith(f"flower-difmaml: stopped after round {last} of 100000; checkpoint in {tmp_path / 's'}; resume with: "
                           'flwr run . --stream --federation-config "num-supernodes=4" -c "') and "resume-from=" in line

    total = last + 3
    assert main(["run", "--num-agents", "4", "-c", f"num-rounds={total} {keys} run-name='s' resume-from='{tmp_path / 's'}'"]) == 0
    assert main(["run", "--num-agents", "4", "-c", f"num-rounds={total} {keys} run-name='whole'"]) == 0
    resumed, whole = (json.loads((tmp_path / name / "summary.json").read_text())["final"] for name in ("s", "whole"))
    assert resumed.keys() == whole.keys()
    for key in whole:  # the Flower engine and the vectorised one: the same numbers to float64 round-off
        assert resumed[key] == pytest.approx(whole[key], rel=1e-9, abs=1e-12), key
