"""Stopping a run cleanly: SIGINT (Ctrl-C) or SIGTERM ends it after the current round.

While a run holds ``StopSignals``, the first SIGINT or SIGTERM only asks it to stop: the
round loop finishes the round in flight, the run writes a checkpoint of it and raises
:class:`RunStopped`, and the command stops with one line that gives the command that
resumes it. A second signal stops at once (Python's ``KeyboardInterrupt``). Signal handlers
can only be set in a process's main thread, so a signal reaches every StopSignals of the
process: the in-process Flower engine holds one in the main thread and passes the signal to
its ServerApp's run, a thread of Flower's simulation. Under ``flwr run`` Flower itself tells
the ServerApp (``server_app``: a Flower exit handler calls ``request``).
"""

from __future__ import annotations

import shlex
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from ..config import RunConfig, toml_value

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_RUNNING: set[StopSignals] = set()  # every StopSignals entered and not left yet, in any thread


class RunStopped(Exception):
    """A run stopped on request after round ``round`` (the run of ``config``, its checkpoint
    written in ``run_dir``; both set by the run that stopped)."""

    def __init__(self, round_: int) -> None:
        super().__init__(f"stopped after round {round_}")
        self.round = round_
        self.run_dir: Path | None = None
        self.config: RunConfig | None = None


class StopSignals:
    """A context in which SIGINT / SIGTERM set ``requested`` instead of ending the process.

    A signal reaches every StopSignals of the process (``reached``): the in-process Flower
    engine holds one in the main thread while its ServerApp thread holds the run's. The run
    that stopped leaves its ``RunStopped`` in ``stopped``."""

    def __init__(self, notice: str = "flower-difmaml: stopping after this round (press Ctrl-C again to stop at once)") -> None:
        self.notice = notice
        self.signal: int | None = None
        self.stopped: RunStopped | None = None
        self.reached: list[StopSignals] = []
        self.by: StopSignals | None = None
        self._previous: dict[int, Any] = {}

    def requested(self) -> bool:
        return self.signal is not None

    def request(self, signum: int = signal.SIGINT, by: StopSignals | None = None) -> None:
        """Ask the run to stop after its round, as a first signal does: from the StopSignals
        ``by`` whose handler got the signal (it reports the stop), or from a caller that
        learns of the stop another way (Flower's exit handlers)."""
        if self.signal is None:
            self.signal, self.by = signum, by

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signal is not None:  # the second one: stop now
            raise KeyboardInterrupt
        self.signal = signum
        self.reached = list(_RUNNING)
        for running in self.reached:
            running.request(signum, by=self)
        print(self.notice, file=sys.stderr, flush=True)

    def __enter__(self) -> StopSignals:
        _RUNNING.add(self)
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        _RUNNING.discard(self)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def resume_overrides(config: RunConfig, run_dir: Path) -> str:
    """The ``-c`` text that resumes the run of ``config`` in ``run_dir``: every key set away
    from its default (a resumed run must have the same keys), and ``resume-from``."""
    defaults = RunConfig().to_mapping()
    changed = {k: v for k, v in config.to_mapping().items() if v != defaults[k] and k not in ("resume-from", "run-name")}
    changed["resume-from"] = str(run_dir)
    return " ".join(f"{key}={toml_value(value)}" for key, value in changed.items())


def stopped_line(stopped: RunStopped, command: str) -> str:
    """The one line a stopped run ends with: where its checkpoint is and the exact command
    (``command``, the program and its options) that resumes it."""
    config = stopped.config
    overrides = resume_overrides(config, stopped.run_dir)
    quoted = f'"{overrides}"' if not set('"$`\\!') & set(overrides) else shlex.quote(overrides)
    return (f"flower-difmaml: stopped after round {stopped.round} of {config.num_rounds}; checkpoint in "
            f"{stopped.run_dir}; resume with: {command} -c {quoted}")
