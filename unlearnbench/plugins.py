"""The plugin manager, the loader and the registries built through hooks.

Entry points are loaded one by one so that one broken plugin is reported by name and
the others keep working (pluggy's own loader stops at the first failure).
"""
from __future__ import annotations

import importlib.metadata as md
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError, unknown

GROUP = "unlearnbench"
STRICT_ENV = "UNLEARNBENCH_STRICT_PLUGINS"
LOAD_ENV = "UNLEARNBENCH_LOAD_PLUGINS"  # comma list of entry-point or distribution names; "" = none


@dataclass
class PluginInfo:
    name: str
    dist: str
    version: str
    module: str
    status: str = "ok"  # "ok" or the error text
    hooks: list[str] = field(default_factory=list)


@dataclass
class Registered:
    obj: Any
    plugin: str
    dist: str


class Registry:
    """One kind of registered thing (methods, scenarios, rules), built once by a hook."""

    def __init__(self, kind: str, listing: str):
        self.kind = kind
        self.listing = listing
        self.entries: dict[str, Registered] = {}

    def add(self, obj: Any, plugin: str, dist: str) -> None:
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {plugin!r} ({dist}) registered a {self.kind} without a name: {obj!r}")
        if name in self.entries:
            first = self.entries[name]
            raise PluginError(
                f"{self.kind} {name!r} is registered twice: by plugin {first.plugin!r} ({first.dist}) "
                f"and by plugin {plugin!r} ({dist}); uninstall or rename one of them"
            )
        validate = getattr(obj, "validate_definition", None)
        if validate is not None:
            try:
                validate()
            except Exception as e:  # report the plugin, not a trace from deep inside it
                raise PluginError(f"{self.kind} {name!r} from plugin {plugin!r} is malformed: {e}") from e
        self.entries[name] = Registered(obj, plugin, dist)

    def get(self, name: str) -> Any:
        try:
            return self.entries[name].obj
        except KeyError:
            raise unknown(self.kind, name, self.entries, self.listing) from None

    def names(self) -> list[str]:
        return sorted(self.entries)

    def __contains__(self, name: str) -> bool:
        return name in self.entries


class PluginHost:
    """A plugin manager plus the registries built from it. Tests make fresh ones."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self._registries: dict[str, Registry] = {}
        self._loaded: set[tuple[str, str]] = set()  # (distribution, entry-point name) already loaded

    # -- loading -------------------------------------------------------------
    def load_entry_points(self, strict: bool | None = None) -> None:
        """Load every entry point of the group, each under its own plugin name.

        Two distributions may use one entry-point name (a third-party package whose entry point
        is called ``merges`` or ``clip``): both load. The first keeps the plain name (our own
        distribution first, then by distribution name, so the order does not depend on sys.path)
        and the others are named ``<distribution>:<name>``, whichever of them UNLEARNBENCH_LOAD_PLUGINS
        selects (it takes entry-point names, distribution names and ``<distribution>:<name>``).
        Only the same distribution found twice on sys.path is loaded once (and a second call loads
        nothing new)."""
        if strict is None:
            strict = os.environ.get(STRICT_ENV, "") not in ("", "0")
        wanted = os.environ.get(LOAD_ENV)
        allow = None if wanted is None else {w.strip() for w in wanted.split(",") if w.strip()}
        eps = sorted(md.entry_points(group=GROUP), key=_load_order)
        owner: dict[str, str] = {}  # entry-point name -> the distribution that keeps it as plugin name
        for ep in eps:
            owner.setdefault(ep.name, _canonical(_dist_name(ep)))
        for ep in eps:
            dist = _dist_name(ep)
            version = ep.dist.version if ep.dist is not None else "?"
            qualified = f"{dist}:{ep.name}"
            if allow is not None and not {ep.name, dist, qualified} & allow:
                continue
            if (_canonical(dist), ep.name) in self._loaded:  # the same distribution seen twice on sys.path
                continue
            self._loaded.add((_canonical(dist), ep.name))
            name = ep.name if owner[ep.name] == _canonical(dist) and ep.name not in self.infos else qualified
            if name in self.infos:  # "<dist>:<name>" taken too: nothing can tell the two apart
                raise PluginError(f"plugin {name!r} ({dist} {version}, {ep.value}) is declared twice, also by "
                                  f"{self.infos[name].dist} {self.infos[name].version} ({self.infos[name].module}); "
                                  "uninstall one of them")
            info = PluginInfo(name, dist, version, ep.value)
            self.infos[name] = info
            try:
                module = ep.load()
                self.register(module, name, info)
            except Exception as e:
                info.status = f"failed: {type(e).__name__}: {e}"
                if strict:
                    raise PluginError(f"plugin {name!r} ({dist} {version}) failed to load: {e}") from e
                print(
                    f"unlearnbench: plugin {name!r} ({dist} {version}, {ep.value}) failed to load and is "
                    f"skipped: {type(e).__name__}: {e}",
                    file=sys.stderr,
                )

    def register(self, plugin: Any, name: str, info: PluginInfo | None = None) -> None:
        """Register an already imported plugin object (a module or an instance)."""
        if info is None:
            info = PluginInfo(name, "(local)", "", getattr(plugin, "__name__", type(plugin).__name__))
            self.infos[name] = info
        self.pm.register(plugin, name=name)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as e:
            self.pm.unregister(name=name)
            raise PluginError(f"plugin {name!r} implements a hook that does not exist: {e}") from e
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
        self._registries.clear()

    # -- registries ----------------------------------------------------------
    def _build(self, hook: str, kind: str, listing: str) -> Registry:
        if hook in self._registries:
            return self._registries[hook]
        reg = Registry(kind, listing)
        caller = getattr(self.pm.hook, hook)
        # Call each implementation separately so each registration knows its plugin.
        for impl in reversed(caller.get_hookimpls()):
            pname = impl.plugin_name
            info = self.infos.get(pname)
            dist = f"{info.dist} {info.version}".strip() if info else "?"

            def register(obj: Any, _p: str = pname, _d: str = dist) -> None:
                reg.add(obj, _p, _d)

            try:
                impl.function(register=register)
            except PluginError:
                raise
            except Exception as e:
                raise PluginError(f"plugin {pname!r} failed in {hook}: {type(e).__name__}: {e}") from e
        self._registries[hook] = reg
        return reg

    @property
    def methods(self) -> Registry:
        return self._build("register_methods", "method", "unlearnbench list methods")

    @property
    def scenarios(self) -> Registry:
        return self._build("register_scenarios", "scenario", "unlearnbench list scenarios")

    @property
    def rules(self) -> Registry:
        return self._build("register_selection_rules", "selection rule", "unlearnbench list rules")


def _canonical(dist: str) -> str:
    """A distribution name as packaging normalises it (PEP 503): unlearnbench_example == unlearnbench-example."""
    return re.sub(r"[-_.]+", "-", dist).lower()


def _dist_name(ep: md.EntryPoint) -> str:
    return ep.dist.name if ep.dist is not None else "?"


def _load_order(ep: md.EntryPoint) -> tuple:
    """By entry-point name; among equal names our own distribution first, then by distribution name."""
    dist = _canonical(_dist_name(ep))
    return ep.name, dist != _canonical(__name__.split(".")[0]), dist


_host: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide host, with every entry point loaded (idempotent)."""
    global _host
    if _host is None:
        _host = PluginHost()
        _host.load_entry_points()
    return _host

