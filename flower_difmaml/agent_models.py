"""Agents' flat models as one stacked array, read as a mapping agent -> model.

What the round loop, an agent block, the codec and a strategy hand each other: row i of
``rows`` (n x P) is agent ``ids[i]``'s model w_k (or phi_k). A strategy may read it agent by
agent, as it would a dict (``models[k]``, ``models.items()``: rows are views, not copies);
the engines and the built-in rules take ``ids`` and ``rows`` whole, so a round has no
per-agent Python and no stacking copy on its hot path. ``AgentValues`` does the same for a
reply's per-agent numbers (task counts, meta-losses).

``rows`` is a numpy array (messages, checkpoints, the Flower engine) or a torch tensor on the
device the agents compute on (the vectorised engine's tensor-native rounds on a GPU); the
helpers below let one rule's code serve both.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch

Rows = np.ndarray | torch.Tensor  # stacked flat models, (n, P)


def on_host(rows: Rows) -> np.ndarray:
    """``rows`` as a numpy array: itself where it is one, else the tensor off its device (a
    CPU tensor's own memory, not a copy). What messages, checkpoints and results hold."""
    return rows.detach().cpu().numpy() if isinstance(rows, torch.Tensor) else rows


@functools.cache
def numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """The numpy dtype of a torch dtype (float32 -> float32)."""
    return torch.empty((), dtype=dtype).numpy().dtype


def dtype_of(rows: Rows) -> np.dtype:
    """The numpy dtype of ``rows``, an array or a tensor."""
    return numpy_dtype(rows.dtype) if isinstance(rows, torch.Tensor) else rows.dtype


def as_rows_of(array: np.ndarray | Rows, like: Rows) -> Rows:
    """``array`` (a copy) as the kind of ``like``: a numpy array, or a tensor on ``like``'s device
    in its dtype."""
    if isinstance(like, torch.Tensor):
        return torch.as_tensor(array).to(like.device, like.dtype, copy=True)
    return np.array(on_host(array), dtype=like.dtype)


def broadcast_rows(model: np.ndarray | torch.Tensor, num: int) -> Rows:
    """``model`` (P,) as ``num`` read-only rows (num, P) of the same memory (no copy)."""
    if isinstance(model, torch.Tensor):
        return model.expand(num, model.shape[0])
    return np.broadcast_to(model, (num, model.size))


def index_for(index: np.ndarray, rows: Rows) -> np.ndarray | torch.Tensor:
    """An integer or boolean numpy ``index`` into ``rows`` (to read or to assign), on ``rows``'
    device where ``rows`` is a tensor."""
    return torch.from_numpy(np.asarray(index)).to(rows.device) if isinstance(rows, torch.Tensor) else index


class _ByAgent(Mapping):
    """Entry i of an array is agent ``ids[i]``'s (ids distinct, in any order), read as a mapping
    agent -> entry: what :class:`AgentModels` and :class:`AgentValues` share."""

    __slots__ = ("ids", "_index")

    def __init__(self, ids: Sequence[int] | np.ndarray) -> None:
        self.ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        self._index: dict[int, int] | None = None

    def _position(self, agent: int) -> int:
        """Agent ``agent``'s entry i (the lookup table is made at the first read)."""
        if self._index is None:
            self._index = {k: i for i, k in enumerate(self.ids.tolist())}
        return self._index[agent]

    def __iter__(self) -> Iterator[int]:
        return iter(self.ids.tolist())

    def __len__(self) -> int:
        return len(self.ids)


class AgentModels(_ByAgent, Mapping[int, np.ndarray]):
    """Row i of ``rows`` (an array or a tensor) is agent ``ids[i]``'s flat model (ids distinct,
    in any order)."""

    __slots__ = ("rows",)

    def __init__(self, ids: Sequence[int] | np.ndarray, rows: Rows) -> None:
        super().__init__(ids)
        if np.ndim(rows) != 2 or len(rows) != len(self.ids):
            raise ValueError(f"AgentModels: rows of shape {tuple(np.shape(rows))} for {len(self.ids)} agents")
        self.rows = rows

    @classmethod
    def of(cls, models: Mapping[int, np.ndarray]) -> AgentModels:
        """``models`` as stacked rows (itself where it is stacked already); the models must
        have one shape and dtype (``runner.rounds.checked`` sees to replies)."""
        if isinstance(models, AgentModels):
            return models
        ids = list(models)
        return cls(ids, np.stack([np.asarray(models[k]) for k in ids]) if ids else np.zeros((0, 0)))

    def ascending(self) -> AgentModels:
        """The same models with the agents in ascending order (itself where they are: no copy)."""
        if np.all(self.ids[1:] > self.ids[:-1]):
            return self
        order = np.argsort(self.ids, kind="stable")
        return AgentModels(self.ids[order], self.rows[index_for(order, self.rows)])

    def select(self, keep: np.ndarray) -> AgentModels:
        """The agents where the boolean mask ``keep`` (one entry a row) is True."""
        return AgentModels(self.ids[keep], self.rows[index_for(keep, self.rows)])

    def __getitem__(self, agent: int) -> np.ndarray:
        return self.rows[self._position(agent)]

    def __repr__(self) -> str:
        return f"AgentModels(agents {self.ids.tolist()}, rows {tuple(np.shape(self.rows))})"


class AgentValues(_ByAgent, Mapping[int, float]):
    """Entry i of ``numbers`` is agent ``ids[i]``'s number (a task count, a meta-loss): a
    reply's per-agent numbers as two arrays, read as a dict would be (``values[k]``, a Python
    number), taken whole by the round loop and the rules (:func:`values_of`)."""

    __slots__ = ("numbers",)  # not ``values``: that is the mapping's values()

    def __init__(self, ids: Sequence[int] | np.ndarray, numbers: Sequence[float] | np.ndarray) -> None:
        super().__init__(ids)
        self.numbers = np.asarray(numbers).reshape(-1)
        if len(self.numbers) != len(self.ids):
            raise ValueError(f"AgentValues: {len(self.numbers)} numbers for {len(self.ids)} agents")

    def __getitem__(self, agent: int) -> float:
        return self.numbers[self._position(agent)].item()

    def __repr__(self) -> str:
        return f"AgentValues(agents {self.ids.tolist()}, numbers {self.numbers.tolist()})"


def values_of(values: Mapping[int, float], ids: np.ndarray, dtype: np.dtype | type = np.float64) -> np.ndarray:
    """The numbers of agents ``ids`` in that order, as an array of ``dtype``: from
    ``AgentValues`` without per-agent Python where it holds them in that order."""
    if isinstance(values, AgentValues) and np.array_equal(values.ids, ids):
        return values.numbers.astype(dtype, copy=False)
    return np.array([values[k] for k in ids.tolist()], dtype=dtype)
