"""Deployment: a real SuperLink and 3 SuperNodes on 127.0.0.1, with TLS and SuperNode authentication.

Certificates and keys come from scripts/make_demo_certificates.py; the SuperNodes' public
keys are registered with `flwr supernode register`; `flwr run` sends the app to the
SuperLink. A first run trains 2 rounds; in a second run one SuperNode is killed after the
first round and the run completes with the other two agents. Every process the test
starts leads its own process group and is stopped by PID, also when the test fails.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[1]
NUM_AGENTS = 3
SMALL = "eval-tasks=5 tasks-per-agent=4 topology='complete'"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL it if it is still there after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


class Deployment:
    """A SuperLink with TLS and SuperNode authentication, and one SuperNode per agent."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.certs = root / "certs"
        self.port = _free_port()
        self.env = {
            **os.environ,
            "FLWR_HOME": str(root / "flwr-home"),
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        }
        self.processes: list[subprocess.Popen] = []
        self.supernodes: dict[int, subprocess.Popen] = {}

    def _start(self, command: list[str], log: str) -> subprocess.Popen:
        with open(self.root / log, "wb") as out:
            proc = subprocess.Popen(command, env=self.env, cwd=self.root, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.processes.append(proc)
        return proc

    def _flwr(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(["flwr", *args], env=self.env, cwd=PROJECT, capture_output=True, text=True,
                              timeout=timeout)

    def start(self) -> None:
        subprocess.run([sys.executable, str(PROJECT / "scripts" / "make_demo_certificates.py"), "--out",
                        str(self.certs), "--supernodes", str(NUM_AGENTS)], check=True, capture_output=True)
        home = Path(self.env["FLWR_HOME"])
        home.mkdir()
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "demo"\n\n[superlink.demo]\naddress = "127.0.0.1:{self.port}"\n'
            f'root-certificates = "{self.certs / "ca.crt"}"\n'
        )
        self._start(
            ["flower-superlink", "--ssl-ca-certfile", str(self.certs / "ca.crt"), "--ssl-certfile",
             str(self.certs / "server.pem"), "--ssl-keyfile", str(self.certs / "server.key"), "--enable-supernode-auth",
             "--disable-runtime-dependency-installation", "--port", str(self.port)],
            "superlink.log",
        )
        _wait_for_port(self.port)
        for k in range(NUM_AGENTS):
            registered = self._flwr("supernode", "register", str(self.certs / f"supernode-{k}.pub"), "demo", timeout=60)
            assert "registered successfully" in registered.stdout, registered.stdout + registered.stderr
        for k in range(NUM_AGENTS):
            self.supernodes[k] = self._start(
                ["flower-supernode", "--superlink", f"127.0.0.1:{self.port}", "--root-certificates",
                 str(self.certs / "ca.crt"), "--auth-supernode-private-key", str(self.certs / f"supernode-{k}"),
                 "--node-config", f"partition-id={k} num-partitions={NUM_AGENTS}", "--port", str(_free_port())],
                f"supernode-{k}.log",
            )

    def run(self, overrides: str) -> subprocess.Popen:
        """`flwr run` of this project on the deployment (streams until the run ends)."""
        return self._start(["flwr", "run", str(PROJECT), "demo", "--stream", "-c", overrides], "runs.log")

    def stop(self) -> None:
        for proc in reversed(self.processes):
            _stop(proc)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployment = Deployment(tmp_path_factory.mktemp("deployment"))
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


def _lines(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")] if path.exists() else []


def _finish(proc: subprocess.Popen, run_dir: Path, timeout: float = 400) -> dict:
    proc.wait(timeout)
    assert (run_dir / "summary.json").exists(), "the run wrote no summary.json (see runs.log)"
    return json.loads((run_dir / "summary.json").read_text())


def test_two_rounds_through_tls_and_authenticated_supernodes(deployment: Deployment) -> None:
    run_dir = deployment.root / "results" / "two-rounds"
    proc = deployment.run(f"num-rounds=2 eval-every=1 {SMALL} results-dir='{run_dir.parent}' run-name='two-rounds'")
    summary = _finish(proc, run_dir)
    lines = _lines(run_dir)
    assert [line["round"] for line in lines] == [0, 1, 2]
    assert all(line["replies"] == NUM_AGENTS and line["failed"] == 0 for line in lines[1:])
    assert summary["final"]["full-mse-1"] < lines[0]["full-mse-1"]  # two rounds of training helped
    assert lines[-1]["full-evaluated"] == NUM_AGENTS


def test_a_supernode_that_goes_away_leaves_the_others_to_finish(deployment: Deployment) -> None:
    run_dir = deployment.root / "results" / "one-goes-away"
    proc = deployment.run(
        f"num-rounds=3 eval-every=3 reply-timeout=60.0 {SMALL} results-dir='{run_dir.parent}' run-name='one-goes-away'"
    )
    deadline = time.monotonic() + 300
    while not any(line["round"] == 1 for line in _lines(run_dir)) and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before round 1"
        time.sleep(0.5)
    _stop(deployment.supernodes[2])
    summary = _finish(proc, run_dir)
    lines = _lines(run_dir)
    assert lines[1]["replies"] == NUM_AGENTS
    assert [line["failed-agents"] for line in lines[2:]] == [[2], [2]]
    assert lines[-1]["full-evaluated"] == 2 and np.isfinite(summary["final"]["full-mse-1"])
    # complete graph, Metropolis a_lk = 1/3; without agent 2 the weights are renormalised to 1/2, 1/2:
    # agents 0 and 1 hold the same model, agent 2 still the one it had after round 1
    models = np.load(run_dir / "models.npy")
    np.testing.assert_allclose(models[0], models[1], rtol=0, atol=1e-12)
    assert np.max(np.abs(models[2] - models[0])) > 1e-6
