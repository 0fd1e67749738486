"""Every hook a plugin may implement. These docstrings are the plugin reference.

A plugin is a module (or object) listed in the ``unlearnbench`` entry-point group of
its distribution's pyproject; it implements any of the hooks below with
``@unlearnbench.hookimpl``. Built-in methods, scenarios and rules are plugins of
exactly this kind.
"""
from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("unlearnbench")
hookimpl = pluggy.HookimplMarker("unlearnbench")


@hookspec
def register_methods(register: Callable) -> None:
    """Register unlearning methods.

    Called once per process, when the method registry is first built.

    :param register: call ``register(method)`` with an instance of a
        :class:`unlearnbench.Method` subclass. ``method.name`` is the name users
        type (``unlearnbench run --method NAME``). A name another plugin already
        registered raises :class:`unlearnbench.PluginError` naming both plugins.
    """


@hookspec
def register_scenarios(register: Callable) -> None:
    """Register scenarios (a data set, its split, model and recipes, its metrics).

    :param register: call ``register(scenario)`` with an instance of a
        :class:`unlearnbench.Scenario` subclass; ``scenario.name`` is what
        ``--scenario`` takes. Duplicate names are an error naming both plugins.
    """


@hookspec
def register_selection_rules(register: Callable) -> None:
    """Register hyperparameter selection rules (PROTOCOL §5).

    :param register: call ``register(rule)`` with an instance of a
        :class:`unlearnbench.SelectionRule` subclass; ``rule.name`` is what
        ``-o selection=NAME`` takes. Duplicate names are an error naming both plugins.
    """
