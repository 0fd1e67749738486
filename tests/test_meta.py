"""Every module imports cleanly; the CLI stays light (DESIGN: plugin modules import torch lazily)."""
from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

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


# -- no module reaches into another's private names (issue 13, acceptance 5) ----------------------

REPO = Path(__file__).resolve().parents[1]
# where each installed package's files live (pyproject's [tool.setuptools.package-dir])
ROOTS = {"unlearnbench": REPO / "unlearnbench", "unlearnbench.methods": REPO / "methods",
         "unlearnbench.scenarios": REPO / "scenarios"}


def _project_modules() -> dict[str, Path]:
    out = {}
    for pkg, root in ROOTS.items():
        for f in sorted(root.rglob("*.py")):
            parts = f.relative_to(root).with_suffix("").parts
            out[".".join((pkg, *(parts[:-1] if parts[-1] == "__init__" else parts)))] = f
    return out


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _reached_private(dotted: str, importer: str, modules: dict[str, Path]) -> str | None:
    """The first underscore name in ``dotted`` (a project module path, then names in it) that
    ``importer`` may not reach: a name defined in another module, or a private module outside the
    package that holds it (methods/_common.py is for methods/). Stops at the first part that is not
    a module: attributes of objects are not module names."""
    parts = dotted.split(".")
    for i in range(1, len(parts)):
        parent = ".".join(parts[:i])
        if parent not in modules:
            return None
        if not _is_private(parts[i]):
            continue
        path = f"{parent}.{parts[i]}"
        is_pkg = modules[parent].name == "__init__.py"
        if path in modules and is_pkg and (importer == parent or importer.startswith(parent + ".")):
            continue
        return path
    return None


def _private_reaches(name: str, path: Path, modules: dict[str, Path]) -> list[str]:
    """``from X import _y``, ``import X._y`` and ``X._y`` on an imported project module, in one file."""
    import ast

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    bound: dict[str, str] = {}  # local name -> the project module or name it was imported as
    found = []

    def check(dotted: str, node: ast.AST) -> None:
        if dotted.split(".")[0] != "unlearnbench":
            return  # another distribution's privates (numpy._core in cifar10.py) are its business
        bad = _reached_private(dotted, name, modules)
        if bad:
            found.append(f"{name}:{node.lineno} reaches {bad}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                check(a.name, node)
                bound[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:
                check(f"{target}.{a.name}", node)
                bound[a.asname or a.name] = f"{target}.{a.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            chain, base = [node.attr], node.value
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in bound:
                check(".".join([bound[base.id], *reversed(chain)]), node)
    return found


def test_no_module_imports_another_modules_private_names():
    """What crosses a module boundary is public: no ``from X import _y``, no ``X._y`` on an imported
    module, anywhere in unlearnbench/, methods/ or scenarios/ (a package's own private modules,
    like methods/_common.py, stay usable inside that package)."""
    modules = _project_modules()
    found = [f for name, path in modules.items() for f in _private_reaches(name, path, modules)]
    assert not found, ("private names used across modules; make them public where they are defined:\n"
                       + "\n".join(found))


def test_the_private_import_check_sees_each_form(tmp_path):
    """The check above finds each form it forbids, and lets a package use its own private module."""
    pkg = tmp_path / "unlearnbench"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def _hidden(): pass\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "_common.py").write_text("x = 1\n")
    (pkg / "sub" / "ok.py").write_text("from ._common import x\nfrom . import _common\nfrom ..a import __doc__\n")
    (pkg / "b.py").write_text("from .a import _hidden\nimport unlearnbench.a as m\nm._hidden()\n"
                              "from . import a\na._hidden()\nfrom .sub import _common\nimport numpy._core\n")
    modules = {"unlearnbench": pkg / "__init__.py", "unlearnbench.a": pkg / "a.py",
               "unlearnbench.b": pkg / "b.py", "unlearnbench.sub": pkg / "sub" / "__init__.py",
               "unlearnbench.sub._common": pkg / "sub" / "_common.py", "unlearnbench.sub.ok": pkg / "sub" / "ok.py"}
    assert _private_reaches("unlearnbench.sub.ok", pkg / "sub" / "ok.py", modules) == []
    assert sorted(_private_reaches("unlearnbench.b", pkg / "b.py", modules)) == [
        "unlearnbench.b:1 reaches unlearnbench.a._hidden",  # from X import _y
        "unlearnbench.b:3 reaches unlearnbench.a._hidden",  # X._y, X imported as a module
        "unlearnbench.b:5 reaches unlearnbench.a._hidden",  # X._y, X from its package
        "unlearnbench.b:6 reaches unlearnbench.sub._common",  # another package's private module
    ]


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
