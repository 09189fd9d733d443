"""The local SuperLink that ``flwr run`` starts in the background (and leaves running).

It listens on 127.0.0.1:39091 (``FLWR_LOCAL_SUPERLINK_HTTP_API_PORT``) with its Control API
on 39093 (``FLWR_LOCAL_CONTROL_API_PORT``) and logs to ``$FLWR_HOME/local-superlink/``.
Found here by that log path in its command line and stopped by PID, never by name.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

LOCAL_SUPERLINK_FOLDER = "local-superlink"  # under FLWR_HOME: the SuperLink's database and log


def flwr_home() -> Path:
    """``$FLWR_HOME``, or ``~/.flwr`` as flwr has it."""
    return Path(os.environ.get("FLWR_HOME") or Path.home() / ".flwr").expanduser().resolve()


def local_superlink_pids(home: Path | None = None) -> list[int]:
    """PIDs of the ``flower-superlink`` processes that ``flwr run`` started for ``home``."""
    marker = str((home or flwr_home()) / LOCAL_SUPERLINK_FOLDER) + os.sep
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [word.decode(errors="replace") for word in cmdline]
        if any(Path(word).name == "flower-superlink" for word in words[:2]) and any(marker in w for w in words):
            pids.append(int(proc.name))
    return pids


def stop_processes(pids: list[int], grace_seconds: float = 15.0, process_groups: bool = True) -> None:
    """SIGTERM each process group led by ``pids`` (each SuperLink leads its own; or, without
    ``process_groups``, each process), then SIGKILL what is still there after ``grace_seconds``."""
    kill = os.killpg if process_groups else os.kill
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_seconds
        while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
