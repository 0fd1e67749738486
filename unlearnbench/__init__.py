"""unlearnbench: a reproducible benchmark suite for machine unlearning in image classifiers.

The public surface for plugin authors. Importing it never imports torch.
"""
from __future__ import annotations

from .config import opt
from .context import Ctx
from .errors import (ConfigError, DataNotFound, ManifestMismatch, PluginError, SplitAccessError, StoreError,
                     UnlearnbenchError)
from .hookspecs import hookimpl
from .method import MergeMethod, Method, Result
from .recipe import PoolGrid, Recipe
from .scenario import ClassifierScenario, RawData, Scenario, Scoring, Task, paper_table
from .selection import Selection, SelectionRule

__version__ = "0.1.0"

__all__ = [
    "ClassifierScenario", "ConfigError", "Ctx", "DataNotFound", "ManifestMismatch", "MergeMethod", "Method",
    "PluginError", "PoolGrid", "RawData", "Recipe", "Result", "Scenario", "Selection", "SelectionRule",
    "Scoring", "SplitAccessError", "StoreError", "Task", "UnlearnbenchError", "hookimpl", "opt", "paper_table",
    "__version__",
]
