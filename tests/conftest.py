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


# The suite's own short names for the fixtures of its pytest plugin (unlearnbench.testing, the
# pytest11 entry point): one store per session, so each digits model trains once, shared with
# the `check_method` fixture; a fresh plugin host per test.

@pytest.fixture(scope="session")
def session_store(unlearnbench_store):
    return unlearnbench_store


@pytest.fixture
def host(unlearnbench_host):
    return unlearnbench_host


@pytest.fixture
def example_plugin_path(monkeypatch):
    """Put the example third-party distribution (module + dist-info) on sys.path: as installed."""
    monkeypatch.syspath_prepend(str(PLUGINS_DIR))
    yield PLUGINS_DIR
    sys.modules.pop("unlearnbench_example", None)
