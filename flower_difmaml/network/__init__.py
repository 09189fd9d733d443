"""The network (no Flower): graphs, combination matrices, links that drop and agents that
fail, Byzantine attacks, and the robust (median, trimmed mean) and resilient rules."""

from .combination import COMBINATION_RULES
from .resilient import RESILIENT
from .robust import ROBUST_RULES

NEIGHBOURHOOD_RULES = (*ROBUST_RULES, RESILIENT)  # rules that weigh the closed neighbourhood themselves
COMBINATIONS = COMBINATION_RULES + NEIGHBOURHOOD_RULES  # every value of key ``combination`` but a matrix file

__all__ = ["COMBINATIONS", "COMBINATION_RULES", "NEIGHBOURHOOD_RULES", "RESILIENT", "ROBUST_RULES"]
