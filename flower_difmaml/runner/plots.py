"""Plots of one run and of a comparison, drawn from metrics.jsonl files (never from memory)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import networkx as nx
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .results import read_metrics  # noqa: E402

LOG_RANGE = (1e-16, 1e30)  # log axes show values clipped to this range: a diverged run plateaus at the top


def _log_values(values: list) -> np.ndarray:
    """``values`` for a log axis: None as NaN (a gap), the rest clipped to LOG_RANGE."""
    return np.clip(np.array([np.nan if v is None else v for v in values], dtype=np.float64), *LOG_RANGE)


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
        ax.plot(rounds, _log_values([m[key] for m in evaluations]), style, label=key)
    ax.set(xlabel="round", ylabel="MSE after adaptation", yscale="log", title=run_dir.name)
    ax.legend()
    written.append(_save(fig, run_dir / "mse.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(rounds, _log_values([m["disagreement"] for m in evaluations]))
    ax.set(xlabel="round", ylabel="(1/N) sum ||w_k - mean w||^2", yscale="log", title="network disagreement")
    written.append(_save(fig, run_dir / "disagreement.png"))

    with_curves = [m for m in evaluations if "full-mse-curve" in m]
    if not with_curves:
        return written
    fig, ax = plt.subplots(figsize=(6, 4))
    last = with_curves[-1]
    for key in ("full-mse-curve", "own-mse-curve"):
        ax.plot(range(len(last[key])), _log_values(last[key]), marker="o", label=key.removesuffix("-curve"))
    ax.set(xlabel="adaptation steps", ylabel="MSE", title=f"after round {last['round']}")
    ax.legend()
    written.append(_save(fig, run_dir / "adaptation.png"))
    return written


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _band(ax: plt.Axes, runs: list[list[dict]], key: str, label: str) -> None:
    """Mean ± std over seeds of ``key`` at the rounds every run evaluated (for a log axis)."""
    series = [{m["round"]: m[key] for m in run if key in m} for run in runs]
    rounds = sorted(set.intersection(*(set(s) for s in series)))
    values = np.array([_log_values([s[r] for r in rounds]) for s in series])
    mean, std = values.mean(axis=0), values.std(axis=0)
    (line,) = ax.plot(rounds, mean, label=label)
    ax.fill_between(rounds, np.maximum(mean - std, LOG_RANGE[0]), mean + std, color=line.get_color(), alpha=0.2)


def plot_comparison(folder: Path, metrics: dict[str, list[list[dict]]]) -> list[Path]:
    """mse_vs_round.png, mse_vs_steps.png, disagreement.png and graph.png for a comparison."""
    written = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key in zip(axes, ("full-mse-1", "own-mse-1")):
        for strategy, runs in metrics.items():
            _band(ax, runs, key, strategy)
        ax.set(xlabel="round", ylabel=f"{key} (mean ± std over seeds)", yscale="log")
        ax.legend()
    written.append(_save(fig, folder / "mse_vs_round.png"))

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key in zip(axes, ("full-mse-curve", "own-mse-curve")):
        for strategy, runs in metrics.items():
            curves = np.array([_log_values([m for m in run if key in m][-1][key]) for run in runs])
            (line,) = ax.plot(range(curves.shape[1]), curves.mean(axis=0), marker="o", label=strategy)
            ax.fill_between(range(curves.shape[1]), curves.mean(axis=0) - curves.std(axis=0),
                            curves.mean(axis=0) + curves.std(axis=0), color=line.get_color(), alpha=0.2)
        ax.set(xlabel="adaptation steps", ylabel=key.removesuffix("-curve") + " at the end", yscale="log")
        ax.legend()
    written.append(_save(fig, folder / "mse_vs_steps.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    for strategy, runs in metrics.items():
        _band(ax, runs, "disagreement", strategy)
    ax.set(xlabel="round", ylabel="(1/N) sum ||w_k - mean w||^2", yscale="log", title="network disagreement")
    ax.legend()
    written.append(_save(fig, folder / "disagreement.png"))

    configs = sorted((folder / "runs").glob("*/config.json"))
    diffusion = [p for p in configs if json.loads(p.read_text())["strategy"] == "dif-maml"]
    written.append(plot_graph((diffusion or configs)[0].parent, folder / "graph.png"))
    return written


def plot_graph(run_dir: Path, path: Path) -> Path:
    """The run's graph, edges labelled with their combination weights a_lk / a_kl."""
    config = json.loads((run_dir / "config.json").read_text())
    weights = np.load(run_dir / "combination.npy")
    graph = nx.Graph()
    graph.add_nodes_from(range(config["num-agents"]))
    graph.add_edges_from(tuple(e) for e in config["edges"])
    pos = nx.spring_layout(graph, seed=0)
    fig, ax = plt.subplots(figsize=(6, 6))
    nx.draw_networkx(graph, pos, ax=ax, node_color=[weights[k, k] for k in graph.nodes], cmap="viridis")
    if graph.number_of_nodes() <= 30:
        labels = {(l, k): f"{weights[l, k]:.2f}/{weights[k, l]:.2f}" for l, k in graph.edges}
        nx.draw_networkx_edge_labels(graph, pos, edge_labels=labels, font_size=7, ax=ax)
    ax.set_title(f"{config['topology']}, {config['combination']} (node colour: self-weight a_kk)")
    ax.axis("off")
    return _save(fig, path)
