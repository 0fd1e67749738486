"""One error hierarchy: the library raises, the CLI prints the message and exits non-zero."""
from __future__ import annotations

import difflib
from typing import Iterable


class UnlearnbenchError(Exception):
    """Base class of every error meant to be shown to a user without a traceback."""


class ConfigError(UnlearnbenchError):
    """A config key, value, method, scenario or rule that does not exist or does not fit."""


class PluginError(UnlearnbenchError):
    """A plugin that failed to load, or two plugins claiming one name."""


class SplitAccessError(UnlearnbenchError):
    """A method or rule reached for a split it did not declare (or for test data)."""


class DataNotFound(UnlearnbenchError):
    """A data set is not where we looked; the message says where to put it."""


class StoreError(UnlearnbenchError):
    """A stored artifact is corrupt or belongs to another manifest."""


class ManifestMismatch(StoreError):
    """A stage saw an artifact built on a different index manifest (PROTOCOL §1.2)."""


def close_matches(word: str, choices: Iterable[str], n: int = 3) -> list[str]:
    choices = list(choices)
    found = difflib.get_close_matches(word, choices, n=n, cutoff=0.5)
    if not found:
        found = [c for c in choices if word and (word in c or c in word)][:n]
    return found


def unknown(kind: str, word: str, choices: Iterable[str], listing: str | None = None) -> ConfigError:
    """An 'unknown X' error naming the close matches and how to list the valid ones."""
    choices = sorted(choices)
    msg = f"unknown {kind} {word!r}"
    near = close_matches(word, choices)
    if near:
        msg += f"; did you mean {' or '.join(repr(m) for m in near)}?"
    if listing:
        msg += f" (`{listing}` lists them)"
    elif choices:
        msg += f" (valid: {', '.join(choices)})"
    return ConfigError(msg)
