"""Layered, typed configuration (OmegaConf structured configs).

Precedence, lowest first: suite defaults <- scenario <- method <- ``--config FILE`` <- ``-o key=value``.
The ``scenario``, ``method`` and ``selection`` sections are typed by the plugin they name,
so a misspelled option is an error that names the close matches.

``-o selection=oracle_avg_gap`` is shorthand for ``-o selection.name=oracle_avg_gap``
(likewise ``method=`` and ``scenario=``).

An enumerated option is typed by a ``Choice`` (a ``str`` Enum), so OmegaConf refuses any other
value and its message lists the choices; no plugin writes its own "must be one of" check.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .errors import ConfigError, close_matches
from .seeding import sha256_hex

# What `unlearnbench run` (and `config`, `merge`, the conformance check) use when no --method or
# --scenario is given: the suite's one built-in method and scenario names in the core.
DEFAULT_METHOD = "negmerge"
# digits-class, not digits-10pct (PROTOCOL §10.2 #47): digits-10pct's 125 forget samples cannot rank
# methods (one sample = 0.8 points; on its v1 board no method beat "no unlearning" beyond seed noise)
DEFAULT_SCENARIO = "digits-class"

SECTIONS = ("scenario", "method", "selection", "executor")  # `-o executor=ray` is executor.name=ray
# Keys that change how a run executes but not what it computes: left out of the hash.
UNHASHED = ("seeds", "threads", "executor", "eval")  # eval: what is computed after a run, never its numbers


@dataclass
class PoolConfig:
    name: str = "default"  # a named pool of the scenario (PROTOCOL §6)
    size: int = 0  # merge `size` members (which ones: `subset`); 0 = all [P T4 sweep]
    # which size-n subset when size < the pool (PROTOCOL §9.5 v2): draw 0, 1, 2, ... of the random
    # subsets from the `pool` stream; prefix = the first n in canonical order (protocol 1's code)
    subset: str = "0"
    # pool = the augmentation the pool's recipe names (PROTOCOL §6.3 v2: the CPU pools translate by ±1 /
    # ±2 px); v1 = the pool as protocol 1 trained it (the CPU pools without augmentation)
    augment: str = "pool"
    # true: the linear pool, its members fine-tuned as θ_0's linearised model f_lin, and every edit of
    # the run evaluated as f_lin(θ_0 − λτ) (PROTOCOL §4.8: the paper's Linear Task Arithmetic block);
    # its own artifacts, keyed apart from the standard pool's. Only for methods that read the pool
    linear: bool = False


POOL_AUGMENTS = ("pool", "v1")


@dataclass
class SelectionCommon:
    name: str = "val_matched"
    grid: str = "classifier"  # classifier: {0,...,2} step 0.05 | unit: {0,...,1} | start:stop:step [PROTOCOL §5]
    # how a λ sweep visits the grid (selection.sweep): grid = every λ; frontier = every λ up to the
    # first infeasible one; halving = a coarse pass, then halving steps around the choice [OURS, issue 15]
    strategy: str = "grid"
    diagnostic: bool = False  # also evaluate test at every lambda; such rows never feed leaderboards
    # more rules choosing on the same curves (PROTOCOL §5(d)): comma-separated names, "none", or "auto"
    # (the oracle rules oracle_avg_gap and oracle_split_test where the scenario has a Retrain oracle)
    also: str = "auto"


@dataclass
class SuiteConfig:
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # PROTOCOL §0: T = 3 trials
    device: str = "cpu"
    # the training precision: fp32 (every reference's, the default) or bf16 (autocast, opt-in, issue 20);
    # hashed only when set (SUITE_LATE), so every configuration recorded before the key keeps its hash
    amp: str = "fp32"
    threads: int = 0  # torch intra-op threads; 0 = the scenario's choice, capped by free cores
    pool: PoolConfig = field(default_factory=PoolConfig)
    executor: ExecutorConfig = field(default_factory=lambda: ExecutorConfig())  # defined after Choice
    eval: EvalConfig = field(default_factory=lambda: EvalConfig())  # defined after Choice


class Choice(str, Enum):
    """The base of an enumerated option::

        class Mask(Choice):
            consensus = "consensus"
            conflict = "conflict"

        @dataclass
        class Config:
            mask: Mask = opt(Mask.consensus, "kept where: consensus | conflict")

    OmegaConf then refuses any other value with a message that lists the members. OmegaConf
    reads and writes a member by its *name*, and every ``to_container`` in the suite passes
    ``enum_to_str=True``, so the name is what users type and what records and config hashes hold:
    give each member its name as its value (an identifier, then; a keyword such as ``global`` needs
    Enum's functional API, as ``TrimScope`` in methods/merges.py). A member is that string to the
    rest of the code: it compares, hashes, prints and formats as it (``str(Mask.conflict)`` is
    ``"conflict"``), so code written against the plain strings keeps working."""

    def __str__(self) -> str:
        return self._value_

    def __format__(self, spec: str) -> str:
        return format(self._value_, spec)

    @classmethod
    def of(cls, value: Any, key: str) -> Any:
        """``value`` (a member or its string) as a member, or a ConfigError naming ``key`` and the choices:
        for the Python API (reducers built by hand), which OmegaConf does not see."""
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"{key} must be one of {', '.join(m._value_ for m in cls)}, not {value!r}") from None


class ExecutorName(Choice):
    local = "local"  # in this process, one job after another (the default)
    processes = "processes"  # N worker processes on this machine
    ray = "ray"  # Ray tasks: a local Ray instance, or a cluster (executor.address)


@dataclass
class ExecutorConfig:
    """Where independent jobs (pool members, search candidates, sweep cells) run (DESIGN.md, Executors).
    How a run executes, never what it computes: left out of the config hash and of variant names."""

    name: ExecutorName = ExecutorName.local
    workers: int = 0  # processes / ray: jobs at once; 0 = the free cores (processes) or the cores / threads
    threads_per_worker: int = 0  # torch threads of each job; 0 = cores / workers (at least 1)
    address: str = ""  # ray: "" starts a local instance; auto joins this machine's cluster; ray://host:port
    num_gpus: float = 0.0  # ray: GPUs each job asks for (fractions share a GPU)
    retries: int = 1  # a failed job runs once more, then is reported and the rest go on
    # > 1: train up to this many pool members of a trial at once, as one stacked model (torch.func.vmap;
    # issue 20): equal to one at a time up to float reordering, so such members get store keys of their
    # own and the record's provenance says so; 0 or 1 = one at a time (the default)
    stack: int = 0


class Switch(Choice):
    off = "off"  # `-o eval.ensembles=on` arrives as a YAML boolean; the config reads it back as a word
    on = "on"


@dataclass
class EvalConfig:
    """Evaluation beyond a run's own record, after it (PROTOCOL §8.7): left out of the config hash and of
    variant names, since it never changes the run's numbers."""

    # on: after the runs, build the §8.7.0 ensembles of trial 0 (resumable, through the executor) and score
    # the method under KLOM, the NeurIPS 2023 forgetting quality and U-LiRA (``unlearnbench ensemble``);
    # hours per method on fmnist on a 2-core CPU (§8.7.4), minutes on a GPU
    ensembles: Switch = Switch.off
    # the ensemble sizes: auto = the scenario's (§8.7.4), or faithful | smoke | minimal (ensemble.build.PRESETS)
    preset: str = "auto"


def section_class(title: str, base_fields: list[tuple[str, type, Any]], plugin_cfg: type | None) -> type:
    """A dataclass for one config section: ``base_fields`` (name, type, default), then the plugin
    config's fields, with their metadata; a plugin option that shadows a base field is an error."""
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


_YAML_INT, _YAML_FLOAT, _YAML_STR = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:str"


def _yaml_loader() -> type:
    """OmegaConf's YAML loader, less YAML 1.1's base-60 numbers: ``0:2:0.05`` (the documented
    ``start:stop:step`` grid) stays that text instead of becoming 120.05. A number never holds a colon."""
    import yaml
    from omegaconf._yaml import get_yaml_loader

    class Loader(get_yaml_loader()):  # type: ignore[misc]
        def resolve(self, kind, value, implicit):  # noqa: ANN001
            tag = super().resolve(kind, value, implicit)
            if kind is yaml.ScalarNode and tag in (_YAML_INT, _YAML_FLOAT) and ":" in str(value):
                return _YAML_STR
            return tag

    return Loader


def load_file(path: str) -> dict:
    """A ``--config`` file's keys: a YAML mapping (an empty file is no keys)."""
    import yaml
    from omegaconf import OmegaConf

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_yaml_loader())  # noqa: S506 (OmegaConf's safe loader)
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path!r} is a directory; give a YAML file") from None
    except Exception as e:  # not YAML, not UTF-8, a duplicate key: one line naming the file
        raise ConfigError(f"config file {path!r} could not be read: {' '.join(str(e).split())}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path!r} must hold a mapping of config keys (e.g. `pool: {{size: 9}}`), but its top "
            f"level is a {type(data).__name__} ({str(data)[:60]!r}); `unlearnbench config` shows every key")
    try:
        return OmegaConf.to_container(OmegaConf.create(data), resolve=True)  # type: ignore[return-value]
    except Exception as e:
        raise ConfigError(f"config file {path!r} could not be read: {' '.join(str(e).split())}") from e


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
            raise ConfigError(f"override {it!r} is not of the form key=value: give a value, e.g. -o {it or 'KEY'}=VALUE")
        try:
            conf = OmegaConf.from_dotlist([it])
            key, raw = it.split("=", 1)
            if ":" in raw:  # keep `0:2:0.05` text (see _yaml_loader)
                import yaml

                OmegaConf.update(conf, key, yaml.load(raw, Loader=_yaml_loader()))  # noqa: S506
            one = OmegaConf.to_container(conf, resolve=True)
        except Exception as e:
            raise ConfigError(f"could not parse override {it!r}: {e}") from e
        out = _deep_merge(out, _normalise(one))  # type: ignore[arg-type]
    return out


# YAML reads on/off, yes/no and true/false as booleans, so `-o method.lr_search=off` arrives as False
_BOOL_WORDS = {True: ("on", "true", "yes"), False: ("off", "false", "no")}


def _enum_words(layer: dict, node: Any) -> dict:
    """``layer`` with a boolean given for an enumerated option replaced by the member that spells it
    (an Enum option never takes a boolean, and OmegaConf would refuse False for ``lr_search: off``)."""
    from omegaconf import DictConfig

    out = {}
    for k, v in layer.items():
        cur = node.get(k) if isinstance(node, DictConfig) and k in node else None
        if isinstance(v, dict) and isinstance(cur, DictConfig):
            v = _enum_words(v, cur)
        elif isinstance(v, bool) and isinstance(cur, Enum):
            v = next((m.name for m in type(cur) if m.name.lower() in _BOOL_WORDS[v]), v)
        out[k] = v
    return out


def merge_layer(cfg: Any, layer: dict, where: str) -> Any:
    """``cfg`` (a structured DictConfig) with ``layer`` merged over it; a value of the wrong type, or
    not one of an enumerated option's choices, is a ConfigError naming the key, ``where`` and the choices."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.merge(cfg, _enum_words(layer, cfg))
    except OmegaConfBaseException as e:
        msg = str(e).splitlines()[0]
        key = f" for {e.full_key}" if getattr(e, "full_key", None) else ""
        raise ConfigError(f"bad config value{key} from {where}: {msg}") from None


@dataclass
class Resolved:
    cfg: Any  # read-only DictConfig
    scenario: Any
    method: Any
    rule: Any
    variant: list = dataclasses.field(default_factory=list)  # "key=value" options that differ from the
    # scenario's and method's defaults (what the user chose); empty for the default configuration
    also: list = dataclasses.field(default_factory=list)  # selection.also's rule objects (``also_for``)

    def also_for(self, task: Any) -> list:
        """(rule, its default config) of each ``selection.also`` rule for this task: ``auto`` gives the
        oracle rules only where the task has a Retrain oracle; a named rule that reads the oracle on a
        scenario without one is a ConfigError."""
        auto = str(self.cfg.selection.also).strip() == "auto"
        out = []
        for rule in self.also:
            if rule.oracle and not task.scoring.has_oracle:
                if auto:
                    continue
                raise ConfigError(f"selection.also names {rule.name!r}, which reads the Retrain oracle; scenario "
                                  f"{task.scenario!r} has none. Use -o selection.also=none")
            out.append((rule, rule.Config() if rule.Config is not None else None))
        return out

    @property
    def run_name(self) -> str:
        """The method's folder in runs/: its name, plus a short hash of its variant when options differ,
        so variants never overwrite each other's records."""
        from .seeding import sha256_hex

        return self.method.name + (f"@{sha256_hex(self.variant)[:8]}" if self.variant else "")

    def to_dict(self) -> dict:
        from omegaconf import OmegaConf

        return OmegaConf.to_container(self.cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]

    @property
    def hash(self) -> str:
        return config_hash(self.to_dict())


# selection.strategy's choices, named once (selection.STRATEGIES); selection imports only errors
from .selection import STRATEGIES  # noqa: E402

Strategy = Choice("Strategy", {name: name for name in STRATEGIES})
# The strategy the suite had before the key existed: records without it ran it, and its runs
# leave the key out of the config hash, so they hash as those records do (issue 15).
LEGACY_STRATEGY = "grid"
# Keys added after records were made, with the value those records ran (what their absence means).
# A key at its legacy value is left out of the config hash, so an old record's configuration keeps its
# hash; ``resolve(..., protocol=1)`` fills the protocol-1 values in for a record that predates v2.
# key -> (legacy value, the protocol that changed its default: 0 = none, the default is the legacy one)
LEGACY: dict[str, tuple[str, int]] = {
    "selection.strategy": (LEGACY_STRATEGY, 0),
    "selection.target": ("edited", 2),  # PROTOCOL §5(c) v2: the original's Acc D_val
    "selection.also": ("none", 2),  # §5(d) v2: the oracle rules on every board
    "method.search_grid": ("v1", 2),  # §7.3 v2: the half-decade grid, (value, epoch) jointly
    "pool.subset": ("prefix", 2),  # §9.5 v2: random subsets, not the first n
    "pool.augment": ("v1", 2),  # §6.3 v2: the CPU pools translate
    "pool.linear": ("False", 0),  # §4.8: the standard pool, as every record before the key ran
}


# Suite keys added after records were made, left out of the hash at their default (what a record
# without the key ran): -o amp=bf16 hashes anew, fp32 hashes as before the key existed.
SUITE_LATE: dict[str, str] = {"amp": "fp32"}


def config_hash(d: dict) -> str:
    """The hash of a resolved config (``Resolved.to_dict``): without the UNHASHED keys, and without
    each ``LEGACY`` key at its legacy value (``selection.strategy=grid``, ``selection.target=edited``,
    ...), so configurations recorded before that key existed keep their hashes and a run with another
    value gets a new one."""
    d = {k: v for k, v in d.items() if k not in UNHASHED and not (k in SUITE_LATE and str(v) == SUITE_LATE[k])}
    for dotted, (old, _) in LEGACY.items():
        sec, key = dotted.split(".", 1)
        part = d.get(sec)
        if isinstance(part, dict) and key in part and str(part[key]) == old:
            d[sec] = {k: v for k, v in part.items() if k != key}
    return sha256_hex(d)


def also_rules(sel: Any, rules: Any, has_oracle: bool | None = None) -> list[str]:
    """The rule names ``selection.also`` gives (not the run's own rule), each a registered rule;
    ``auto`` is the oracle rules where the scenario has a Retrain oracle (``has_oracle``; None while
    resolving, before the task exists: nothing to check then)."""
    raw = str(sel.also).strip()
    if raw == "auto":
        names = ["oracle_avg_gap", "oracle_split_test"] if has_oracle else []
    elif raw in ("none", ""):
        names = []
    else:
        names = [n.strip() for n in raw.split(",") if n.strip()]
    for n in names:
        if n not in rules:
            raise ConfigError(f"selection.also names {n!r}, which is not a selection rule; give comma-separated "
                              f"rule names ({', '.join(rules.names())}), none, or auto")
    return [n for i, n in enumerate(names) if n != str(sel.name) and n not in names[:i]]


def legacy_layer(schema: dict, protocol: int) -> dict:
    """The values a record of ``protocol`` ran for keys that protocol predates (``LEGACY``), for the
    keys this configuration's schema has (``selection.target`` only where the rule is val_matched)."""
    out: dict = {}
    for dotted, (old, since) in LEGACY.items():
        sec, key = dotted.split(".", 1)
        if since > protocol and isinstance(schema.get(sec), dict) and key in schema[sec]:
            out.setdefault(sec, {})[key] = old
    return out


def resolve(
    host,
    *,
    method: str | None = None,
    scenario: str | None = None,
    file_layer: dict | None = None,
    overrides: list[str] | None = None,
    device_here: bool = True,
    protocol: int | None = None,
) -> Resolved:
    """Resolve the layered config for one (scenario, method) and validate every key and value.
    ``device_here=False`` checks only that ``device`` names a device, not that this machine has it
    (``reproduce`` skips a recorded GPU run on a machine without one). ``protocol``: the protocol of
    the record ``file_layer`` comes from; keys that protocol predates take the values it ran
    (``legacy_layer``), so the record resolves to its own hash."""
    from omegaconf import OmegaConf

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

    scen = host.scenarios.get(_pick("scenario", user, DEFAULT_SCENARIO))
    meth = host.methods.get(_pick("method", user, DEFAULT_METHOD))
    plugin_layers = [
        (f"scenario {scen.name!r}", _normalise(dict(scen.suite_defaults))),
        (f"method {meth.name!r}", _normalise(dict(meth.suite_defaults))),
    ]
    layers = plugin_layers + user
    rule = host.rules.get(_pick("selection", layers, SelectionCommon.name))

    Scen = section_class("ScenarioSection", [("name", str, scen.name)], scen.Config)
    Meth = section_class("MethodSection", [("name", str, meth.name)], meth.Config)
    Sel = section_class(
        "SelectionSection",
        [("name", str, rule.name), ("grid", str, SelectionCommon.grid), ("diagnostic", bool, False),
         ("strategy", Strategy, Strategy(SelectionCommon.strategy)), ("also", str, SelectionCommon.also)],
        rule.Config,
    )
    base = OmegaConf.structured(SuiteConfig)
    OmegaConf.set_struct(base, False)
    base.scenario = OmegaConf.structured(Scen)
    base.method = OmegaConf.structured(Meth)
    base.selection = OmegaConf.structured(Sel)
    OmegaConf.set_struct(base, True)
    schema = OmegaConf.to_container(base, enum_to_str=True)
    if protocol is not None:
        legacy = legacy_layer(schema, int(protocol))  # type: ignore[arg-type]
        if legacy:  # part of the defaults: an old record's variant is what it was
            plugin_layers.append((f"protocol {protocol} (the record's)", legacy))
            layers = plugin_layers + user
    cfg = base
    defaults: dict = {}
    for i, (where, layer) in enumerate(layers):
        if i == len(plugin_layers):
            defaults = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[assignment]
        _check_keys(layer, schema, where)  # type: ignore[arg-type]
        for k, v in layer.items():
            if isinstance(schema.get(k), dict) and not isinstance(v, dict):  # type: ignore[union-attr]
                ex = ", ".join(f"{n}: {d!r}" for n, d in list(schema[k].items())[:2])  # type: ignore[index]
                raise ConfigError(f"config key {k!r} (from {where}) is a section of keys, not {v!r}: "
                                  f"e.g. `{k}: {{{ex}}}` in a --config file, or -o {k}.KEY=VALUE")
        if "seeds" in layer:
            check_seeds(layer["seeds"], where)
        cfg = merge_layer(cfg, layer, where)
    if not defaults:
        defaults = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[assignment]
    check_suite(cfg, scen, device_here)
    if cfg.pool.linear and not getattr(meth, "uses_pool", False):
        raise ConfigError(f"pool.linear=true puts the fine-tune pool and its edits in θ_0's tangent space (PROTOCOL "
                          f"§4.8), but method {meth.name!r} does not read the pool; drop -o pool.linear, or pick a method "
                          "that merges the pool (`unlearnbench list methods`: Task Arithmetic and the merges)")
    also = [host.rules.get(n) for n in also_rules(cfg.selection, host.rules, has_oracle=True)]
    for sec, obj in (("scenario", scen), ("method", meth), ("selection", rule)):
        check = getattr(obj, "check_config", None)
        if check is not None:
            check(cfg[sec])
    OmegaConf.set_readonly(cfg, True)
    final = flatten(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    base_flat = flatten(defaults)
    variant = [f"{k}={final[k]}" for k in sorted(final)
               if k.split(".")[0] not in EXECUTION and base_flat.get(k) != final[k]]
    return Resolved(cfg, scen, meth, rule, [v.replace("selection.name=", "selection=") for v in variant], also=also)


def check_seeds(seeds: Any, where: str = "seeds") -> list[int]:
    """``seeds`` as a list of trials: non-empty, distinct, non-negative integers, or a ConfigError."""
    fix = "e.g. --seeds 0,1,2 or -o 'seeds=[0,1,2]' (in a --config file: `seeds: [0, 1, 2]`)"
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (list, tuple)):
        raise ConfigError(f"seeds (from {where}) must be a list of trial numbers, not {seeds!r}: {fix}")
    if not seeds:
        raise ConfigError(f"seeds (from {where}) is empty: give at least one trial, {fix}")
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int):
            try:
                s = int(str(s).strip())
            except ValueError:
                raise ConfigError(f"seeds (from {where}) must be integers >= 0, not {s!r}: {fix}") from None
        if s < 0:
            raise ConfigError(f"seeds (from {where}): trial {s} is negative; trials are integers >= 0, {fix}")
        out.append(s)
    dup = sorted({s for s in out if out.count(s) > 1})
    if dup:
        raise ConfigError(f"seeds (from {where}) lists trial {', '.join(map(str, dup))} more than once "
                          f"({list(out)}); each trial runs once, e.g. --seeds {','.join(map(str, dict.fromkeys(out)))}")
    return out


_DEVICE_FORMS = "cpu, cuda, cuda:N (N = a GPU index) or mps"


def check_device(device: str, here: bool = True) -> None:
    """``device`` is one torch can use (cpu, cuda, cuda:N, mps) and, with ``here``, one this machine
    has; else a ConfigError with the fix."""
    import re

    d = str(device)
    if d == "cpu":
        return
    m = re.fullmatch(r"cuda(?::(\d+))?", d)
    if m is None and d != "mps":
        raise ConfigError(f"device={d!r} is not a device: use {_DEVICE_FORMS}, e.g. -o device=cpu")
    if not here:
        return
    import torch

    if m is not None:
        if not torch.cuda.is_available():
            raise ConfigError(f"device={d} but no CUDA device is available here; use -o device=cpu")
        n = torch.cuda.device_count()
        if m.group(1) is not None and int(m.group(1)) >= n:
            raise ConfigError(f"device={d} but this machine has {n} CUDA device(s) (cuda:0 to cuda:{n - 1}); "
                              f"use -o device=cuda:0 or -o device=cpu")
    elif not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device=mps but no MPS (Apple GPU) device is available here; use -o device=cpu")


def check_grid(name: str, extra: Any = None) -> None:
    """``selection.grid`` names a known grid or is a valid ``start:stop:step``; a plain name the suite
    does not know may still be one a scenario's task brings (``Task.grids``), checked at run time."""
    from .selection import GRIDS, grid

    text = str(name)
    if ":" in text or text.strip() == "" or text in GRIDS or (extra and text in extra):
        grid(text, extra)


def check_suite(cfg: Any, scen: Any, device_here: bool = True) -> None:
    """The suite's own keys (seeds, threads, device, pool, selection.grid), validated as the config is
    resolved, so `unlearnbench config` refuses what `run` would, before anything trains."""
    check_seeds(list(cfg.seeds))
    threads = int(cfg.threads)
    if threads < 0:
        raise ConfigError(f"threads={threads} is negative: give a number of torch threads >= 1, or 0 for the "
                          "scenario's choice (e.g. -o threads=0)")
    check_device(str(cfg.device), device_here)
    from .training import AMP

    if str(cfg.amp) not in AMP:
        from .errors import unknown

        raise unknown("amp (training precision)", str(cfg.amp), AMP)
    size, name = int(cfg.pool.size), str(cfg.pool.name)
    if size < 0:
        raise ConfigError(f"pool.size={size} is negative: give the number of pool members to use, >= 1, "
                          "or 0 for all (e.g. -o pool.size=0)")
    subset, augment = str(cfg.pool.subset), str(cfg.pool.augment)
    if subset != "prefix" and not (subset.isdigit() and subset.isascii()):
        raise ConfigError(f"pool.subset={subset!r}: give a draw number 0, 1, 2, ... (which random size-n subset, "
                          "PROTOCOL §9.5) or prefix (the first n members, protocol 1), e.g. -o pool.subset=1")
    if augment not in POOL_AUGMENTS:
        from .errors import unknown

        raise unknown("pool.augment", augment, POOL_AUGMENTS)
    pools = getattr(scen, "pools", None)
    if isinstance(pools, dict) and pools:
        if name not in pools:
            from .errors import unknown

            raise unknown(f"pool of scenario {scen.name!r}", name, pools)
        n = len(pools[name])
        if size > n:
            raise ConfigError(f"pool.size={size} but pool {name!r} of scenario {scen.name!r} has {n} members: "
                              f"give 0 to {n} (0 = all), e.g. -o pool.size={n}")
        if subset != "prefix":
            from .recipe import subset_indices

            subset_indices(n, size or n, int(subset), 0, name)  # a draw that does not exist: refused now
    check_grid(str(cfg.selection.grid), getattr(scen, "grids", None))
    check_executor(cfg.executor)


def check_executor(ex: Any) -> None:
    """The executor section: counts that are counts, an address only where Ray reads one."""
    for key in ("workers", "threads_per_worker", "retries", "stack"):
        if int(ex[key]) < 0:
            raise ConfigError(f"executor.{key}={ex[key]} is negative: give a count >= 0 (0 = the default), "
                              f"e.g. -o executor.{key}=0")
    if float(ex.num_gpus) < 0:
        raise ConfigError(f"executor.num_gpus={ex.num_gpus} is negative: give the GPUs each job asks for, "
                          "e.g. -o executor.num_gpus=1 (or 0.5 to share one GPU between two jobs)")
    name = str(ex.name)
    if name != "ray" and (str(ex.address) or float(ex.num_gpus)):
        what = "executor.address" if str(ex.address) else "executor.num_gpus"
        raise ConfigError(f"{what} is read only by executor=ray, not executor={name}; add -o executor=ray "
                          f"(or drop {what})")


def check_kappa(kappa: Any, key: str = "selection.kappa") -> None:
    """A feasibility fraction κ: finite and in (0, 1]."""
    import math

    k = float(kappa)
    if not math.isfinite(k) or not 0 < k <= 1:
        raise ConfigError(f"{key}={kappa} is out of range: it must be a finite number in (0, 1], the fraction "
                          f"of the λ = 0 value kept (e.g. -o {key}=0.95)")


# How a run executes, not what it computes: never part of a variant's name.
EXECUTION = ("seeds", "threads", "device", "executor", "eval")


def flatten(d: Any, prefix: str = "") -> dict:
    """A nested config dict as {"section.key": value} (what variants are named by)."""
    if isinstance(d, dict):
        out: dict = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def options_of(cfg_class: type | None) -> list[dict]:
    """Name, type, default, help and source of each option of a plugin config dataclass
    (an enumerated option's type is its choices, ``a|b|c``)."""
    if cfg_class is None:
        return []
    out = []
    hints = typing.get_type_hints(cfg_class)
    for f in dataclasses.fields(cfg_class):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        h = hints.get(f.name, f.type)
        if isinstance(h, type) and issubclass(h, Enum):
            t, default = "|".join(h.__members__), default.name if isinstance(default, Enum) else default
        else:
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


