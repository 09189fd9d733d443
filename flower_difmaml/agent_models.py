"""Agents' flat models as one stacked array, read as a mapping agent -> model.

What the round loop, an agent block, the codec and a strategy hand each other: row i of
``rows`` (n x P) is agent ``ids[i]``'s model w_k (or phi_k). A strategy may read it agent by
agent, as it would a dict (``models[k]``, ``models.items()``: rows are views, not copies);
the engines and the built-in rules take ``ids`` and ``rows`` whole, so a round has no
per-agent Python and no stacking copy on its hot path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np


class AgentModels(Mapping[int, np.ndarray]):
    """Row i of ``rows`` is agent ``ids[i]``'s flat model (ids distinct, in any order)."""

    __slots__ = ("ids", "rows", "_index")

    def __init__(self, ids: Sequence[int] | np.ndarray, rows: np.ndarray) -> None:
        self.ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if np.ndim(rows) != 2 or len(rows) != len(self.ids):
            raise ValueError(f"AgentModels: rows of shape {np.shape(rows)} for {len(self.ids)} agents")
        self.rows = rows
        self._index: dict[int, int] | None = None

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
        return AgentModels(self.ids[order], self.rows[order])

    def select(self, keep: np.ndarray) -> AgentModels:
        """The agents where the boolean mask ``keep`` (one entry a row) is True."""
        return AgentModels(self.ids[keep], self.rows[keep])

    def __getitem__(self, agent: int) -> np.ndarray:
        if self._index is None:
            self._index = {k: i for i, k in enumerate(self.ids.tolist())}
        return self.rows[self._index[agent]]

    def __iter__(self) -> Iterator[int]:
        return iter(self.ids.tolist())

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"AgentModels(agents {self.ids.tolist()}, rows {np.shape(self.rows)})"
