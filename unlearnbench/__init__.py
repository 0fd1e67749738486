"""unlearnbench: a reproducible benchmark suite for machine unlearning in image classifiers.

The public surface for plugin authors. Importing it never imports torch. Loader helpers (where a
data set's files are, image decoding, safe weights loading, hashing) are in the public submodule
``unlearnbench.data``.
"""
from __future__ import annotations

from . import data
from .augment import random_resized_crop, tensor_op
from .config import Choice, opt
from .context import Ctx
from .errors import (ConfigError, DataNotFound, ManifestMismatch, PluginError, SplitAccessError, StoreError,
                     UnlearnbenchError)
from .hookspecs import hookimpl
from .method import MergeMethod, Method, Result
from .recipe import PoolGrid, Recipe, classifier_pool
from .scenario import ClassifierScenario, RawData, Scenario, ScenarioGroup, Scoring, Task, paper_table
from .seeding import sha256_hex, stream_seed
from .selection import Selection, SelectionRule
from .store import tensor_digest
from .taskvec import StreamKeys, count_dtype
from .training import Paired, Phase

__version__ = "0.1.0"

__all__ = [
    "Choice", "ClassifierScenario", "ConfigError", "Ctx", "DataNotFound", "ManifestMismatch", "MergeMethod", "Method",
    "Paired", "Phase", "PluginError", "PoolGrid", "RawData", "Recipe", "Result", "Scenario", "ScenarioGroup",
    "Scoring", "Selection", "SelectionRule",
    "SplitAccessError", "StoreError", "StreamKeys", "Task", "UnlearnbenchError", "classifier_pool", "count_dtype",
    "data", "hookimpl", "opt", "paper_table", "random_resized_crop", "sha256_hex", "stream_seed", "tensor_digest",
    "tensor_op", "__version__",
]
