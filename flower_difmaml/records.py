"""A model travels in a Flower ``ArrayRecord`` as one flat float64 vector.

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


def model_record(vector: np.ndarray) -> ArrayRecord:
    return ArrayRecord({MODEL_KEY: Array(np.ascontiguousarray(vector, dtype=np.float64))})


def model_vector(record: ArrayRecord) -> np.ndarray:
    return record[MODEL_KEY].numpy()
