"""Robust aggregation over a neighbourhood (no Flower): coordinate-wise median and trimmed mean.

Baselines for Byzantine agents (Yin et al., 2018). Agent k aggregates the models
{phi_l : l in N_k} that reached it, coordinate by coordinate:

    median:        w_k[j] = median_l phi_l[j]
    trimmed mean:  w_k[j] = mean of phi_l[j] without the b largest and b smallest values

With fewer than 2b + 1 models (a small neighbourhood, failures, dropped links) b is
lowered to (n - 1) // 2, so at least one value is left in every coordinate.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from ..errors import check_choice

ROBUST_RULES = ("median", "trimmed-mean")


def coordinate_median(models: np.ndarray) -> np.ndarray:
    """Coordinate-wise median of ``models`` (n, P) -> (P,)."""
    return np.median(models, axis=0)


def trimmed_mean(models: np.ndarray, trim: int) -> np.ndarray:
    """Coordinate-wise mean of ``models`` (n, P) without the ``trim`` largest and smallest values."""
    n = len(models)
    b = min(trim, (n - 1) // 2)
    ordered = np.sort(models, axis=0)
    return ordered[b : n - b].mean(axis=0)


def robust_rule(name: str, trim: int) -> Callable[[np.ndarray], np.ndarray]:
    """The aggregation ``name`` (one of ``ROBUST_RULES``) as a function of the models (n, P)."""
    check_choice("aggregation", name, ROBUST_RULES)
    return coordinate_median if name == "median" else partial(trimmed_mean, trim=trim)
