"""One typed, validated view of the run config (the ``[tool.flwr.app.config]`` keys).

``RunConfig.from_mapping(context.run_config)`` checks every key's type and range and
raises :class:`ConfigError`, one line naming the key, the value and what is allowed,
before anything is trained. The defaults here equal those in pyproject.toml (a test
checks it); the graph and the combination matrix are checked where they are built.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .devices import check_device
from .errors import ConfigError, check_choice, did_you_mean
from .meta.optimizers import META_OPTIMIZERS
from .network import AGGREGATIONS, NEIGHBOURHOOD_RULES, RESILIENT, WEIGHTED
from .network.attacks import ATTACKS
from .network.combination import check_combination
from .network.graphs import check_topology
from .network.laplacian import GRAPH_FORMS
from .network.resilient import RESILIENT_SCORES
from .tasks import check_task
from .tasks.base import DTYPES as TORCH_DTYPES

__all__ = ["ConfigError", "RunConfig"]

DIFFUSION_ORDERS = ("atc", "cta")
DTYPES = ("auto", *TORCH_DTYPES)  # auto: the task family's own (sinusoid float64, images float32)


def _choice(*allowed: str) -> dict[str, Any]:
    return {"metadata": {"choices": allowed}}


def _range(
    low: float | None = None, high: float | None = None, *, low_open: bool = False, high_open: bool = False
) -> dict[str, Any]:
    return {"metadata": {"range": (low, high, low_open, high_open)}}


@dataclass(frozen=True)
class RunConfig:
    """The experiment; attribute ``inner_lr`` is run-config key ``inner-lr``, and so on."""

    strategy: str = "dif-maml"  # a built-in, 'flwr:<Class>' or 'package.module:Class' (checked by strategies)
    strategy_args: str = ""  # 'name=value, ...': arguments of a 'flwr:' or user strategy
    num_agents: int = field(default=0, **_range(0))  # Flower engine: N agents on the SuperNodes; 0: one a node
    topology: str = "erdos-renyi"  # this key and the next four are checked by network.graphs
    topology_p: float = 0.3
    topology_radius: float = 0.5
    topology_k: int = 4
    topology_seed: int = 1
    topology_file: str = ""
    combination: str = "metropolis"  # the weight rule of A; checked by network.combination
    aggregation: str = field(default=WEIGHTED, **_choice(*AGGREGATIONS))  # how agent k combines what reached it
    diffusion_order: str = field(default="atc", **_choice(*DIFFUSION_ORDERS))
    num_rounds: int = field(default=500, **_range(1))
    eval_every: int = field(default=50, **_range(1))
    eval_tasks: int = field(default=0, **_range(0))  # 0: the task family's own (20 for the built-in ones)
    final_eval_tasks: int = field(default=600, **_range(0))  # the last evaluation: at least this many tasks in all
    seed: int = field(default=0, **_range(0, 2**32 - 1))  # a 32-bit word of the keyed draws
    results_dir: str = "~/flower-difmaml-results"
    run_name: str = ""
    task: str = "sinusoid"  # this key and the next: checked by the task family (tasks.check_task)
    heterogeneity: str = "auto"  # auto: the task family's own (sinusoid phase, images classes)
    tasks_per_agent: int = field(default=10, **_range(1))
    n_way: int = field(default=5, **_range(2))
    shots: int = field(default=10, **_range(1))
    queries: int = field(default=10, **_range(1))
    inner_lr: float = field(default=0.01, **_range(0.0, None, low_open=True))
    inner_steps: int = field(default=1, **_range(0))
    eval_inner_steps: int = field(default=10, **_range(1))
    eval_inner_lr: float = field(default=0.0, **_range(0.0))  # the test-time step; 0: inner-lr
    first_order: bool = False
    dtype: str = field(default="auto", **_choice(*DTYPES))
    device: str = "cpu"  # checked by devices.check_device (spelling); resolved where the agents compute
    compile: bool = False  # vectorised engine only: torch.compile the agents' meta-step
    chunk_memory_mb: int = field(default=512, **_range(1))  # what one vmapped call may hold (estimated)
    filters: int = field(default=64, **_range(1))
    rotations: bool = True
    data_dir: str = "~/flower-difmaml-data"
    image_size: int = field(default=0, **_range(0))  # miniimagenet, image-folder: resize to this (0: as found; 84)
    channels: int = field(default=0, **_range(0, 3))  # image-folder: 1 grey, 3 colour, 0 the first image's
    download: bool = False
    split_seed: int = field(default=1, **_range(0))
    meta_train_characters: int = field(default=1200, **_range(1))
    meta_optimizer: str = field(default="sgd", **_choice(*META_OPTIMIZERS))
    meta_lr: float = field(default=0.03, **_range(0.0, None, low_open=True))
    participation: float = field(default=1.0, **_range(0.0, 1.0, low_open=True))
    fail_prob: float = field(default=0.0, **_range(0.0, 1.0, high_open=True))
    link_drop_prob: float = field(default=0.0, **_range(0.0, 1.0))
    reply_timeout: float = field(default=600.0, **_range(0.0, None, low_open=True))
    checkpoint_every: int = field(default=100, **_range(0))
    resume_from: str = ""
    trim: int = field(default=1, **_range(0))
    resilient_gamma: float = field(default=0.1, **_range(0.0, 1.0, low_open=True))
    resilient_score: str = field(default="current", **_choice(*RESILIENT_SCORES))
    byzantine: str = ""
    byzantine_fraction: float = field(default=0.0, **_range(0.0, 1.0, high_open=True))
    attack: str = field(default="gaussian", **_choice(*ATTACKS))
    attack_scale: float = field(default=1.0, **_range(0.0, None, low_open=True))
    clusters: int = field(default=2, **_range(1))  # heterogeneity "clusters"; at most num-agents (the family checks)
    dims: int = field(default=10, **_range(1))  # linear-regression: M
    regressor_std: float = field(default=1.0, **_range(0.0, None, low_open=True))
    noise_std: float = field(default=0.1, **_range(0.0))
    edge_weight_scale: float = field(default=1.0, **_range(0.0, None, low_open=True))
    graph_v: float = field(default=1.0, **_range(0.0, None, low_open=True))  # V = graph-v I of the GMRF's L
    graph_warmup: int = field(default=100, **_range(0))  # learned-graph: rounds alone before the estimate
    graph_eta: float = field(default=0.0, **_range(0.0))  # > 0: the paper's eta; 0: step by graph-step
    graph_step: float = field(default=0.5, **_range(0.0, 1.0, low_open=True))
    graph_threshold: float = field(default=0.25, **_range(0.0, 1.0, high_open=True))  # form laplacian: min partial correlation
    graph_shrinkage: float = field(default=0.1, **_range(0.0, 1.0, high_open=True))  # form laplacian: Sigma_k's shrinkage
    graph_reestimate_every: int = field(default=0, **_range(0))
    graph_form: str = field(default="laplacian", **_choice(*GRAPH_FORMS))
    graph_laplacian: str = ""  # learned-graph: a known L (.npy) instead of the estimate; checked against the graph

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check(f, getattr(self, f.name))
        check_task(self.task, self.heterogeneity)
        check_device(self.device)
        check_topology(self.topology, p=self.topology_p, radius=self.topology_radius, k=self.topology_k, seed=self.topology_seed)
        if self.combination.strip().lower() in NEIGHBOURHOOD_RULES:  # before the split of turn 6
            raise ConfigError(
                f"combination: {self.combination!r} is now a value of key aggregation "
                f"(aggregation='{self.combination.strip().lower()}'); combination names the weight rule of A"
            )
        check_combination(self.combination)
        if self.aggregation == RESILIENT and self.diffusion_order != "atc":
            raise ConfigError("diffusion-order: aggregation 'resilient' needs 'atc' (adapt, then score and combine)")
        self.byzantine_ids  # noqa: B018 -- raises ConfigError on a malformed list
        if self.byzantine and self.byzantine_fraction > 0:
            raise ConfigError("byzantine: give either byzantine (agent ids) or byzantine-fraction, not both")
        if self.strategy == "learned-graph" and self.link_drop_prob > 0:
            raise ConfigError("link-drop-prob: not supported by strategy 'learned-graph'; allowed: 0")
        if self.topology == "file" and not self.topology_file:
            raise ConfigError("topology-file: required when topology = 'file'; got ''")
        if "/" in self.run_name or self.run_name in (".", ".."):
            raise ConfigError(f"run-name: {self.run_name!r} must be a plain folder name (no '/')")

    @property
    def byzantine_ids(self) -> tuple[int, ...]:
        """Key ``byzantine`` as agent ids: "" or comma-separated non-negative integers ("2,7")."""
        if not self.byzantine.strip():
            return ()
        parts = [part.strip() for part in self.byzantine.split(",")]
        if not all(part.isdigit() for part in parts):
            raise ConfigError(f"byzantine: {self.byzantine!r}; allowed: comma-separated agent ids like '2,7', or ''")
        return tuple(sorted({int(part) for part in parts}))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> RunConfig:
        """Build from kebab-case keys (``context.run_config``); unknown keys are errors."""
        names = {f.name.replace("_", "-"): f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(mapping) - set(names))
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown key{did_you_mean(unknown[0], names)}; allowed: {', '.join(sorted(names))}")
        return cls(**{names[key]: value for key, value in mapping.items()})

    def to_mapping(self) -> dict[str, Any]:
        """Kebab-case keys, as in pyproject.toml and ``flwr run -c``."""
        return {f.name.replace("_", "-"): getattr(self, f.name) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)


def toml_value(value: Any) -> str:
    """A config value as TOML, as ``-c`` and pyproject.toml read it: strings single-quoted
    (a literal string) unless they hold a quote, then a basic string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'" if "'" not in value and "\n" not in value else json.dumps(value)
    return repr(value)


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean (true or false)"}


def _check(f: dataclasses.Field, value: Any) -> None:
    key = f.name.replace("_", "-")
    kind = {"str": str, "int": int, "float": float, "bool": bool}[str(f.type)]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise ConfigError(f"{key}: {value!r} is not {_TYPE_NAMES[kind]}")
    choices = f.metadata.get("choices")
    if choices is not None:
        check_choice(key, value, choices)
    bounds = f.metadata.get("range")
    if bounds is not None:
        low, high, low_open, high_open = bounds
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high or value != value:  # NaN is never in range
            raise ConfigError(f"{key}: {value!r} out of range; allowed: {_describe(*bounds)}")


def _describe(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if high is None:
        return f"{'>' if low_open else '>='} {low}"
    return f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
