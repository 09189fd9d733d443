"""End to end: the real `flwr run` CLI on this project, with its own FLWR_HOME.

`flwr run` starts a local SuperLink in the background that outlives it; the test finds
that SuperLink by its command line (which names this test's FLWR_HOME) and stops it,
with its process group, also when the test fails.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[1]
LOCAL_SUPERLINK_PORT = 39091  # flwr's fixed port for the local SuperLink it starts


def _superlinks_of(flwr_home: Path) -> list[int]:
    """PIDs of flower-superlink processes whose command line names ``flwr_home``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "flower-superlink" in cmdline and str(flwr_home) in cmdline:
            pids.append(int(proc.name))
    return pids


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _stop(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)  # the SuperLink leads its own session
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + 15
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_flwr_run_writes_summary(tmp_path: Path) -> None:
    if _port_in_use(LOCAL_SUPERLINK_PORT):
        pytest.fail(f"port {LOCAL_SUPERLINK_PORT} is taken: another local SuperLink runs; stop it first")
    flwr_home = tmp_path / "flwr-home"
    results = tmp_path / "results"
    env = {
        **os.environ,
        "FLWR_HOME": str(flwr_home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    }
    overrides = (
        f"results-dir='{results}' run-name='e2e' num-rounds=3 eval-every=2 eval-tasks=5 "
        "topology='ring' tasks-per-agent=3"
    )
    command = [
        "flwr", "run", str(PROJECT), "--stream",
        "--federation-config", "num-supernodes=4 client-resources-num-cpus=1",
        "-c", overrides,
    ]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
        output = done.stdout + done.stderr
        # `flwr run --stream` exits 0 even when the ServerApp fails: check the files.
        summary_path = results / "e2e" / "summary.json"
        assert summary_path.exists(), output[-3000:]
        summary = json.loads(summary_path.read_text())
        assert summary["rounds"] == 3 and summary["final-round"] == 3
        assert summary["num-agents"] == 4
        assert set(summary["final"]) >= {"full-mse-1", "full-mse-10", "own-mse-1", "own-mse-10", "disagreement"}
        assert len(summary["final-curves"]["full-mse-curve"]) == 11
        rounds = [json.loads(line)["round"] for line in (results / "e2e" / "metrics.jsonl").read_text().splitlines()]
        assert rounds == [0, 1, 2, 3]
        assert {p.name for p in (results / "e2e").glob("*.png")} == {"mse.png", "disagreement.png", "adaptation.png"}
        assert str(results / "e2e") in output
    finally:
        _stop(_superlinks_of(flwr_home))
    assert not _superlinks_of(flwr_home)
