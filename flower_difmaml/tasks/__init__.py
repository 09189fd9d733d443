"""Task families (no Flower import): each draws task batches for one agent or for all."""

from .base import TaskFamily
from .sinusoid import HETEROGENEITY, SinusoidTasks

TASK_FAMILIES = ("sinusoid",)

__all__ = ["HETEROGENEITY", "TASK_FAMILIES", "SinusoidTasks", "TaskFamily"]
