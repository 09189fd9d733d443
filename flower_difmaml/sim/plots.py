"""Plots of one run, drawn from its metrics.jsonl (never from in-memory state)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .results import read_metrics  # noqa: E402


def plot_run(run_dir: Path) -> list[Path]:
    """Write mse.png (post-adaptation MSE vs round), disagreement.png and adaptation.png."""
    run_dir = Path(run_dir)
    evaluations = [m for m in read_metrics(run_dir) if "full-mse-1" in m]
    if not evaluations:
        return []
    rounds = [m["round"] for m in evaluations]
    written = []

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, style in (("full-mse-1", "-"), ("full-mse-10", "--"), ("own-mse-1", ":"), ("own-mse-10", "-.")):
        ax.plot(rounds, [m[key] for m in evaluations], style, label=key)
    ax.set(xlabel="round", ylabel="MSE after adaptation", yscale="log", title=run_dir.name)
    ax.legend()
    written.append(_save(fig, run_dir / "mse.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    values = [max(m["disagreement"], 1e-16) for m in evaluations]
    ax.plot(rounds, values)
    ax.set(xlabel="round", ylabel="(1/N) sum ||w_k - mean w||^2", yscale="log", title="network disagreement")
    written.append(_save(fig, run_dir / "disagreement.png"))

    with_curves = [m for m in evaluations if "full-mse-curve" in m]
    if not with_curves:
        return written
    fig, ax = plt.subplots(figsize=(6, 4))
    last = with_curves[-1]
    for key in ("full-mse-curve", "own-mse-curve"):
        ax.plot(range(len(last[key])), last[key], marker="o", label=key.removesuffix("-curve"))
    ax.set(xlabel="adaptation steps", ylabel="MSE", title=f"after round {last['round']}")
    ax.legend()
    written.append(_save(fig, run_dir / "adaptation.png"))
    return written


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
