"""The layout DESIGN promises, checked on the source (ast, no imports of the modules checked):

- the core (unlearnbench/) names no built-in scenario or method in code and never branches on a
  ``.kind``: a scenario says how it is scored (``Scoring``), a method whether it is the oracle;
- built-in plugins (methods/, scenarios/) import only the public API, as a third-party one must.
"""
from __future__ import annotations

import ast
import importlib.metadata as md
from pathlib import Path

import pytest

import unlearnbench

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "unlearnbench"
PLUGIN_DIRS = (REPO / "methods", REPO / "scenarios")
# The public modules a plugin may import from; everything else under unlearnbench. is internal.
PUBLIC_MODULES = ("unlearnbench", "unlearnbench.data", "unlearnbench.testing")
# The only built-in names the core may spell (DESIGN, "The core names no family"): the Retrain
# oracle *stage* (an artifact every classifier trial has), and the CLI's default method and
# scenario, declared once in config.py.
ALLOWED = {"retrain"}
DEFAULTS_MODULE = CORE / "config.py"


def _py(root: Path):
    return sorted(p for p in root.rglob("*.py") if ".venv" not in p.parts)


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _builtin_names(host) -> set[str]:
    """Every built-in method and scenario name, and the built-in plugin (entry-point) names that
    name a family (``clip``, ``negmerge``...); the core's own plugin (rules) is not a family."""
    names = set(host.methods.names()) | set(host.scenarios.names())
    for ep in md.entry_points(group="unlearnbench"):
        if ep.dist is not None and ep.dist.name == "unlearnbench" and not ep.value.startswith("unlearnbench.rules"):
            names.add(ep.name)
            names.add(ep.value.rsplit(".", 1)[-1])  # the module's own name: clip, fmnist, relabel...
    return names


def test_core_names_no_builtin_scenario_or_method(host):
    names = _builtin_names(host) - ALLOWED
    assert {"negmerge", "digits-10pct", "clip-mnist", "clip", "fmnist"} <= names  # the check sees them
    found = []
    for path in _py(CORE):
        tree = ast.parse(path.read_text(), str(path))
        docs = _docstrings(tree)
        defaults: set[int] = set()
        if path == DEFAULTS_MODULE:  # DEFAULT_METHOD = "negmerge", DEFAULT_SCENARIO = "digits-class"
            for node in ast.walk(tree):
                if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) and t.id.startswith("DEFAULT_")
                                                        for t in node.targets):
                    defaults |= {id(c) for c in ast.walk(node.value) if isinstance(c, ast.Constant)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names
                    and id(node) not in docs and id(node) not in defaults):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert not found, ("the core names built-in plugins (declare it on the Scenario/Method instead, or use "
                       "config.DEFAULT_*):\n" + "\n".join(found))


def test_core_never_branches_on_a_kind():
    found = []
    for path in _py(CORE):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                for side in (node.left, *node.comparators):
                    if isinstance(side, ast.Attribute) and side.attr == "kind":
                        found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not found, "the core compares a `.kind` (use the Scoring / Method declarations):\n" + "\n".join(found)


def _imports(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name, []


@pytest.mark.parametrize("root", PLUGIN_DIRS, ids=lambda p: p.name)
def test_builtin_plugins_import_only_the_public_api(root):
    """Built-ins are registered like third-party plugins, so they may use only what one can:
    ``unlearnbench.__all__`` and the public modules; their own package's modules relatively."""
    exported = set(unlearnbench.__all__)
    found = []
    for path in _py(root):
        for line, module, names in _imports(path):
            if not module.startswith("unlearnbench"):
                continue
            where = f"{path.relative_to(REPO)}:{line}"
            if module not in PUBLIC_MODULES:
                found.append(f"{where}: imports {module} (not public: import from unlearnbench or "
                             f"{', '.join(PUBLIC_MODULES[1:])}; within a plugin package, import relatively)")
            elif module == "unlearnbench":
                found += [f"{where}: {n} is not in unlearnbench.__all__" for n in names if n not in exported]
    assert not found, "\n".join(found)


def test_the_check_sees_a_private_import(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from unlearnbench.seeding import torch_gen\n")
    assert [(m, n) for _, m, n in _imports(bad)] == [("unlearnbench.seeding", ["torch_gen"])]
