"""unlearnbench: a reproducible benchmark suite for machine unlearning in image classifiers.

The public surface for plugin authors. Importing it never imports torch.
"""
from __future__ import annotations

from .augment import random_resized_crop
from .config import opt
from .errors import (ConfigError, DataNotFound, ManifestMismatch, PluginError, SplitAccessError, StoreError,
                     UnlearnbenchError)
from .hookspecs import hookimpl
from .method import MergeMethod, Method, Result
from .recipe import PoolGrid, Recipe, classifier_pool
from .scenario import ClassifierScenario, RawData, Scenario, Scoring, Task, paper_table
from .seeding import sha256_hex, stream_seed
from .selection import Selection, SelectionRule

__version__ = "0.1.0"

__all__ = [
    "ClassifierScenario", "ConfigError", "DataNotFound", "ManifestMismatch", "MergeMethod", "Method",
    "PluginError", "PoolGrid", "RawData", "Recipe", "Result", "Scenario", "Scoring", "Selection", "SelectionRule",
    "SplitAccessError", "StoreError", "Task", "UnlearnbenchError", "classifier_pool", "hookimpl", "opt",
    "paper_table", "random_resized_crop", "sha256_hex", "stream_seed", "__version__",
]
