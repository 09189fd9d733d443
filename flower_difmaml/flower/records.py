"""A model travels in a Flower ``ArrayRecord`` as one flat vector in the run's dtype.

Both ends build the same model from the run config, so the layout (names, shapes) need
not travel; one array per message is several times cheaper to (de)serialize than one
per parameter tensor.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord

MODEL_KEY = "flat"
OPTIMIZER_STATE = "meta-optimizer"  # an agent's meta-optimizer state: in context.state, and in
# a message when it travels for a checkpoint (reply) or a resume (train message)
RUNNING_LOSSES = "running-losses"  # a resilient agent's r_k (a flat vector, like a model): in context.state and combine replies
NEIGHBOURS = "neighbours"  # the phi_l a combine message relays, keyed by agent id
COMBINE = "train.combine"  # message type of the resilient rule's second exchange
PROBLEM = "problem"  # in a node's identify reply: why it cannot be its agent (a ConfigError's line)


def model_record(vector: np.ndarray) -> ArrayRecord:
    return ArrayRecord({MODEL_KEY: Array(np.ascontiguousarray(vector))})


def model_vector(record: ArrayRecord) -> np.ndarray:
    return record[MODEL_KEY].numpy()


def models_record(models: dict[int, np.ndarray]) -> ArrayRecord:
    """Several agents' flat models, keyed by agent id."""
    return ArrayRecord({str(k): Array(np.ascontiguousarray(v)) for k, v in models.items()})


def models_of(record: ArrayRecord) -> dict[int, np.ndarray]:
    return {int(k): a.numpy() for k, a in record.items()}
