"""Helpers shared by test modules."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from flower_difmaml.streams import DrawKey, Stream


def agent_tasks(draw, num_tasks: int, agent: int | None = None, *, seed: int = 0, round_: int = 0,
                stream: Stream = Stream.TRAIN):
    """One agent's tasks from a family's ``sample`` or ``sample_evaluation`` (``draw``), keyed
    (seed, agent, round, stream); agent None: agent 0's draws from the full distribution."""
    return draw(DrawKey(seed, round_, stream), num_tasks, [agent or 0], own=agent is not None).agent(0)


def run_until_killed(args: list[str], metrics: Path, after_round: int) -> None:
    """Start ``flower-difmaml`` with ``args``; SIGKILL its process group once
    metrics.jsonl has a line for ``after_round``."""
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "flower_difmaml", *args], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if metrics.exists() and any(json.loads(l)["round"] >= after_round for l in metrics.read_text().splitlines() if l.endswith("}")):
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
