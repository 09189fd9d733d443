"""Few-shot digits: scikit-learn's bundled 8x8 handwritten digits, upsampled (no download).

A small stand-in for Omniglot that needs no data folder: 10 base classes (the digits),
E = 174 examples each (the smallest count over the digits), 40 classes with rotations.
Digits 7, 8 and 9 are the meta-test classes, the others the meta-train classes.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .images import FewShotImages, ImageClasses

META_TEST_DIGITS = (7, 8, 9)


@functools.lru_cache(maxsize=None)
def load_digits_classes(image_size: int = 28) -> ImageClasses:
    """The digits as ImageClasses: E images of each digit, image_size x image_size, in [0, 1].

    The first E examples of each digit of ``sklearn.datasets.load_digits()`` (values 0..16),
    divided by 16 and upsampled bilinearly (align_corners=False). Cached per process.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, target = digits.images, digits.target
    examples = int(np.bincount(target, minlength=10).min())
    stacked = np.stack([images[target == d][:examples] for d in range(10)]) / 16.0  # (10, E, 8, 8)
    small = torch.as_tensor(stacked, dtype=torch.float32).reshape(10 * examples, 1, 8, 8)
    large = F.interpolate(small, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return ImageClasses.uniform(
        large.reshape(10, examples, image_size, image_size).clamp(0.0, 1.0),
        groups=range(10),
        train=[d for d in range(10) if d not in META_TEST_DIGITS],
        test=META_TEST_DIGITS,
        names=[f"digit {d}" for d in range(10)],
    )


class DigitsTasks(FewShotImages):
    """N-way K-shot digit classification; heterogeneity ``none`` or ``classes`` (no alphabets)."""

    HETEROGENEITY = ("none", "classes", "clusters")

    @classmethod
    def from_config(cls, config: Any, num_agents: int) -> DigitsTasks:
        """Built from keys heterogeneity, n-way, shots, queries, rotations, filters and dtype."""
        return cls.from_data(load_digits_classes(), config, num_agents)
