"""Layered, typed configuration (OmegaConf structured configs).

Precedence, lowest first: suite defaults <- scenario <- method <- ``--config FILE`` <- ``-o key=value``.
The ``scenario``, ``method`` and ``selection`` sections are typed by the plugin they name,
so a misspelled option is an error that names the close matches.

``-o selection=oracle_avg_gap`` is shorthand for ``-o selection.name=oracle_avg_gap``
(likewise ``method=`` and ``scenario=``).
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, close_matches
from .seeding import sha256_hex

SECTIONS = ("scenario", "method", "selection")
# Keys that change how a run executes but not what it computes: left out of the hash.
UNHASHED = ("seeds", "threads")


@dataclass
class PoolConfig:
    name: str = "default"  # a named pool of the scenario (PROTOCOL §6)
    size: int = 0  # use the first `size` members in canonical order; 0 = all [P T4 sweep]


@dataclass
class SelectionCommon:
    name: str = "val_matched"
    grid: str = "classifier"  # classifier: {0,...,2} step 0.05 | unit: {0,...,1} | start:stop:step [PROTOCOL §5]
    diagnostic: bool = False  # also evaluate test at every lambda; such rows never feed leaderboards


@dataclass
class SuiteConfig:
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # PROTOCOL §0: T = 3 trials
    device: str = "cpu"
    threads: int = 0  # torch intra-op threads; 0 = the scenario's choice, capped by free cores
    pool: PoolConfig = field(default_factory=PoolConfig)


def _section_class(title: str, base_fields: list[tuple[str, type, Any]], plugin_cfg: type | None) -> type:
    fields: list[tuple[str, Any, Any]] = [(n, t, field(default=d)) for n, t, d in base_fields]
    if plugin_cfg is not None:
        taken = {f[0] for f in fields}
        hints = typing.get_type_hints(plugin_cfg)  # plugin modules may use string annotations
        for f in dataclasses.fields(plugin_cfg):
            if f.name in taken:
                raise ConfigError(f"{title} option {f.name!r} shadows a reserved key")
            if f.default is not dataclasses.MISSING:
                fields.append((f.name, hints[f.name], field(default=f.default, metadata=f.metadata)))
            else:
                fields.append((f.name, hints[f.name], field(default_factory=f.default_factory, metadata=f.metadata)))
    return dataclasses.make_dataclass(title, fields)


def _normalise(layer: dict) -> dict:
    layer = dict(layer)
    for s in SECTIONS:
        if isinstance(layer.get(s), str):
            layer[s] = {"name": layer[s]}
    return layer


def _check_keys(layer: dict, schema: dict, where: str, prefix: str = "") -> None:
    for k, v in layer.items():
        path = f"{prefix}{k}"
        if k not in schema:
            near = close_matches(str(k), schema.keys())
            hint = f"; did you mean {' or '.join(repr(prefix + n) for n in near)}?" if near else ""
            raise ConfigError(
                f"unknown config key {path!r} (from {where}){hint} "
                f"(`unlearnbench config` shows every key; `unlearnbench list methods --options` the method options)"
            )
        if isinstance(v, dict) and isinstance(schema[k], dict):
            _check_keys(v, schema[k], where, path + ".")


def _pick(name: str, layers: list[tuple[str, dict]], default: str) -> str:
    value = default
    for _, layer in layers:
        sec = layer.get(name)
        if isinstance(sec, dict) and "name" in sec:
            value = sec["name"]
    return str(value)


def load_file(path: str) -> dict:
    from omegaconf import OmegaConf

    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=True)  # type: ignore[return-value]
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} does not exist") from None
    except Exception as e:
        raise ConfigError(f"config file {path!r} could not be read: {e}") from e


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_overrides(items: list[str]) -> dict:
    """``-o`` items, one at a time and in order, so ``selection=X`` then ``selection.k=v`` keeps both."""
    from omegaconf import OmegaConf

    out: dict = {}
    for it in items:
        if "=" not in it:
            raise ConfigError(f"override {it!r} is not of the form key=value (e.g. -o pool.size=9)")
        try:
            one = OmegaConf.to_container(OmegaConf.from_dotlist([it]), resolve=True)
        except Exception as e:
            raise ConfigError(f"could not parse override {it!r}: {e}") from e
        out = _deep_merge(out, _normalise(one))  # type: ignore[arg-type]
    return out


@dataclass
class Resolved:
    cfg: Any  # read-only DictConfig
    scenario: Any
    method: Any
    rule: Any
    variant: list = dataclasses.field(default_factory=list)  # "key=value" options that differ from the
    # scenario's and method's defaults (what the user chose); empty for the default configuration

    @property
    def run_name(self) -> str:
        """The method's folder in runs/: its name, plus a short hash of its variant when options differ,
        so variants never overwrite each other's records."""
        from .seeding import sha256_hex

        return self.method.name + (f"@{sha256_hex(self.variant)[:8]}" if self.variant else "")

    def to_dict(self) -> dict:
        from omegaconf import OmegaConf

        return OmegaConf.to_container(self.cfg, resolve=True)  # type: ignore[return-value]

    @property
    def hash(self) -> str:
        return config_hash(self.to_dict())


def config_hash(d: dict) -> str:
    return sha256_hex({k: v for k, v in d.items() if k not in UNHASHED})


def resolve(
    host,
    *,
    method: str | None = None,
    scenario: str | None = None,
    file_layer: dict | None = None,
    overrides: list[str] | None = None,
) -> Resolved:
    """Resolve the layered config for one (scenario, method) and validate every key."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    user: list[tuple[str, dict]] = []
    if file_layer:
        user.append(("--config file", _normalise(file_layer)))
    cli: dict = {}
    if scenario:
        cli["scenario"] = {"name": scenario}
    if method:
        cli["method"] = {"name": method}
    if cli:
        user.append(("command line", cli))
    if overrides:
        user.append(("-o overrides", _normalise(parse_overrides(overrides))))

    scen = host.scenarios.get(_pick("scenario", user, "digits-10pct"))
    meth = host.methods.get(_pick("method", user, "negmerge"))
    plugin_layers = [
        (f"scenario {scen.name!r}", _normalise(dict(scen.suite_defaults))),
        (f"method {meth.name!r}", _normalise(dict(meth.suite_defaults))),
    ]
    layers = plugin_layers + user
    rule = host.rules.get(_pick("selection", layers, SelectionCommon.name))

    Scen = _section_class("ScenarioSection", [("name", str, scen.name)], scen.Config)
    Meth = _section_class("MethodSection", [("name", str, meth.name)], meth.Config)
    Sel = _section_class(
        "SelectionSection",
        [("name", str, rule.name), ("grid", str, SelectionCommon.grid), ("diagnostic", bool, False)],
        rule.Config,
    )
    base = OmegaConf.structured(SuiteConfig)
    OmegaConf.set_struct(base, False)
    base.scenario = OmegaConf.structured(Scen)
    base.method = OmegaConf.structured(Meth)
    base.selection = OmegaConf.structured(Sel)
    OmegaConf.set_struct(base, True)
    schema = OmegaConf.to_container(base)
    cfg = base
    defaults: dict = {}
    for i, (where, layer) in enumerate(layers):
        if i == len(plugin_layers):
            defaults = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
        _check_keys(layer, schema, where)  # type: ignore[arg-type]
        try:
            cfg = OmegaConf.merge(cfg, layer)
        except OmegaConfBaseException as e:
            msg = str(e).splitlines()[0]
            raise ConfigError(f"bad config value from {where}: {msg}") from None
    if not defaults:
        defaults = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    for sec, obj in (("scenario", scen), ("method", meth), ("selection", rule)):
        check = getattr(obj, "check_config", None)
        if check is not None:
            check(cfg[sec])
    OmegaConf.set_readonly(cfg, True)
    final = flat(OmegaConf.to_container(cfg, resolve=True))
    base_flat = flat(defaults)
    variant = [f"{k}={final[k]}" for k in sorted(final)
               if k.split(".")[0] not in EXECUTION and base_flat.get(k) != final[k]]
    return Resolved(cfg, scen, meth, rule, [v.replace("selection.name=", "selection=") for v in variant])


# How a run executes, not what it computes: never part of a variant's name.
EXECUTION = ("seeds", "threads", "device")


def flat(d: Any, prefix: str = "") -> dict:
    """A nested config as one level, ``{"a.b": v}``: how variants are named and compared."""
    if isinstance(d, dict):
        out: dict = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def options_of(cfg_class: type | None) -> list[dict]:
    """Name, type, default, help and source of each option of a plugin config dataclass."""
    if cfg_class is None:
        return []
    out = []
    for f in dataclasses.fields(cfg_class):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        out.append(
            {"name": f.name, "type": t, "default": default, "help": f.metadata.get("help", ""),
             "source": f.metadata.get("source", "")}
        )
    return out


def opt(default: Any, help: str, source: str = "") -> Any:
    """A plugin config field with the help text and PROTOCOL source the CLI prints."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, "source": source})
    return field(default=default, metadata={"help": help, "source": source})


