"""What a run says before it starts about keys it ignores or values it assumes (no Flower).

A key set away from its default that the chosen strategy, task family, topology or engine
does not read gets one warning line: nothing is refused that worked before, but a user who
sets ``participation=0.5`` with ``dif-maml`` learns that it changed nothing. A Flower run of
2 agents on Flower's default 2-SuperNode federation gets a line too (a forgotten
``--federation-config``).
"""

from __future__ import annotations

from typing import Any

from ..config import RunConfig
from ..network import RESILIENT, WEIGHTED
from ..strategies import BUILT_IN
from ..tasks import BUILT_IN as BUILT_IN_TASKS
from ..tasks import family_class
from ..tasks.base import heterogeneity_of

# key -> the built-in strategies that read it (a user's or Flower's strategy may read any key)
STRATEGY_KEYS = {
    "participation": ("fedavg-maml",),
    "diffusion-order": ("dif-maml",),
    "aggregation": ("dif-maml",),
    "link-drop-prob": ("dif-maml", "fedavg-maml"),
    **{key: ("learned-graph",) for key in (
        "graph-warmup", "graph-eta", "graph-step", "graph-threshold", "graph-shrinkage", "graph-reestimate-every",
        "graph-form", "graph-laplacian")},
}
# key -> the topologies that read it
TOPOLOGY_KEYS = {
    "topology-p": ("erdos-renyi", "small-world"),
    "topology-radius": ("geometric",),
    "topology-k": ("small-world",),
    "topology-seed": ("erdos-renyi", "geometric", "small-world"),
    "topology-file": ("file",),
}
# key -> the engines that read it
ENGINE_KEYS = {"reply-timeout": ("flower",)}


def _conditions(config: RunConfig) -> dict[str, tuple[bool, str]]:
    """key -> (whether the run reads it, with what it is read): keys that depend on other keys.
    A strategy of yours or Flower's may read any strategy key."""
    other = config.strategy not in BUILT_IN
    dif_maml = {aggregation: other or (config.strategy == "dif-maml" and config.aggregation == aggregation)
                for aggregation in (WEIGHTED, "trimmed-mean", RESILIENT)}
    byzantine = bool(config.byzantine or config.byzantine_fraction)
    return {
        "combination": (dif_maml[WEIGHTED], "strategy 'dif-maml' and aggregation 'weighted', or a strategy of yours"),
        "trim": (dif_maml["trimmed-mean"], "strategy 'dif-maml' and aggregation 'trimmed-mean'"),
        "resilient-gamma": (dif_maml[RESILIENT], "strategy 'dif-maml' and aggregation 'resilient'"),
        "resilient-score": (dif_maml[RESILIENT], "strategy 'dif-maml' and aggregation 'resilient'"),
        "attack": (byzantine, "Byzantine agents (key byzantine or byzantine-fraction)"),
        "attack-scale": (byzantine, "Byzantine agents (key byzantine or byzantine-fraction)"),
        "graph-threshold": (other or (config.graph_form == "laplacian" and not config.graph_laplacian),
                            "graph-form 'laplacian' and a learned graph (no graph-laplacian)"),
        "graph-shrinkage": (other or (config.graph_form == "laplacian" and not config.graph_laplacian),
                            "graph-form 'laplacian' and a learned graph (no graph-laplacian)"),
        "graph-step": (other or config.graph_eta == 0, "graph-eta = 0"),
        "clusters": (_heterogeneity(config) == "clusters", "heterogeneity 'clusters'"),
    }


def _heterogeneity(config: RunConfig) -> str:
    try:
        return heterogeneity_of(family_class(config.task), config.heterogeneity)
    except ValueError:
        return config.heterogeneity


def unused_keys(config: RunConfig, engine: str | None = None) -> dict[str, str]:
    """key -> why the run does not read it, for every key set away from its default that
    the strategy (a built-in), the task family (one that lists its ``KEYS``), the topology,
    the engine (None: not known yet) or another key leaves unused."""
    defaults, values = RunConfig().to_mapping(), config.to_mapping()
    changed = [key for key, value in values.items() if value != defaults[key]]
    family = family_class(config.task)
    task_keys = {key for task in BUILT_IN_TASKS for key in getattr(family_class(task), "KEYS", ())}
    conditions = _conditions(config)
    out: dict[str, str] = {}
    for key in changed:
        if key in STRATEGY_KEYS and config.strategy in BUILT_IN and config.strategy not in STRATEGY_KEYS[key]:
            out[key] = f"read only by strategy {' or '.join(STRATEGY_KEYS[key])}, not {config.strategy!r}"
        elif key in TOPOLOGY_KEYS and config.topology not in TOPOLOGY_KEYS[key]:
            out[key] = f"read only by topology {' or '.join(TOPOLOGY_KEYS[key])}, not {config.topology!r}"
        elif key in ENGINE_KEYS and engine is not None and engine not in ENGINE_KEYS[key]:
            out[key] = f"read only by the {' or '.join(ENGINE_KEYS[key])} engine, not the {engine} one"
        elif key in task_keys and hasattr(family, "KEYS") and key not in family.KEYS:
            out[key] = f"task {config.task!r} does not read it"
        elif key in conditions and not conditions[key][0]:
            out[key] = f"read only with {conditions[key][1]}"
    return out


def config_warnings(config: RunConfig, num_agents: int, engine: str | None = None, num_nodes: int = 0) -> list[str]:
    """The warning lines a run starts with: ``unused_keys``, and the 2-agent Flower run."""
    values: dict[str, Any] = config.to_mapping()
    lines = [f"warning: {key}={values[key]!r} has no effect: {why}" for key, why in unused_keys(config, engine).items()]
    if engine == "flower" and num_agents == 2 and num_nodes == 2 and not config.num_agents:
        lines.append('warning: 2 agents on 2 SuperNodes, Flower\'s default local federation; did you mean '
                     '--federation-config "num-supernodes=N"?')
    return lines
