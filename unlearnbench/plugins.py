"""The plugin manager, the loader and the registries built through hooks.

Entry points are loaded one by one so that one broken plugin is reported by name and
the others keep working (pluggy's own loader stops at the first failure).
"""
from __future__ import annotations

import importlib.metadata as md
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

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

    # -- loading -------------------------------------------------------------
    def load_entry_points(self, strict: bool | None = None) -> None:
        if strict is None:
            strict = os.environ.get(STRICT_ENV, "") not in ("", "0")
        wanted = os.environ.get(LOAD_ENV)
        allow = None if wanted is None else {w.strip() for w in wanted.split(",") if w.strip()}
        for ep in sorted(md.entry_points(group=GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else "?"
            version = ep.dist.version if ep.dist is not None else "?"
            if allow is not None and ep.name not in allow and dist not in allow:
                continue
            if ep.name in self.infos:  # same distribution seen twice on sys.path
                continue
            info = PluginInfo(ep.name, dist, version, ep.value)
            self.infos[ep.name] = info
            try:
                module = ep.load()
                self.register(module, ep.name, info)
            except Exception as e:
                info.status = f"failed: {type(e).__name__}: {e}"
                if strict:
                    raise PluginError(f"plugin {ep.name!r} ({dist} {version}) failed to load: {e}") from e
                print(
                    f"unlearnbench: plugin {ep.name!r} ({dist} {version}, {ep.value}) failed to load and is "
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


_host: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide host, with every entry point loaded (idempotent)."""
    global _host
    if _host is None:
        _host = PluginHost()
        _host.load_entry_points()
    return _host


def set_host(host: PluginHost | None) -> None:
    """Replace the process-wide host (tests)."""
    global _host
    _host = host


Register = Callable[[Any], None]
