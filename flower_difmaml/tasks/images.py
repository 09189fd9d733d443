"""N-way K-shot image classification (the few-shot setting of MAML), shared by the image families.

The data are B base classes (Omniglot characters, digits, MiniImageNet's or a folder's
classes), each with its images (grey, C = 1, or colour, C = 3; square). With
``rotations`` every base class b gives R = 4 classes (b, r), its images rotated by r * 90
degrees, with class id b * R + r (the MAML papers' augmentation); without, R = 1 and the
class id is b. A task draws ``n_way`` distinct classes of the agent, labels them 0..n_way-1
in the order drawn, and for each draws ``shots + queries`` distinct examples: the first
``shots`` are the support set, the others the query set.

Heterogeneity splits the classes of each split (meta-train, meta-validation where the data
have one, meta-test) across N agents:

- ``none``: every agent has all classes of the split;
- ``classes``: agent k has the window of the split's base classes (in their given order, B
  of them) that starts at floor(k B / N) and holds max(ceil(n_way / R), ceil(B / N)) of
  them (at most B), wrapping modulo B, with all their rotations;
- ``alphabet``: with G the sorted distinct groups of the split's base classes, agent k has
  the groups G[i] with i % N == k and all base classes in them, with all their rotations;
- ``clusters`` (key ``clusters`` = C): the agents of group c = floor(k C / N) share the window
  that ``classes`` gives agent c of C agents.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, check_choice
from ..meta.maml import TaskBatch
from ..models import MIN_IMAGE_SIZE, Conv4
from ..streams import DrawKey
from .base import check_clusters, cluster_groups, cluster_of, parse_dtype

ROTATIONS = 4  # classes per base class with rotations: 0, 90, 180 and 270 degrees
SPLITS = {"train": "meta-train", "val": "meta-validation", "test": "meta-test"}


@dataclass(frozen=True)
class ImageClasses:
    """The images of B base classes, the group of each, and the meta-train/validation/test split.

    ``images`` (M, C, H, H) holds every class's images one after another: base class b has
    ``counts[b]`` of them, from row ``offsets[b]`` on. uint8 images are pixel values (0..255,
    e.g. a memory-mapped cache file, read only where a task draws them); float32 ones are
    already in [0, 1]. ``val`` is empty for a dataset without a validation split.
    """

    images: np.ndarray  # (M, C, H, H) uint8 or float32
    counts: tuple[int, ...]  # images of each base class
    groups: tuple[int, ...]  # group of each base class (Omniglot: its alphabet index)
    train: tuple[int, ...]  # base classes for meta-training
    test: tuple[int, ...]  # base classes for meta-testing, disjoint from train
    val: tuple[int, ...] = ()  # base classes for meta-validation, disjoint from both
    names: tuple[str, ...] = ()  # each base class's name (for messages), or none

    def __post_init__(self) -> None:
        shape = tuple(self.images.shape)
        if len(shape) != 4 or shape[-1] != shape[-2] or self.images.dtype not in (np.uint8, np.float32):
            raise ValueError(f"images: shape {shape} {self.images.dtype}, expected (M, C, H, H) uint8 or float32")
        if len(self.groups) != len(self.counts) or sum(self.counts) != shape[0]:
            raise ValueError(f"counts/groups: {len(self.counts)} classes, {sum(self.counts)} images for {shape[0]} rows")
        splits = (set(self.train), set(self.val), set(self.test))
        if any(a & b for i, a in enumerate(splits) for b in splits[i + 1:]):
            raise ValueError("the train, validation and test base classes overlap")

    @classmethod
    def uniform(cls, images: np.ndarray | Tensor, groups: Sequence[int], train: Sequence[int], test: Sequence[int],
                val: Sequence[int] = (), names: Sequence[str] = ()) -> ImageClasses:
        """From (B, E, H, H) or (B, E, C, H, H) images: E of each base class (a view, no copy)."""
        array = images.numpy() if isinstance(images, Tensor) else np.asarray(images)
        if array.ndim == 4:
            array = array[:, :, None]
        b, e = array.shape[:2]
        return cls(array.reshape(b * e, *array.shape[2:]), (e,) * b, tuple(groups), tuple(train), tuple(test),
                   tuple(val), tuple(names))

    def name(self, base: int) -> str:
        return self.names[base] if self.names else f"base class {base}"

    @functools.cached_property
    def offsets(self) -> np.ndarray:
        """Row of each base class's first image."""
        return np.concatenate([[0], np.cumsum(self.counts[:-1])]).astype(np.int64)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def pixels(self, rows: np.ndarray) -> Tensor:
        """The images at ``rows`` (any shape S) as a float32 tensor (*S, C, H, H) in [0, 1]."""
        picked = self.images[rows]  # fancy indexing: a copy of these rows only
        return torch.from_numpy(picked.astype(np.float32) / 255.0 if picked.dtype == np.uint8 else picked)

    def class_images(self, base: int) -> Tensor:
        """Every image of base class ``base``: (counts[base], C, H, H) float32 in [0, 1]."""
        start = int(self.offsets[base])
        return self.pixels(np.arange(start, start + self.counts[base]))


class FewShotImages:
    """N-way K-shot classification over an ImageClasses (base for DigitsTasks, OmniglotTasks)."""

    HETEROGENEITY: tuple[str, ...] = ("none", "classes", "alphabet", "clusters")
    DEFAULT_DTYPE = torch.float32
    DEFAULT_HETEROGENEITY = "classes"  # each agent its window of the classes (the Dif-MAML authors' README)
    KEYS: tuple[str, ...] = ("n-way", "filters", "rotations")
    # eval-tasks = 0: the default 20 (tasks.base.EVAL_TASKS): an image evaluation task costs about
    # three training tasks (ten first-order steps against one second-order step)
    metric_names = ("acc", "loss")

    def __init__(
        self,
        data: ImageClasses,
        *,
        num_agents: int,
        heterogeneity: str,
        n_way: int,
        shots: int,
        queries: int,
        rotations: bool,
        dtype: torch.dtype = torch.float32,
        filters: int = 64,
        clusters: int = 2,
    ) -> None:
        check_choice("heterogeneity", heterogeneity, type(self).HETEROGENEITY)
        if heterogeneity == "clusters":
            check_clusters(clusters, num_agents)
        self.clusters = clusters
        for key, value, least in (("num-agents", num_agents, 1), ("n-way", n_way, 2), ("shots", shots, 1),
                                  ("queries", queries, 1), ("filters", filters, 1)):
            if value < least:
                raise ConfigError(f"{key}: {value} below {least}; allowed: {key} >= {least}")
        if data.image_size < MIN_IMAGE_SIZE:
            raise ConfigError(f"image-size: the images are {data.image_size} px, below the {MIN_IMAGE_SIZE} Conv-4's four "
                              f"poolings need; allowed: image-size >= {MIN_IMAGE_SIZE} (or 0 for images that large)")
        used = [b for split in (data.train, data.val, data.test) for b in split]
        fewest = min(used, key=lambda b: data.counts[b])
        if shots + queries > data.counts[fewest]:
            examples, which = data.counts[fewest], data.name(fewest)
            raise ConfigError(
                f"shots: shots + queries = {shots + queries} above the {examples} examples {which} has; "
                f"allowed: shots + queries <= {examples}"
            )
        self.data = data
        self.num_agents = num_agents
        self.heterogeneity = heterogeneity
        self.n_way, self.shots, self.queries = n_way, shots, queries
        self.rotations = rotations
        self.dtype = dtype
        self.filters = filters
        self.image_size = data.image_size
        self.per_base = ROTATIONS if rotations else 1
        self._splits = tuple(split for split in SPLITS if split != "val" or data.val)
        self._classes = {
            (split, agent): self._agent_classes(split, agent)
            for split in self._splits for agent in (None, *range(num_agents))
        }
        for (split, agent), own in self._classes.items():
            if n_way > len(own):
                who = "all agents have" if agent is None else f"agent {agent} has"
                hint = "" if agent is None else " (or fewer agents, or another heterogeneity)"
                raise ConfigError(
                    f"n-way: {n_way} above the {len(own)} classes {who} in the {SPLITS[split]} classes "
                    f"with heterogeneity={heterogeneity!r}; allowed: n-way <= {len(own)}{hint}"
                )

    @classmethod
    def from_data(cls, data: ImageClasses, config: Any, num_agents: int) -> FewShotImages:
        """Built from ``data`` and keys heterogeneity, n-way, shots, queries, rotations, filters, dtype."""
        return cls(
            data,
            num_agents=num_agents,
            heterogeneity=config.heterogeneity,
            n_way=config.n_way,
            shots=config.shots,
            queries=config.queries,
            rotations=config.rotations,
            dtype=parse_dtype(config.dtype, cls.DEFAULT_DTYPE),
            filters=config.filters,
            clusters=config.clusters,
        )

    @property
    def groups(self) -> tuple[int, ...] | None:
        """Each agent's group with heterogeneity ``clusters`` (else None)."""
        return cluster_groups(self.heterogeneity, self.num_agents, self.clusters)

    # -- the model and its loss ---------------------------------------------------------------

    def make_model(self) -> nn.Module:
        """Conv-4 with ``filters`` channels, the images' channels in and ``n_way`` outputs, in ``self.dtype``."""
        return Conv4(self.data.channels, self.n_way, self.filters, image_size=self.image_size).to(self.dtype)

    @property
    def has_validation(self) -> bool:
        """Whether the data have meta-validation classes: then evaluation rounds report those
        and the final evaluation the meta-test classes as well (``sample_test``)."""
        return bool(self.data.val)

    @property
    def evaluation_classes(self) -> str:
        """The classes ``sample_evaluation`` draws from: "meta-validation" or "meta-test"."""
        return SPLITS["val" if self.has_validation else "test"]

    def loss_fn(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Cross entropy of the logits ``prediction`` (P, n_way) and labels ``target`` (P,)."""
        return F.cross_entropy(prediction, target)

    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        """acc: the fraction of points whose largest logit is their label; loss: the cross entropy."""
        correct = (prediction.argmax(dim=-1) == target).to(self.dtype)
        return {"acc": correct.mean(), "loss": F.cross_entropy(prediction, target)}

    # -- who has which classes ----------------------------------------------------------------

    def _base_classes(self, split: str, agent: int | None) -> list[int]:
        bases = list({"train": self.data.train, "val": self.data.val, "test": self.data.test}[split])
        if agent is None or self.heterogeneity == "none":
            return bases
        n, b = self.num_agents, len(bases)
        if self.heterogeneity == "clusters":  # the window of group c of C, as "classes" gives agent c of C
            n, agent = self.clusters, cluster_of(agent, self.num_agents, self.clusters)
        if self.heterogeneity in ("classes", "clusters"):
            size = min(b, max(math.ceil(self.n_way / self.per_base), math.ceil(b / n)))
            start = agent * b // n
            return [bases[(start + j) % b] for j in range(size)]
        groups = sorted({self.data.groups[base] for base in bases})
        own = {group for i, group in enumerate(groups) if i % n == agent}
        return [base for base in bases if self.data.groups[base] in own]

    def _agent_classes(self, split: str, agent: int | None) -> np.ndarray:
        bases = np.asarray(self._base_classes(split, agent), dtype=np.int64)
        return (bases[:, None] * self.per_base + np.arange(self.per_base)).reshape(-1)

    def classes(self, split: str, agent: int | None) -> np.ndarray:
        """Class ids (base * R + rotation) of ``agent``'s classes in split "train", "val" or "test"
        (None: all)."""
        if split not in self._splits:
            raise ValueError(f"split {split!r}: expected one of {', '.join(self._splits)}")
        if agent is not None and not 0 <= agent < self.num_agents:
            raise ValueError(f"agent {agent} out of range 0..{self.num_agents - 1}")
        return self._classes[(split, agent)].copy()

    # -- drawing tasks ------------------------------------------------------------------------

    def _draw(self, rng: np.random.Generator, num_tasks: int, own: np.ndarray) -> TaskBatch:
        per_class = self.shots + self.queries
        counts, offsets = np.asarray(self.data.counts), self.data.offsets
        chosen = np.empty((num_tasks, self.n_way), dtype=np.int64)
        rows = np.empty((num_tasks, self.n_way, per_class), dtype=np.int64)
        for t in range(num_tasks):
            chosen[t] = rng.choice(own, self.n_way, replace=False)
            for i in range(self.n_way):
                base = chosen[t, i] // self.per_base
                rows[t, i] = offsets[base] + rng.choice(counts[base], per_class, replace=False)
        rotation = torch.from_numpy(chosen % self.per_base)
        x = self.data.pixels(rows)  # (T, n_way, K + Q, C, H, W)
        for r in range(1, self.per_base):
            turned = rotation == r
            x[turned] = torch.rot90(x[turned], r, dims=(-2, -1))
        x = x.to(self.dtype)
        c, h = self.data.channels, self.image_size
        labels = torch.arange(self.n_way, dtype=torch.int64)
        return TaskBatch(
            x[:, :, : self.shots].reshape(num_tasks, self.n_way * self.shots, c, h, h),
            labels.repeat_interleave(self.shots).expand(num_tasks, -1).clone(),
            x[:, :, self.shots :].reshape(num_tasks, self.n_way * self.queries, c, h, h),
            labels.repeat_interleave(self.queries).expand(num_tasks, -1).clone(),
        )

    def _draw_agents(self, key: DrawKey, num_tasks: int, agents: Sequence[int], split: str, own: bool) -> TaskBatch:
        return TaskBatch.stack(
            [self._draw(key.generator(k), num_tasks, self.classes(split, k if own else None)) for k in agents]
        )

    def sample(self, key: DrawKey, num_tasks: int, agents: Sequence[int], own: bool = True) -> TaskBatch:
        """``num_tasks`` tasks per agent from its meta-train classes (``own=False``: all of them),
        agent k's from ``key.generator(k)``.

        x_support (A, T, n_way * shots, C, H, W), y_support (A, T, n_way * shots) int64
        (labels 0..n_way-1, each ``shots`` times), x_query / y_query likewise with ``queries``.
        """
        return self._draw_agents(key, num_tasks, agents, "train", own)

    def sample_evaluation(self, key: DrawKey, num_tasks: int, agents: Sequence[int], own: bool) -> TaskBatch:
        """As ``sample``, from the ``evaluation_classes`` (meta-validation where the data have
        them, else meta-test): all of them, or each agent's own."""
        return self._draw_agents(key, num_tasks, agents, "val" if self.has_validation else "test", own)

    def sample_test(self, key: DrawKey, num_tasks: int, agents: Sequence[int], own: bool) -> TaskBatch:
        """As ``sample``, from the meta-test classes (the final evaluation, with a validation split)."""
        return self._draw_agents(key, num_tasks, agents, "test", own)
