"""Scale out: the Flower simulation with blocks on a Ray cluster of two nodes (on this machine).

`ray start --head` and a second `ray start --address` with one CPU each make a cluster of two
Ray nodes; with ``RAY_ADDRESS`` set, Flower's simulation engine joins it instead of starting
Ray of its own, and its actor pool (one actor per ``client-resources-num-cpus``) spreads over
both nodes. The ClientApp here is the project's, noting the Ray node each training call ran on.
Every Ray process the test started is stopped by PID (found by the cluster's own temp folder).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from flower_difmaml import client_app
from flower_difmaml.config import RunConfig
from flower_difmaml.flower.local_superlink import stop_processes
from flower_difmaml.flower.simulation import run_flower_simulation
from flower_difmaml.runner.results import read_metrics
from flower_difmaml.runner.vectorized import run_vectorized
from flower_difmaml.server_app import app as server_app

pytestmark = pytest.mark.slow

NUM_AGENTS, NUM_NODES = 6, 4
RAY = str(Path(sys.executable).parent / "ray")  # the `ray` command of this environment


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _processes_with(text: str) -> list[int]:
    """PIDs of the processes whose command line holds ``text``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if text in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


@pytest.fixture
def ray_cluster() -> Iterator[str]:
    """A head node and a second node, one CPU each; yields the head's address."""
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port = _free_port()
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    common = ["--num-cpus=1", "--num-gpus=0", "--disable-usage-stats", "--node-ip-address=127.0.0.1"]
    try:
        subprocess.run([RAY, "start", "--head", f"--port={port}", f"--temp-dir={temp_dir}", "--include-dashboard=false",
                        *common], env=env, check=True, capture_output=True, timeout=120)
        subprocess.run([RAY, "start", f"--address={address}", *common], env=env, check=True, capture_output=True,
                       timeout=120)
        yield address
    finally:
        stop_processes(_processes_with(temp_dir) + _processes_with(address), grace_seconds=10, process_groups=False)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert not _processes_with(temp_dir)


def _noting_ray_nodes(folder: Path) -> ClientApp:
    app = ClientApp()
    app.query()(client_app.identify)
    app.evaluate()(client_app.evaluate)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        import ray

        node = ray.get_runtime_context().get_node_id()
        (folder / f"{node}-{os.getpid()}-{time.monotonic_ns()}").touch()
        return client_app.train(msg, context)

    return app


def test_blocks_run_on_both_nodes_of_a_ray_cluster(
    ray_cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notes = tmp_path / "ray-nodes"
    notes.mkdir()
    config = RunConfig(results_dir=str(tmp_path), num_rounds=6, eval_every=3, eval_tasks=3, tasks_per_agent=2,
                       topology="ring")
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster)
    run_flower_simulation(config.replace(run_name="cluster"), NUM_AGENTS, server_app, _noting_ray_nodes(notes),
                          num_nodes=NUM_NODES)
    ray_nodes = {note.name.split("-")[0] for note in notes.iterdir()}
    assert len(ray_nodes) == 2, ray_nodes  # actors ran on both Ray nodes
    assert len(list(notes.iterdir())) == NUM_NODES * 6  # one training call a SuperNode a round
    assert all(line["replies"] == NUM_AGENTS for line in read_metrics(tmp_path / "cluster")[1:])
    monkeypatch.delenv("RAY_ADDRESS")
    run_vectorized(config.replace(run_name="vectorized"), NUM_AGENTS, progress=lambda line: None)
    np.testing.assert_allclose(
        np.load(tmp_path / "cluster" / "models.npy"), np.load(tmp_path / "vectorized" / "models.npy"), rtol=1e-12, atol=1e-14
    )
