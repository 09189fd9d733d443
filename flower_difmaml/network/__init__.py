"""The network (no Flower): graphs, combination matrices, links that drop and agents that
fail, Byzantine attacks, and the robust (median, trimmed mean) and resilient rules."""

from .combination import COMBINATION_RULES
from .resilient import RESILIENT
from .robust import ROBUST_RULES

WEIGHTED = "weighted"  # key ``aggregation``: w_k = sum_l a_lk phi_l, the weights of A
NEIGHBOURHOOD_RULES = (*ROBUST_RULES, RESILIENT)  # aggregations that weigh the closed neighbourhood themselves
AGGREGATIONS = (WEIGHTED, *NEIGHBOURHOOD_RULES)  # every value of key ``aggregation``

__all__ = ["AGGREGATIONS", "COMBINATION_RULES", "NEIGHBOURHOOD_RULES", "RESILIENT", "ROBUST_RULES", "WEIGHTED"]
