from __future__ import annotations

import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may download in tests
os.environ["UNLEARNBENCH_QUIET"] = "1"
os.environ.pop("UNLEARNBENCH_LOAD_PLUGINS", None)
os.environ.pop("UNLEARNBENCH_STRICT_PLUGINS", None)

import pytest  # noqa: E402

from helpers import PLUGINS_DIR  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    import torch

    torch.set_num_threads(1)  # more threads than free cores slows training up to 100x (PROTOCOL §10.1)
    yield


@pytest.fixture(scope="session")
def session_store(tmp_path_factory):
    """One store shared by the tests that train digits models, so each model trains once."""
    from unlearnbench.store import Store

    return Store(tmp_path_factory.mktemp("store"))


@pytest.fixture
def host():
    """A fresh plugin host with the installed entry points (pluggy's `pm` fixture pattern)."""
    from unlearnbench.plugins import PluginHost

    h = PluginHost()
    h.load_entry_points()
    return h


@pytest.fixture
def example_plugin_path(monkeypatch):
    """Put the example third-party distribution (module + dist-info) on sys.path: as installed."""
    monkeypatch.syspath_prepend(str(PLUGINS_DIR))
    yield PLUGINS_DIR
    sys.modules.pop("unlearnbench_example", None)
