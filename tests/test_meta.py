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


def test_readme_tables_are_the_generated_ones():
    """The README's method and rule tables are `unlearnbench list ... --markdown`, so they cannot drift."""
    from pathlib import Path

    from click.testing import CliRunner

    from unlearnbench.cli import main

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for what in ("methods", "rules"):
        table = readme.split(f"<!-- {what}:begin -->\n")[1].split(f"\n<!-- {what}:end -->")[0]
        out = CliRunner().invoke(main, ["list", what, "--markdown"]).output.strip()
        assert table == out, f"README's {what} table is stale: run `unlearnbench list {what} --markdown`"


def test_readme_command_reference_is_the_generated_one():
    """The README's command reference is every command's --help (`unlearnbench cli-reference`)."""
    from pathlib import Path

    from click.testing import CliRunner

    from unlearnbench.cli import cli_reference, main

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("<!-- cli:begin -->\n")[1].split("\n<!-- cli:end -->")[0]
    assert block == cli_reference(), "README's command reference is stale: run `unlearnbench cli-reference`"
    out = CliRunner().invoke(main, ["cli-reference"]).output
    assert out == block + "\n"
    for command in main.commands.values():  # every visible command is in it, with each of its options
        if not command.hidden:
            assert f"$ unlearnbench {command.name} --help" in block
            for param in command.params:
                assert param.param_type_name != "option" or all(o in block for o in param.opts), param.opts
