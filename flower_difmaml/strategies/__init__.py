"""Strategies: what the server side does with the agents' models, found by name.

Key ``strategy`` names one the way key ``task`` names a family:

- a built-in: ``dif-maml``, ``fedavg-maml``, ``non-coop``, ``learned-graph`` (``BUILT_IN``);
- a class of Flower's ``flwr.serverapp.strategy`` as ``'flwr:<Class>'``, e.g. ``'flwr:FedAdam'``,
  over the run's agents (``flwr_strategy``; the only module here that imports flwr, and
  only when a run names one);
- a user's ``'package.module:Name'``, importable where the server runs.

The protocol: ``Name`` is called as ``Name(setup, **args)`` with the run's ``StrategySetup``
and the arguments of key ``strategy-args`` (``'name=value, ...'``, values as Python literals),
and returns a ``MetaStrategy`` (``base``: ``train_plan``, ``aggregate_train``,
``current_models``, ``state``, ``load_state``, and optional hooks). A ``MetaStrategy``
subclass whose ``__init__`` takes ``(setup, ...)`` is such a callable; the built-ins are
functions of ``builtin``, registered the same way. Arguments are checked against ``Name``'s
signature before anything runs.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError, did_you_mean, one_line
from .base import MetaStrategy, NeighbourModels, StrategySetup
from .diffusion import DifMAML
from .fedavg_maml import FedAvgMAML
from .learned_graph import LearnedGraph
from .non_cooperative import NonCooperative
from .resilient import ResilientDifMAML

BUILT_IN = {
    "dif-maml": "flower_difmaml.strategies.builtin:dif_maml",
    "fedavg-maml": "flower_difmaml.strategies.builtin:fedavg_maml",
    "non-coop": "flower_difmaml.strategies.builtin:non_coop",
    "learned-graph": "flower_difmaml.strategies.builtin:learned_graph",
}
FLWR = "flwr:"  # key strategy = 'flwr:<Class>': a class of flwr.serverapp.strategy

__all__ = [
    "BUILT_IN", "DifMAML", "FedAvgMAML", "LearnedGraph", "MetaStrategy", "NeighbourModels", "NonCooperative",
    "ResilientDifMAML", "StrategySetup", "make_strategy", "parse_strategy_args", "strategy_label",
]


def parse_strategy_args(text: str) -> dict[str, Any]:
    """Key ``strategy-args``: ``'name=value, ...'`` -> {name: value}. Names may be kebab-case
    (``num-malicious-nodes``) or snake_case; values are Python literals (``0.01``, ``2``,
    ``'text'``), ``true``/``false``, or a bare word taken as text."""
    args: dict[str, Any] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = (s.strip() for s in part.partition("="))
        if not (sep and name.replace("-", "_").isidentifier() and value):
            raise ConfigError(f"strategy-args: {part!r} is not name=value; allowed: 'name=value, name=value'")
        try:
            parsed: Any = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = {"true": True, "false": False}.get(value.lower(), value)
        args[name.replace("-", "_")] = parsed
    return args


def _named(strategy: str) -> Callable[..., MetaStrategy]:
    """The callable that key ``strategy`` names (a built-in or 'package.module:Name')."""
    module_name, sep, qualname = BUILT_IN.get(strategy, strategy).partition(":")
    if not (sep and module_name and qualname):
        raise ConfigError(
            f"strategy: unknown {strategy!r}{did_you_mean(strategy, BUILT_IN)}; allowed: {', '.join(BUILT_IN)}, 'flwr:<Class>' "
            "(a class of flwr.serverapp.strategy), or 'package.module:Class'"
        )
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - any import failure is the user's to fix
        raise ConfigError(
            f"strategy: cannot import {module_name!r} ({type(error).__name__}: {one_line(error)}); "
            "a strategy must be importable where the ServerApp runs"
        ) from None
    for attribute in qualname.split("."):
        target = getattr(target, attribute, None)
    if not callable(target):
        raise ConfigError(f"strategy: {module_name!r} has no class or function {qualname!r}")
    return target


def make_strategy(setup: StrategySetup) -> MetaStrategy:
    """The strategy that keys ``strategy`` and ``strategy-args`` name, built from ``setup``;
    a name that cannot be found, an argument it does not take, or a value it refuses is a
    ConfigError naming the key."""
    config = setup.config
    args = parse_strategy_args(config.strategy_args)
    if config.strategy.startswith(FLWR):
        from .flwr_strategy import flower_strategy  # imports flwr: only where a run names a Flower class

        return flower_strategy(setup, config.strategy.removeprefix(FLWR), args)
    factory = _named(config.strategy)
    try:
        inspect.signature(factory).bind(setup, **args)
    except TypeError as error:
        allowed = [name for name in list(inspect.signature(factory).parameters)[1:]]
        unknown = [name for name in args if name not in allowed]
        near = did_you_mean(unknown[0], allowed) if unknown else ""
        raise ConfigError(
            f"strategy-args: {one_line(error)} ({config.strategy!r}){near}; allowed: {', '.join(allowed) or 'none'}"
            + (" (a built-in's settings are run-config keys)" if config.strategy in BUILT_IN else "")
        ) from None
    strategy = factory(setup, **args)
    if not isinstance(strategy, MetaStrategy):
        raise ConfigError(
            f"strategy: {config.strategy!r} gave a {type(strategy).__name__}; it must return a MetaStrategy "
            "(flower_difmaml.strategies.MetaStrategy)"
        )
    return strategy


def strategy_label(strategy: str) -> str:
    """Key ``strategy`` as a folder-name part: 'flwr:FedAdam' -> 'flwr-FedAdam'."""
    return strategy.replace(":", "-").replace("/", "-")
