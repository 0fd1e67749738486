"""Every module imports cleanly; the CLI stays light (DESIGN: plugin modules import torch lazily)."""
from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import unlearnbench


def test_every_module_imports():
    for m in pkgutil.walk_packages(unlearnbench.__path__, "unlearnbench."):
        importlib.import_module(m.name)


def test_cli_and_registration_do_not_import_torch():
    code = ("import sys; from unlearnbench.cli import main; from unlearnbench.plugins import get_host; "
            "h = get_host(); h.methods.names(); h.scenarios.names(); h.rules.names(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True)


def test_no_top_level_methods_package(tmp_path):
    """Installed, the folders methods/ and scenarios/ live inside the unlearnbench namespace."""
    code = ("import importlib.util as u; assert u.find_spec('unlearnbench.methods.negmerge'); "
            "assert u.find_spec('methods') is None and u.find_spec('scenarios') is None")
    subprocess.run([sys.executable, "-I", "-c", code], check=True, cwd=tmp_path)  # -I: not the repo on sys.path
