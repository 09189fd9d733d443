"""A strategy of Flower's ``flwr.serverapp.strategy`` (FedAvg, FedAdam, Krum, ...) over the run's agents.

Key ``strategy = 'flwr:<Class>'``, the constructor's arguments from key ``strategy-args``.
Every agent is one node to the Flower strategy, which runs its own code on Flower's own
records: in round i its ``configure_train`` samples the agents (its ``fraction_train``;
Python's ``random``, seeded here by (seed, i)) and gives each the global model w_{i-1}
as an ``ArrayRecord`` of the model's named tensors; each agent that trained answers its
``aggregate_train`` with ``arrays`` (its phi_k,i) and a ``MetricRecord`` with ``num-examples``
(its number of tasks n_k), and what the strategy returns is w_i (w_{i-1} if it returns
nothing). So

    FedAvg:                    w_i = sum_k n_k phi_k,i / sum_k n_k        (= fedavg-maml)
    FedAdam, FedYogi, FedAdagrad (Reddi et al., 2021): w_i = w_{i-1} + eta m_i / (sqrt(v_i) + tau),
                               m_i, v_i the moments of the pseudo-gradient FedAvg(phi) - w_{i-1}
    Krum, MultiKrum, Bulyan, FedMedian, FedTrimmedAvg: robust aggregates of the phi_k,i

A Byzantine agent's reply is its attack's model, as with every strategy. The strategy's
own evaluation is not used: the run evaluates every agent on its schedule. Its state
(FedOpt's moments, ...) goes into checkpoints, pickled. A strategy's config entries for the
clients (FedProx's ``proximal-mu``) do not reach the agents: their meta-step is the run's.
"""

from __future__ import annotations

import inspect
import logging
import math
import pickle
import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import strategy as flwr_strategies
from flwr.supercore.task_identity import TaskIdentity

from ..errors import ConfigError, did_you_mean, one_line
from .base import MetaStrategy, StrategySetup

NOT_MODEL_AVERAGING = ("FedXgb", "DifferentialPrivacy")  # trees as bytes; wrappers of another strategy
RESERVED = (  # constructor arguments the adapter sets: the records' keys and the metric aggregation
    "weighted_by_key", "arrayrecord_key", "configrecord_key", "train_metrics_aggr_fn", "evaluate_metrics_aggr_fn",
    "selection_rule",
)
NUM_EXAMPLES = "num-examples"


def flower_classes() -> dict[str, type]:
    """The classes of ``flwr.serverapp.strategy`` that average models (name -> class)."""
    out = {}
    for name in flwr_strategies.__all__:
        cls = getattr(flwr_strategies, name)
        if (isinstance(cls, type) and issubclass(cls, flwr_strategies.Strategy) and not inspect.isabstract(cls)
                and not name.startswith(NOT_MODEL_AVERAGING)):
            out[name] = cls
    return out


def model_arrays(vector: np.ndarray, names: Sequence[str], shapes: Sequence[tuple[int, ...]]) -> ArrayRecord:
    """A flat model as Flower holds one: an ArrayRecord of the model's named tensors (the keys
    and shapes of ``model.state_dict()``)."""
    record, start = ArrayRecord(), 0
    for name, shape in zip(names, shapes):
        size = math.prod(shape)
        record[name] = Array(np.ascontiguousarray(vector[start : start + size].reshape(shape)))
        start += size
    return record


def model_vector(record: ArrayRecord, names: Sequence[str], dtype: np.dtype) -> np.ndarray:
    """Inverse of ``model_arrays``: the named tensors, flat in layout order, in ``dtype``."""
    return np.concatenate([record[name].numpy().reshape(-1) for name in names]).astype(dtype)


class AgentGrid:
    """What a Flower strategy asks of the grid to sample its nodes: here the agents 0..N-1."""

    def __init__(self, num_agents: int) -> None:
        self.num_agents = num_agents

    def get_node_ids(self) -> list[int]:
        return list(range(self.num_agents))


@contextmanager
def flower_call(seed: int, round_: int) -> Iterator[None]:
    """Around a Flower strategy's call: Python's ``random`` seeded by (seed, round) and then
    restored, Flower's INFO lines off (its per-round logs), and, outside a Flower app (the
    vectorised engine), a task identity for the messages it makes."""
    state, logger = random.getstate(), logging.getLogger("flwr")
    level, unset = logger.level, [name for name in ("_run_id", "_node_id", "_task_id") if getattr(TaskIdentity, name) is None]
    random.seed(f"{seed}-{round_}")
    logger.setLevel(logging.WARNING)
    for name in unset:
        setattr(TaskIdentity, name, 0)
    try:
        yield
    finally:
        random.setstate(state)
        logger.setLevel(level)
        for name in unset:
            setattr(TaskIdentity, name, None)


def flower_strategy(setup: StrategySetup, class_name: str, args: dict[str, Any]) -> FlowerStrategy:
    """``flwr:<class_name>(**args)`` over the run's agents; ConfigError (key ``strategy`` or
    ``strategy-args``) for an unknown class, an argument it does not take, a value it refuses,
    or more nodes than agents asked for."""
    classes = flower_classes()
    if class_name not in classes:
        raise ConfigError(f"strategy: unknown 'flwr:{class_name}'{did_you_mean('flwr:' + class_name, ['flwr:' + n for n in classes])}; "
                          f"allowed: {', '.join('flwr:' + n for n in classes)}")
    cls = classes[class_name]
    allowed = [name for name in inspect.signature(cls).parameters if name not in RESERVED]
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise ConfigError(f"strategy-args: flwr:{class_name} takes no argument {unknown[0]!r}{did_you_mean(unknown[0], allowed)}; "
                          f"allowed: {', '.join(allowed)}")
    try:
        with flower_call(setup.config.seed, 0):
            strategy = cls(**args)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"strategy-args: flwr:{class_name} refuses {args}: {one_line(error)}") from None
    n = setup.num_agents
    needed = max(getattr(strategy, "min_available_nodes", 0), getattr(strategy, "min_train_nodes", 0))
    if needed > n:
        raise ConfigError(
            f"strategy-args: flwr:{class_name} waits for {needed} nodes (min_available_nodes, min_train_nodes) "
            f"and the run has {n} agents; allowed: at most {n}"
        )
    f = getattr(strategy, "num_malicious_nodes", 0)
    sampled = max(int(n * getattr(strategy, "fraction_train", 1.0)), getattr(strategy, "min_train_nodes", 0))
    if class_name == "Bulyan" and sampled < 4 * f + 3:
        raise ConfigError(
            f"strategy-args: flwr:Bulyan needs 4 num_malicious_nodes + 3 = {4 * f + 3} replies and samples {sampled} "
            f"agents; allowed: num_malicious_nodes <= {(sampled - 3) // 4}"
        )
    return FlowerStrategy(setup, strategy)


class FlowerStrategy(MetaStrategy):
    """One global model, moved by a Flower strategy's ``configure_train``/``aggregate_train``."""

    def __init__(self, setup: StrategySetup, strategy: flwr_strategies.Strategy) -> None:
        super().__init__(setup.num_agents)
        self.strategy = strategy
        self.name = f"flwr:{type(strategy).__name__}"
        self.names, self.shapes = setup.names, setup.shapes
        self.seed = setup.config.seed
        self.global_model = np.array(setup.initial)
        self.asked: dict[int, Message] = {}  # this round's train messages, by agent

    def arrays(self, vector: np.ndarray) -> ArrayRecord:
        return model_arrays(vector, self.names, self.shapes)

    def vector(self, record: ArrayRecord) -> np.ndarray:
        return model_vector(record, self.names, self.global_model.dtype)

    def train_plan(self, round_: int) -> Mapping[int, np.ndarray]:
        with flower_call(self.seed, round_):
            messages = self.strategy.configure_train(round_, self.arrays(self.global_model), ConfigRecord(), AgentGrid(self.num_agents))
            self.asked = {int(m.metadata.dst_node_id): m for m in messages}
        return {k: self.vector(next(iter(m.content.array_records.values()))) for k, m in sorted(self.asked.items())}

    def aggregate_train(self, round_: int, models: Mapping[int, np.ndarray], num_tasks: Mapping[int, int]) -> None:
        with flower_call(self.seed, round_):
            replies = [
                Message(RecordDict({"arrays": self.arrays(models[k]), "metrics": MetricRecord({NUM_EXAMPLES: num_tasks[k]})}),
                        reply_to=self.asked[k])
                for k in sorted(models)
            ]
            arrays, _ = self.strategy.aggregate_train(round_, replies)
        if arrays is not None:
            self.global_model = self.vector(arrays)

    def current_models(self) -> np.ndarray:
        return np.broadcast_to(self.global_model, (self.num_agents, self.global_model.size))

    def state(self) -> dict[str, np.ndarray]:
        kept = {name: value for name, value in vars(self.strategy).items() if not callable(value)}
        return {"global-model": self.global_model.copy(), "flower-strategy": np.frombuffer(pickle.dumps(kept), np.uint8)}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.global_model = np.array(state["global-model"])
        vars(self.strategy).update(pickle.loads(np.asarray(state["flower-strategy"]).tobytes()))
