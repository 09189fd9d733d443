"""Deployment: a real SuperLink and 3 SuperNodes on 127.0.0.1, with TLS and SuperNode authentication.

Certificates and keys come from scripts/make_demo_certificates.py; the SuperNodes' public
keys are registered with `flwr supernode register`; `flwr run` sends the app to the
SuperLink. The SuperNodes host 4 agents (`--node-config "partition-id=K num-partitions=3"`,
run config `num-agents=4`): SuperNode 2 hosts agents 2 and 3. A first run trains 2 rounds;
in a second run SuperNode 2 is killed after the first round, the others go on without its
agents, it is started again, and its agents train again, their Adam states sent back by the
server (which keeps them for checkpoints). Every process the test starts leads its own
process group and is stopped by PID, also when the test fails.
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
NUM_NODES, NUM_AGENTS = 3, 4
SMALL = f"num-agents={NUM_AGENTS} eval-tasks=5 final-eval-tasks=0 tasks-per-agent=4 topology='complete'"


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
                        str(self.certs), "--supernodes", str(NUM_NODES)], check=True, capture_output=True)
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
        for k in range(NUM_NODES):
            registered = self._flwr("supernode", "register", str(self.certs / f"supernode-{k}.pub"), "demo", timeout=60)
            assert "registered successfully" in registered.stdout, registered.stdout + registered.stderr
        for k in range(NUM_NODES):
            self.start_supernode(k)

    def start_supernode(self, k: int) -> None:
        """SuperNode ``k``: partition k of NUM_NODES (again, after a restart: the same command)."""
        self.supernodes[k] = self._start(
            ["flower-supernode", "--superlink", f"127.0.0.1:{self.port}", "--root-certificates",
             str(self.certs / "ca.crt"), "--auth-supernode-private-key", str(self.certs / f"supernode-{k}"),
             "--node-config", f"partition-id={k} num-partitions={NUM_NODES}", "--port", str(_free_port())],
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


def _wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.5)


def test_a_supernode_that_goes_away_and_comes_back_takes_its_agents_back(deployment: Deployment) -> None:
    run_dir = deployment.root / "results" / "goes-and-comes-back"
    proc = deployment.run(
        f"num-rounds=6 eval-every=6 reply-timeout=60.0 meta-optimizer='adam' meta-lr=0.001 checkpoint-every=1 {SMALL} "
        f"results-dir='{run_dir.parent}' run-name='goes-and-comes-back'"
    )
    _wait_for(lambda: any(line["round"] == 1 for line in _lines(run_dir)), proc, "round 1")
    _stop(deployment.supernodes[2])
    _wait_for(lambda: any(line.get("failed-agents") == [2, 3] for line in _lines(run_dir)), proc, "a round without node 2")
    deployment.start_supernode(2)
    summary = _finish(proc, run_dir, timeout=600)
    lines = _lines(run_dir)[1:]
    missed = [line["round"] for line in lines if line.get("failed-agents")]
    assert lines[0]["replies"] == NUM_AGENTS and missed and missed[0] >= 2
    assert all(line["failed-agents"] == [2, 3] and line["replies"] == 2 for line in lines if line["round"] in missed)
    assert lines[-1]["replies"] == NUM_AGENTS and lines[-1]["round"] not in missed  # back after the restart
    assert sum(line["failed"] for line in lines) == 2 * len(missed)
    assert lines[-1]["full-evaluated"] == NUM_AGENTS and np.isfinite(summary["final"]["full-mse-1"])
    # the server sent agents 2 and 3 their Adam states back: their step counts every round they trained
    with np.load(run_dir / "checkpoint.npz") as checkpoint:
        steps = {k: float(checkpoint[f"optimizer/{k}/step"]) for k in range(NUM_AGENTS)}
    assert steps == {0: 6.0, 1: 6.0, 2: 6.0 - len(missed), 3: 6.0 - len(missed)}
