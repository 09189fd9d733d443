"""Plots of one run and of a comparison, drawn from metrics.jsonl files (never from memory).

matplotlib's object API (``Figure``), not pyplot: importing this module chooses no backend
and leaves a user's pyplot state (a notebook's figures, its backend) as it was.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from .results import metric_names, read_metrics

LOG_TOP = 1e30  # log axes show values clipped to this: a diverged run plateaus at the top
ROUND_OFF = 1e-20  # a disagreement below this is float round-off: every agent holds one model
MARKERS = ("o", "s", "^", "v")  # hollow, one a series: series that coincide still show each


def _values(values: list) -> np.ndarray:
    """``values`` for a linear axis: None as NaN (a gap)."""
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _log_values(values: list) -> np.ndarray:
    """``values`` for a log axis: None and values <= 0 as NaN (gaps; nothing drawn at a false
    floor), the rest clipped to LOG_TOP."""
    out = _values(values)
    out[~(out > 0)] = np.nan
    return np.minimum(out, LOG_TOP)


def _axis(metric: str) -> tuple[str, Callable[[list], np.ndarray]]:
    """Scale and value map of a metric's axis: accuracy on a linear one, losses on a log one."""
    return ("linear", _values) if metric == "acc" else ("log", _log_values)


def _readable_log(ax: Axes) -> None:
    """Plain tick labels (0.6, 2, 4) on a log y axis of less than two decades, where matplotlib
    would write 6x10^-1 and 4x10^0: every minor tick labelled below 0.7 decades, those at
    2 and 5 x 10^k up to two; wider axes keep their powers of ten."""
    if ax.get_yscale() != "log":
        return
    low, high = ax.get_ylim()
    if not (low > 0 and high / low < 100):
        return
    shown = set(range(2, 10)) if high / low < 10**0.7 else {2, 5}

    def minor(value: float, _position: int) -> str:
        return f"{value:g}" if round(value / 10 ** np.floor(np.log10(value) + 1e-9)) in shown else ""

    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _position: f"{value:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(minor))


def _setting(config: dict[str, Any], seeds: Sequence[int] | None = None, strategy: bool = True) -> str:
    """A title's setting from a run's config.json: strategy, N, graph, task, rounds, seed(s)
    (the parts the config has)."""
    parts = [
        config.get("strategy") if strategy else None,
        f"{config['num-agents']} agents" if "num-agents" in config else None,
        f"{config['topology']} graph" if "topology" in config else None,
        config.get("task"),
        f"{config['num-rounds']} rounds" if "num-rounds" in config else None,
        f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}" if seeds is not None else
        (f"seed {config['seed']}" if "seed" in config else None),
    ]
    return ", ".join(str(part) for part in parts if part is not None)


def _config(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _same_as(series: dict[str, np.ndarray], key: str) -> str:
    """`` (= other)`` when the series of ``key`` equals an earlier one (drawn on top of it)."""
    for other, values in series.items():
        if other == key:
            return ""
        if np.allclose(values, series[key], rtol=1e-3, equal_nan=True):
            return f" (= {other})"
    return ""


def _last_steps(line: dict, metric: str) -> int:
    """The largest number of adaptation steps an evaluation line reports for ``metric``."""
    return max(int(key.rsplit("-", 1)[1]) for key in line if re.match(rf"^full-{metric}-\d+$", key))


ONE_MODEL = f" (0 or < {ROUND_OFF:g} at every round: round-off, one model)"


def _round_off(values: list) -> bool:
    """Whether a disagreement series (raw values, None for a gap) is float round-off only:
    every value 0 or below ROUND_OFF (then there is nothing, or next to nothing, to draw)."""
    finite = _values(values)
    finite = finite[np.isfinite(finite)]
    return bool(finite.size) and bool(finite.max() < ROUND_OFF)


def _disagreement(ax: Axes, rounds: Sequence[int], values: np.ndarray, label: str | None = None) -> Any:
    """The disagreement from round 1 (round 0 is 0: every agent starts from one model), its
    true values; a series of round-off only says so in its label."""
    keep = np.asarray(rounds) >= 1
    raw = list(values[keep])
    if _round_off(raw):
        label = f"{label or 'disagreement'}{ONE_MODEL}"
    (line,) = ax.plot(np.asarray(rounds)[keep], _log_values(raw), marker=".", label=label)
    if not np.isfinite(line.get_ydata()).any():
        ax.text(0.5, 0.5, "0 at every round from 1: nothing to draw on a log axis", transform=ax.transAxes, ha="center")
    return line


def plot_run(run_dir: Path) -> list[Path]:
    """Write <metric>.png for each metric (e.g. mse.png: post-adaptation MSE vs round),
    disagreement.png and adaptation.png (the headline metric vs adaptation steps at the end),
    each titled with the run's setting."""
    run_dir = Path(run_dir)
    evaluations = [m for m in read_metrics(run_dir) if "disagreement" in m]
    if not evaluations:
        return []
    rounds = [m["round"] for m in evaluations]
    metrics = metric_names(evaluations[0])
    setting = _setting(_config(run_dir)) or run_dir.name
    written = []

    for metric in metrics:
        scale, values = _axis(metric)
        last = _last_steps(evaluations[0], metric)
        fig, ax = _subplots(figsize=(7, 4.5))
        keys = (f"full-{metric}-1", f"full-{metric}-{last}", f"own-{metric}-1", f"own-{metric}-{last}")
        series = {key: values([m[key] for m in evaluations]) for key in keys}
        for (key, mean), style, marker in zip(series.items(), ("-", "--", ":", "-."), MARKERS):
            (line,) = ax.plot(rounds, mean, style, marker=marker, fillstyle="none", label=key + _same_as(series, key))
            _interval(ax, rounds, mean, [m.get(f"{key}-ci95") for m in evaluations], line, scale)
        ax.set(xlabel="round", ylabel=f"{metric} after adaptation", yscale=scale,
               title=f"{metric} after 1 and {last} steps (± 95 % interval)\n{setting}")
        ax.legend()
        written.append(_save(fig, run_dir / f"{metric}.png"))

    fig, ax = _subplots(figsize=(7, 4.5))
    line = _disagreement(ax, rounds, _values([m["disagreement"] for m in evaluations]))
    ax.set(xlabel="round", ylabel="(1/N) sum ||w_k - mean w||^2", yscale="log", title=f"network disagreement\n{setting}")
    if line.get_label().endswith(ONE_MODEL):
        ax.legend()
    written.append(_save(fig, run_dir / "disagreement.png"))

    headline = metrics[0]
    with_curves = [m for m in evaluations if f"full-{headline}-curve" in m]
    if not with_curves:
        return written
    scale, values = _axis(headline)
    fig, ax = _subplots(figsize=(7, 4.5))
    last = with_curves[-1]
    series = {key.removesuffix("-curve"): values(last[key]) for key in (f"full-{headline}-curve", f"own-{headline}-curve")}
    for (key, mean), marker in zip(series.items(), MARKERS):
        (line,) = ax.plot(range(len(mean)), mean, marker=marker, fillstyle="none", label=key + _same_as(series, key))
        _interval(ax, range(len(mean)), mean, last.get(f"{key}-curve-ci95", []), line, scale)
    ax.set(xlabel="adaptation steps", ylabel=headline, yscale=scale,
           title=f"{headline} vs adaptation steps after round {last['round']} (± 95 % interval)\n{setting}")
    ax.legend()
    written.append(_save(fig, run_dir / "adaptation.png"))
    return written


def _interval(ax: Axes, x: Sequence, mean: np.ndarray, half: Sequence, line: Any, scale: str, alpha: float = 0.15) -> None:
    """Shade mean ± the half-widths ``half`` (a 95 % interval, or a std; None or missing: no shade there)."""
    if len(half) != len(mean) or all(h is None for h in half):
        return
    half = np.array([np.nan if h is None else h for h in half], dtype=np.float64)
    low = np.where(mean - half > 0, mean - half, np.nan) if scale == "log" else mean - half
    ax.fill_between(list(x), low, mean + half, color=line.get_color(), alpha=alpha)


def _subplots(*grid: int, figsize: tuple[float, float]) -> tuple[Figure, Any]:
    """A figure and its axes, without pyplot: no backend chosen, no global state (a PNG is
    drawn by matplotlib's Agg canvas when saved)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid)


def _save(fig: Figure, path: Path) -> Path:
    for ax in fig.axes:
        _readable_log(ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _band(ax: Axes, runs: list[list[dict]], key: str, label: str, values: Callable[[list], np.ndarray] = _log_values,
          first_round: int = 0) -> None:
    """Mean ± std over seeds of ``key`` at the rounds (from ``first_round``) every run
    evaluated (one seed: ± its 95 % interval over tasks, where the run has one). A
    disagreement of round-off only says so in its label."""
    series = [{m["round"]: m[key] for m in run if key in m and m["round"] >= first_round} for run in runs]
    rounds = sorted(set.intersection(*(set(s) for s in series)))
    stacked = np.array([values([s[r] for r in rounds]) for s in series])
    mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    if key == "disagreement" and _round_off([s[r] for s in series for r in rounds]):
        label = f"{label}{ONE_MODEL}"
    (line,) = ax.plot(rounds, mean, marker=".", label=label)
    scale = "log" if values is _log_values else "linear"
    if len(runs) == 1:
        half = {m["round"]: m.get(f"{key}-ci95") for m in runs[0]}
        _interval(ax, rounds, mean, [half.get(r) for r in rounds], line, scale)
    else:
        _interval(ax, rounds, mean, list(std), line, scale, alpha=0.2)


def plot_comparison(folder: Path, metrics: dict[str, list[list[dict]]]) -> list[Path]:
    """<metric>_vs_round.png, <metric>_vs_steps.png (the headline metric: mse, acc),
    disagreement.png and graph.png for a comparison, titled with its setting."""
    written = []
    first = next(m for runs in metrics.values() for m in runs[0] if "disagreement" in m)
    headline = metric_names(first)[0]
    scale, values = _axis(headline)
    paths = sorted((folder / "runs").glob("*/config.json"))
    configs = [json.loads(path.read_text()) for path in paths]
    seeds = sorted({c["seed"] for c in configs})
    setting = _setting(configs[0], seeds, strategy=False) if configs else folder.name
    spread = "mean ± std over seeds" if len(seeds) > 1 else "± 95 % interval over tasks"
    at_end = "mean ± std over seeds" if len(seeds) > 1 else f"seed {seeds[0]}" if seeds else "one seed"

    fig, axes = _subplots(1, 2, figsize=(12, 4.5))
    for ax, key in zip(axes, (f"full-{headline}-1", f"own-{headline}-1")):
        for strategy, runs in metrics.items():
            _band(ax, runs, key, strategy, values)
        ax.set(xlabel="round", ylabel=key, yscale=scale, title=f"{key} ({spread})")
        ax.legend()
    fig.suptitle(setting)
    written.append(_save(fig, folder / f"{headline}_vs_round.png"))

    fig, axes = _subplots(1, 2, figsize=(12, 4.5))
    for ax, key in zip(axes, (f"full-{headline}-curve", f"own-{headline}-curve")):
        for (strategy, runs), marker in zip(metrics.items(), MARKERS * 3):
            curves = np.array([values([m for m in run if key in m][-1][key]) for run in runs])
            (line,) = ax.plot(range(curves.shape[1]), curves.mean(axis=0), marker=marker, fillstyle="none", label=strategy)
            ax.fill_between(range(curves.shape[1]), curves.mean(axis=0) - curves.std(axis=0),
                            curves.mean(axis=0) + curves.std(axis=0), color=line.get_color(), alpha=0.2)
        name = key.removesuffix("-curve")
        ax.set(xlabel="adaptation steps", ylabel=name, yscale=scale, title=f"{name} at the end ({at_end})")
        ax.legend()
    fig.suptitle(setting)
    written.append(_save(fig, folder / f"{headline}_vs_steps.png"))

    fig, ax = _subplots(figsize=(7, 4.5))
    for strategy, runs in metrics.items():
        _band(ax, runs, "disagreement", strategy, first_round=1)
    ax.set(xlabel="round", ylabel="(1/N) sum ||w_k - mean w||^2", yscale="log", title=f"network disagreement\n{setting}")
    ax.legend()
    written.append(_save(fig, folder / "disagreement.png"))

    diffusion = [path for path, config in zip(paths, configs) if config["strategy"] == "dif-maml"]
    written.append(plot_graph((diffusion or paths)[0].parent, folder / "graph.png"))
    return written


def plot_graph(run_dir: Path, path: Path) -> Path:
    """The run's graph: each edge labelled with its combination weight a_lk (a_lk / a_kl
    where they differ), each node coloured by its self-weight a_kk (colour bar)."""
    config = json.loads((run_dir / "config.json").read_text())
    weights = sp.load_npz(run_dir / "combination.npz").tocsr()
    graph = nx.Graph()
    graph.add_nodes_from(range(config["num-agents"]))
    graph.add_edges_from(tuple(e) for e in config["edges"])
    pos = nx.spring_layout(graph, seed=0)
    fig, ax = _subplots(figsize=(7, 6))
    nodes = nx.draw_networkx_nodes(graph, pos, ax=ax, node_color=weights.diagonal()[list(graph.nodes)], cmap="viridis",
                                   edgecolors="black")
    nx.draw_networkx_edges(graph, pos, ax=ax, edge_color="grey")
    nx.draw_networkx_labels(graph, pos, ax=ax, font_color="white", font_weight="bold")
    if graph.number_of_nodes() <= 30:
        def label(l: int, k: int) -> str:
            forward, back = weights[l, k], weights[k, l]
            return f"{forward:.2f}" if abs(forward - back) < 5e-3 else f"{forward:.2f}/{back:.2f}"

        nx.draw_networkx_edge_labels(graph, pos, edge_labels={(l, k): label(l, k) for l, k in graph.edges}, font_size=8,
                                     bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"}, ax=ax)
    fig.colorbar(nodes, ax=ax, label="self-weight a_kk", shrink=0.8)
    ax.set_title(f"{config['topology']} graph, {config['combination']} weights a_lk on the edges\n"
                 f"{config['num-agents']} agents, {graph.number_of_edges()} edges")
    ax.axis("off")
    return _save(fig, path)
