"""Task families (no Flower import): each draws task batches for one agent or for all.

Key ``task`` names a built-in family or a user's class, ``"package.module:ClassName"``,
importable on every node; ``tasks.base`` says what a family must have.
"""

from __future__ import annotations

import importlib

from ..errors import ConfigError, check_choice, did_you_mean, one_line
from .base import REQUIRED, TaskFamily

BUILT_IN = {  # imported when used: torchvision and scikit-learn only where an image family runs
    "sinusoid": "flower_difmaml.tasks.sinusoid:SinusoidTasks",
    "digits": "flower_difmaml.tasks.digits:DigitsTasks",
    "omniglot": "flower_difmaml.tasks.omniglot:OmniglotTasks",
    "linear-regression": "flower_difmaml.tasks.linear_regression:LinearRegressionTasks",
    "miniimagenet": "flower_difmaml.tasks.miniimagenet:MiniImageNetTasks",
    "image-folder": "flower_difmaml.tasks.image_folder:ImageFolderTasks",
}

__all__ = ["BUILT_IN", "TaskFamily", "check_task", "family_class"]


def family_class(task: str) -> type[TaskFamily]:
    """The class that key ``task`` names: a built-in name or ``"package.module:ClassName"``."""
    module_name, sep, class_name = BUILT_IN.get(task, task).partition(":")
    if not (sep and module_name and class_name):
        raise ConfigError(f"task: unknown {task!r}{did_you_mean(task, BUILT_IN)}; allowed: {', '.join(BUILT_IN)}, "
                          "or 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - any import failure is the user's to fix
        raise ConfigError(
            f"task: cannot import {module_name!r} ({type(error).__name__}: {one_line(error)}); "
            "a task family must be importable on every node"
        ) from None
    family = getattr(module, class_name, None)
    if not isinstance(family, type):
        raise ConfigError(f"task: {module_name!r} has no class {class_name!r}")
    missing = [name for name in REQUIRED if not hasattr(family, name)]
    if missing:
        raise ConfigError(f"task: {task!r} lacks {', '.join(missing)}; a task family needs {', '.join(REQUIRED)}")
    return family


def check_task(task: str, heterogeneity: str) -> None:
    """Keys ``task`` and ``heterogeneity``: a family that imports, and a split it understands."""
    check_choice("heterogeneity", heterogeneity, ("auto", *family_class(task).HETEROGENEITY))
