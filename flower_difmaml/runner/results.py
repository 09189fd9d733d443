"""A run's results folder: config.json, metrics.jsonl (one line a round), summary.json.

Every metric a plot shows is written here first; plots are drawn from these files.
No Flower import: any engine writes the same files.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..agent_models import Rows, index_for
from ..errors import ConfigError
from .files import atomic_write_json, atomic_write_text

# what ``final`` keeps of the last evaluation: "<full|own>-<metric>-<steps>" (also "byzantine-..."),
# disagreement, and the truth metrics of a family that knows the true models (linear-regression)
FINAL_KEY = re.compile(r"^(byzantine-)?(test-)?(full|own)-[a-z]+-\d+(-ci95)?$|^disagreement$|^msd(-db)?$|^laplacian-error$")
Z95 = 1.959963984540054  # the normal distribution's 97.5 % quantile: mean ± Z95 * standard error


def final_metrics(line: dict[str, Any]) -> dict[str, float]:
    """The scalars of an evaluation line that ``summary.json`` keeps under ``final``."""
    return {key: value for key, value in line.items() if FINAL_KEY.match(key) and value is not None}


def metric_names(line: dict[str, Any]) -> list[str]:
    """The metrics an evaluation line has, in order: ["mse"], or ["acc", "loss"]."""
    return list(dict.fromkeys(m.group(1) for key in line if (m := re.match(r"^full-([a-z]+)-1$", key))))


def resolve_run_dir(results_dir: str, run_name: str, default_name: str) -> Path:
    """``<results-dir>/<run-name>`` as an absolute path that does not exist yet.

    An explicit ``run-name`` whose folder exists is an error (nothing written is lost),
    unless that folder holds only a run that stopped before its first checkpoint (nothing
    to resume: ``nothing_to_resume``), which is run again there; the default name gets a
    numeric suffix instead.
    """
    root = Path(results_dir).expanduser().resolve()
    if run_name:
        run_dir = root / run_name
        if run_dir.exists() and not nothing_to_resume(run_dir):
            raise ConfigError(f"run-name: {run_dir} exists already; choose another run-name or results-dir")
        return run_dir
    run_dir, suffix = root / default_name, 1
    while run_dir.exists():
        suffix += 1
        run_dir = root / f"{default_name}-{suffix}"
    return run_dir


def nothing_to_resume(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run that ended before its first checkpoint (killed, not
    stopped): its config.json, no checkpoint.npz, no summary.json."""
    return ((run_dir / "config.json").is_file() and not (run_dir / "checkpoint.npz").exists()
            and not (run_dir / "summary.json").exists())


def check_writable(run_dir: Path) -> None:
    """Raise ConfigError (key results-dir) unless ``run_dir`` can be created and written."""
    ancestor = run_dir.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"results-dir: {ancestor} is a file, not a folder; allowed: a folder that can be written")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"results-dir: cannot write in {ancestor} (permission denied); allowed: a writable folder")


def interval95(sd: np.ndarray, num_tasks: int) -> float | None:
    """The half-width of the 95 % interval of a mean over agents of their means over
    ``num_tasks`` tasks each, from the agents' standard deviations ``sd`` over their tasks:
    Z95 * sqrt(sum_k sd_k^2 / T) / n (tasks independent; the agents' models fixed). None
    where an agent's spread is unknown (one task)."""
    if len(sd) == 0 or not np.isfinite(sd).all():
        return None
    return float(Z95 * np.sqrt(np.sum(sd**2) / num_tasks) / len(sd))


DISAGREEMENT_CHUNK_BYTES = 64 * 2**20  # the float64 rows :func:`disagreement` holds at a time


def disagreement(models: Rows, keep: np.ndarray | None = None) -> float:
    """The network disagreement (1/n) sum_k ||w_k - w_bar||^2, w_bar = (1/n) sum_k w_k, over
    the n rows of ``models`` (an array, or a tensor: computed on its device) where ``keep`` is
    True (default: all). In float64, a chunk of rows at a time: no float64 copy of all the
    models (N = 100,000 agents of the sinusoid MLP, float32: 0.14 GB beside the models instead
    of the 2.8 GB that copy and its temporaries took)."""
    if keep is not None and not keep.all():
        models = models[index_for(keep, models)]
    num = len(models)
    if num == 0:
        return float("nan")
    rows = max(1, DISAGREEMENT_CHUNK_BYTES // (8 * models.shape[1]))

    def chunks() -> Iterator[Rows]:
        for i in range(0, num, rows):
            chunk = models[i : i + rows]
            if isinstance(chunk, torch.Tensor):
                yield chunk.to(torch.float64, memory_format=torch.contiguous_format)
            else:  # row-major, also from broadcast rows (one model for all: FedAvg), so the sums run in one order
                yield np.ascontiguousarray(chunk, dtype=np.float64)

    mean = sum(chunk.sum(0) for chunk in chunks()) / num
    squares = [((chunk - mean) ** 2).sum(1) for chunk in chunks()]  # one entry an agent
    total = torch.cat(squares).mean() if isinstance(mean, torch.Tensor) else np.concatenate(squares).mean()
    return float(total)


def evaluation_metrics(
    curves: dict[str, np.ndarray],
    steps: Sequence[int],
    reported_steps: Sequence[int],
    models: Rows,
    byzantine: frozenset[int] = frozenset(),
    sd: dict[str, np.ndarray] | None = None,
    num_tasks: int = 0,
) -> dict[str, Any]:
    """Round metrics from per-agent metrics after ``steps`` adaptation steps and the models.

    ``curves`` maps "<full|own>-<metric>" (e.g. "full-mse") to arrays of shape (N,
    len(steps)), NaN rows for agents that did not answer; ``models`` is (N, P), an array or
    a tensor (the disagreement is computed where it lies). Gives, for
    each of ``reported_steps``, the mean over the normal agents that answered
    ("full-mse-1"), the per-agent values (None: no answer), the mean curve when every step
    from 0 up was evaluated, the number of agents evaluated per source, and the network
    disagreement (1/N) sum_k ||w_k - mean_l w_l||^2 over the normal agents. ``byzantine``
    agents are left out of all of these; their means are ``byzantine-*``. With ``sd`` (the
    same keys: each agent's standard deviation over its ``num_tasks`` tasks) every mean gets
    its 95 % interval's half-width, "full-mse-1-ci95" (:func:`interval95`), and the line
    says how many tasks each agent evaluated on (``tasks-per-agent``).
    """
    steps = list(steps)
    normal = np.ones(len(models), dtype=bool)
    normal[[k for k in byzantine if 0 <= k < len(models)]] = False
    out: dict[str, Any] = {}
    agents: dict[str, list[float | None]] = {}
    for name, curve in curves.items():
        finite = np.isfinite(curve).all(axis=1)
        answered = curve[finite & normal]
        spread = sd[name][finite & normal] if sd is not None and name in sd else None
        for step in reported_steps:
            key = f"{name}-{step}"
            out[key] = float(answered[:, steps.index(step)].mean()) if len(answered) else None
            if spread is not None:
                out[f"{key}-ci95"] = interval95(spread[:, steps.index(step)], num_tasks)
            agents[key] = [float(v) if np.isfinite(v) else None for v in curve[:, steps.index(step)]]
            if byzantine and (finite & ~normal).any():
                out[f"byzantine-{key}"] = float(curve[finite & ~normal, steps.index(step)].mean())
        if steps == list(range(max(steps) + 1)) and len(answered):
            out[f"{name}-curve"] = [float(v) for v in answered.mean(axis=0)]
            if spread is not None:
                out[f"{name}-curve-ci95"] = [interval95(spread[:, j], num_tasks) for j in range(len(steps))]
        out[f"{name.rsplit('-', 1)[0]}-evaluated"] = len(answered)
    if num_tasks:
        out["tasks-per-agent"] = num_tasks
    out["disagreement"] = disagreement(models, normal)
    out["agents"] = agents
    return out


class RunRecorder:
    """Creates the run folder (or, resuming, reopens it) and writes its files as the run goes."""

    def __init__(
        self, run_dir: Path, config: dict[str, Any], extra: dict[str, Any] | None = None, *,
        resume_round: int | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.extra = extra or {}
        self.last_evaluation: dict[str, Any] | None = None
        self.last_curves: dict[str, list[float]] = {}
        self._start = self._session_start = time.perf_counter()
        if resume_round is not None:
            self._keep_rounds_up_to(resume_round)
        elif run_dir.is_dir() and nothing_to_resume(run_dir):  # run again in its folder, the old files kept
            aside = run_dir / f"killed-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
            aside.mkdir()
            for old in run_dir.iterdir():
                if old.is_file():
                    old.rename(aside / old.name)
        else:
            self.run_dir.mkdir(parents=True, exist_ok=False)
        atomic_write_json(run_dir / "config.json", {**config, **self.extra})
        self._metrics = open(run_dir / "metrics.jsonl", "a", encoding="utf-8")

    def _keep_rounds_up_to(self, round_: int) -> None:
        """Resume: metrics.jsonl keeps the lines up to ``round_`` (later ones are made again)."""
        lines = [line for line in read_metrics(self.run_dir) if line["round"] <= round_]
        atomic_write_text(self.run_dir / "metrics.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
        for line in lines:
            self._note(line)
        self._start -= lines[-1]["wall-seconds"] if lines else 0.0

    def _note(self, line: dict[str, Any]) -> None:
        if "disagreement" in line:  # an evaluation round
            self.last_evaluation = line
        if curves := {k: v for k, v in line.items() if k.endswith(("-curve", "-curve-ci95"))}:
            self.last_curves = curves

    def wall_seconds(self) -> float:
        """Seconds of the whole run, the sessions before a resume included."""
        return round(time.perf_counter() - self._start, 4)

    def session_seconds(self) -> float:
        """Seconds of this session (since the run started or was resumed)."""
        return round(time.perf_counter() - self._session_start, 4)

    def close(self) -> None:
        """Close metrics.jsonl without a summary (a run that stopped before its end)."""
        self._metrics.close()

    def record(self, round_: int, metrics: dict[str, Any]) -> dict[str, Any]:
        """Append one round's line (flushed at once) and return it."""
        line = {"round": round_, "wall-seconds": self.wall_seconds(), **metrics}
        self._metrics.write(json.dumps(line) + "\n")
        self._metrics.flush()
        self._note(line)
        return line

    def finish(self, num_rounds: int) -> dict[str, Any]:
        """Write summary.json (the last evaluation's scalars under ``final``; ``wall-seconds`` of
        the whole run, ``session-seconds`` since the last resume)."""
        self._metrics.close()
        last = self.last_evaluation or {}
        summary = {
            "run-dir": str(self.run_dir),
            "rounds": num_rounds,
            "wall-seconds": round(self.wall_seconds(), 3),
            "session-seconds": round(self.session_seconds(), 3),
            "final-round": last.get("round"),
            "final": final_metrics(last),
            "final-curves": self.last_curves,
            **self.extra,
        }
        atomic_write_json(self.run_dir / "summary.json", summary)
        return summary


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    with open(Path(run_dir) / "metrics.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
