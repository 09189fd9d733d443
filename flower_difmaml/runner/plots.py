"""Plots of one run and of a comparison, drawn from metrics.jsonl files (never from memory)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import networkx as nx
import numpy as np
import scipy.sparse as sp

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .results import metric_names, read_metrics  # noqa: E402

LOG_RANGE = (1e-16, 1e30)  # log axes show values clipped to this range: a diverged run plateaus at the top


def _log_values(values: list) -> np.ndarray:
    """``values`` for a log axis: None as NaN (a gap), the rest clipped to LOG_RANGE."""
    return np.clip(np.array([np.nan if v is None else v for v in values], dtype=np.float64), *LOG_RANGE)


def _axis(metric: str) -> tuple[str, Callable[[list], np.ndarray]]:
    """Scale and value map of a metric's axis: accuracy on a linear one, losses on a log one."""
    if metric == "acc":
        return "linear", lambda values: np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return "log", _log_values


def _last_steps(line: dict, metric: str) -> int:
    """The largest number of adaptation steps an evaluation line reports for ``metric``."""
    return max(int(key.rsplit("-", 1)[1]) for key in line if re.match(rf"^full-{metric}-\d+$", key))


def plot_run(run_dir: Path) -> list[Path]:
    """Write <metric>.png for each metric (e.g. mse.png: post-adaptation MSE vs round),
    disagreement.png and adaptation.png (the headline metric vs adaptation steps at the end)."""
    run_dir = Path(run_dir)
    evaluations = [m for m in read_metrics(run_dir) if "disagreement" in m]
    if not evaluations:
        return []
    rounds = [m["round"] for m in evaluations]
    metrics = metric_names(evaluations[0])
    written = []

    for metric in metrics:
        scale, values = _axis(metric)
        last = _last_steps(evaluations[0], metric)
        fig, ax = plt.subplots(figsize=(6, 4))
        for key, style in ((f"full-{metric}-1", "-"), (f"full-{metric}-{last}", "--"),
                           (f"own-{metric}-1", ":"), (f"own-{metric}-{last}", "-.")):
            mean = values([m[key] for m in evaluations])
            (line,) = ax.plot(rounds, mean, style, label=key)
            _interval(ax, rounds, mean, [m.get(f"{key}-ci95") for m in evaluations], line, scale)
        ax.set(xlabel="round", ylabel=f"{metric} after adaptation (± 95 % interval)", yscale=scale, title=run_dir.name)
        ax.legend()
        written.append(_save(fig, run_dir / f"{metric}.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(rounds, _log_values([m["disagreement"] for m in evaluations]))
    ax.set(xlabel="round", ylabel="(1/N) sum ||w_k - mean w||^2", yscale="log", title="network disagreement")
    written.append(_save(fig, run_dir / "disagreement.png"))

    headline = metrics[0]
    with_curves = [m for m in evaluations if f"full-{headline}-curve" in m]
    if not with_curves:
        return written
    scale, values = _axis(headline)
    fig, ax = plt.subplots(figsize=(6, 4))
    last = with_curves[-1]
    for key in (f"full-{headline}-curve", f"own-{headline}-curve"):
        mean = values(last[key])
        (line,) = ax.plot(range(len(mean)), mean, marker="o", label=key.removesuffix("-curve"))
        _interval(ax, range(len(mean)), mean, last.get(f"{key}-ci95", []), line, scale)
    ax.set(xlabel="adaptation steps", ylabel=headline, yscale=scale, title=f"after round {last['round']}")
    ax.legend()
    written.append(_save(fig, run_dir / "adaptation.png"))
    return written


def _interval(ax: plt.Axes, x: Sequence, mean: np.ndarray, half: Sequence, line: Any, scale: str, alpha: float = 0.15) -> None:
    """Shade mean ± the half-widths ``half`` (a 95 % interval, or a std; None or missing: no shade there)."""
    if len(half) != len(mean) or all(h is None for h in half):
        return
    half = np.array([np.nan if h is None else h for h in half], dtype=np.float64)
    low = np.maximum(mean - half, LOG_RANGE[0]) if scale == "log" else mean - half
    ax.fill_between(list(x), low, mean + half, color=line.get_color(), alpha=alpha)


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _band(ax: plt.Axes, runs: list[list[dict]], key: str, label: str, values: Callable[[list], np.ndarray] = _log_values) -> None:
    """Mean ± std over seeds of ``key`` at the rounds every run evaluated (one seed: ± its
    95 % interval over tasks, where the run has one)."""
    series = [{m["round"]: m[key] for m in run if key in m} for run in runs]
    rounds = sorted(set.intersection(*(set(s) for s in series)))
    stacked = np.array([values([s[r] for r in rounds]) for s in series])
    mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    (line,) = ax.plot(rounds, mean, label=label)
    scale = "log" if values is _log_values else "linear"
    if len(runs) == 1:
        half = {m["round"]: m.get(f"{key}-ci95") for m in runs[0]}
        _interval(ax, rounds, mean, [half.get(r) for r in rounds], line, scale)
    else:
        _interval(ax, rounds, mean, list(std), line, scale, alpha=0.2)


def plot_comparison(folder: Path, metrics: dict[str, list[list[dict]]]) -> list[Path]:
    """<metric>_vs_round.png, <metric>_vs_steps.png (the headline metric: mse, acc),
    disagreement.png and graph.png for a comparison."""
    written = []
    first = next(m for runs in metrics.values() for m in runs[0] if "disagreement" in m)
    headline = metric_names(first)[0]
    scale, values = _axis(headline)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key in zip(axes, (f"full-{headline}-1", f"own-{headline}-1")):
        for strategy, runs in metrics.items():
            _band(ax, runs, key, strategy, values)
        ax.set(xlabel="round", ylabel=f"{key} (mean ± std over seeds; one seed: ± 95 % interval)", yscale=scale)
        ax.legend()
    written.append(_save(fig, folder / f"{headline}_vs_round.png"))

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key in zip(axes, (f"full-{headline}-curve", f"own-{headline}-curve")):
        for strategy, runs in metrics.items():
            curves = np.array([values([m for m in run if key in m][-1][key]) for run in runs])
            (line,) = ax.plot(range(curves.shape[1]), curves.mean(axis=0), marker="o", label=strategy)
            ax.fill_between(range(curves.shape[1]), curves.mean(axis=0) - curves.std(axis=0),
                            curves.mean(axis=0) + curves.std(axis=0), color=line.get_color(), alpha=0.2)
        ax.set(xlabel="adaptation steps", ylabel=key.removesuffix("-curve") + " at the end", yscale=scale)
        ax.legend()
    written.append(_save(fig, folder / f"{headline}_vs_steps.png"))

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
    weights = sp.load_npz(run_dir / "combination.npz")
    graph = nx.Graph()
    graph.add_nodes_from(range(config["num-agents"]))
    graph.add_edges_from(tuple(e) for e in config["edges"])
    pos = nx.spring_layout(graph, seed=0)
    fig, ax = plt.subplots(figsize=(6, 6))
    nx.draw_networkx(graph, pos, ax=ax, node_color=weights.diagonal()[list(graph.nodes)], cmap="viridis")
    if graph.number_of_nodes() <= 30:
        labels = {(l, k): f"{weights[l, k]:.2f}/{weights[k, l]:.2f}" for l, k in graph.edges}
        nx.draw_networkx_edge_labels(graph, pos, edge_labels=labels, font_size=7, ax=ax)
    ax.set_title(f"{config['topology']}, {config['combination']} (node colour: self-weight a_kk)")
    ax.axis("off")
    return _save(fig, path)
