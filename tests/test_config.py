"""Layered typed config: precedence, typos that name close matches, hashing (DESIGN: config)."""
from __future__ import annotations

import pytest

from unlearnbench.config import recorded_layer, resolve
from unlearnbench.errors import ConfigError


def test_defaults(host):
    r = resolve(host)
    assert r.scenario.name == "digits-10pct" and r.method.name == "negmerge" and r.rule.name == "val_matched"
    assert list(r.cfg.seeds) == [0, 1, 2] and r.cfg.selection.grid == "classifier"


def _layered_host(host):
    """The installed plugins plus a scenario and a method that bring their own defaults."""
    from unlearnbench import hookimpl
    from unlearnbench.methods.negmerge import NegMerge
    from unlearnbench.scenarios.digits import Digits

    class LayeredDigits(Digits):
        suite_defaults = {"selection": {"name": "val_matched", "kappa": 0.9}, "pool": {"size": 3}, "seeds": [7],
                          "threads": 1}

    class Layered(NegMerge):
        name = "layered"
        suite_defaults = {"selection": {"kappa": 0.85}, "pool": {"size": 4}, "threads": 2}

    class P:
        @hookimpl
        def register_scenarios(self, register):
            register(LayeredDigits("digits-layered", "random"))

        @hookimpl
        def register_methods(self, register):
            register(Layered())

    host.register(P(), "layers")
    return host


def test_precedence_suite_scenario_method_file_override(host, tmp_path):
    """suite defaults < scenario < method < --config FILE < -o, read from a real YAML file."""
    from unlearnbench.config import load_file

    host = _layered_host(host)
    f = tmp_path / "c.yaml"
    f.write_text("selection:\n  kappa: 0.8\npool:\n  size: 5\n")
    at = {"scenario": "digits-layered", "method": "layered"}
    r = resolve(host, **at)
    assert list(r.cfg.seeds) == [7]  # the scenario beats the suite's [0, 1, 2]
    assert r.cfg.threads == 2 and r.cfg.pool.size == 4 and r.cfg.selection.kappa == 0.85  # the method beats it
    assert r.variant == []  # the plugins' defaults are the baseline of a variant
    r = resolve(host, **at, file_layer=load_file(str(f)))
    assert r.cfg.selection.kappa == 0.8 and r.cfg.pool.size == 5  # the file beats the method
    r = resolve(host, **at, file_layer=load_file(str(f)), overrides=["pool.size=9"])
    assert r.cfg.pool.size == 9 and r.cfg.selection.kappa == 0.8 and list(r.cfg.seeds) == [7]  # -o beats the file
    assert r.variant == ["pool.size=9", "selection.kappa=0.8"]
    with pytest.raises(ConfigError, match="does not exist"):
        load_file(str(tmp_path / "missing.yaml"))


def test_cli_reads_the_config_file(tmp_path):
    import yaml
    from click.testing import CliRunner

    from unlearnbench.cli import main

    f = tmp_path / "c.yaml"
    f.write_text("selection:\n  kappa: 0.8\npool:\n  size: 5\n")
    r = CliRunner().invoke(main, ["config", "--config", str(f), "-o", "pool.size=9"])
    assert r.exit_code == 0, r.output
    shown = yaml.safe_load(r.output)
    assert shown["selection"]["kappa"] == 0.8 and shown["pool"]["size"] == 9
    f.write_text("pool:\n  sise: 5\n")
    r = CliRunner().invoke(main, ["config", "--config", str(f)])
    assert r.exit_code == 2 and "unknown config key 'pool.sise' (from --config file)" in r.output


def test_shorthand_and_rule_typed_section(host):
    r = resolve(host, overrides=["selection=oracle_avg_gap"])
    assert r.rule.name == "oracle_avg_gap" and r.rule.oracle
    with pytest.raises(ConfigError, match="unknown config key 'selection.kappa'"):
        resolve(host, overrides=["selection=oracle_avg_gap", "selection.kappa=0.9"])  # not that rule's option


def test_unknown_key_names_close_match(host):
    with pytest.raises(ConfigError, match="did you mean 'pool.size'"):
        resolve(host, overrides=["pool.sise=3"])
    with pytest.raises(ConfigError, match="did you mean 'selection'"):
        resolve(host, overrides=["selecton=val_matched"])


def test_unknown_plugins_name_close_matches(host):
    with pytest.raises(ConfigError, match="unknown method 'negmerg'; did you mean 'negmerge'"):
        resolve(host, method="negmerg")
    with pytest.raises(ConfigError, match="did you mean 'fmnist-10pct'"):
        resolve(host, scenario="fmnist-10")
    with pytest.raises(ConfigError, match="unknown selection rule 'val_match'"):
        resolve(host, overrides=["selection=val_match"])


def test_bad_value_type(host):
    with pytest.raises(ConfigError, match="pool.size|Integer"):
        resolve(host, overrides=["pool.size=many"])
    with pytest.raises(ConfigError, match="floor_split"):
        resolve(host, overrides=["selection.floor_split=test"])


def test_hash_is_stable_and_sensitive(host):
    a, b = resolve(host), resolve(host, overrides=["seeds=[5]"])
    assert a.hash == b.hash  # which trials run is not part of what a run computes
    assert resolve(host, overrides=["selection.kappa=0.9"]).hash != a.hash
    assert resolve(host, method="task-arithmetic").hash != a.hash


def test_resolved_config_is_read_only(host):
    from omegaconf.errors import ReadonlyConfigError

    r = resolve(host)
    with pytest.raises(ReadonlyConfigError):
        r.cfg.pool.size = 3


def test_enumerated_option_refuses_other_values_and_lists_the_choices(host):
    """An Enum-typed option: OmegaConf refuses a value outside it, the CLI exits 2 with the choices."""
    from click.testing import CliRunner

    from unlearnbench.cli import main

    for args, choices in ((["-o", "selection.floor_split=test"], "[val, retain]"),
                          (["-m", "negmerge", "-o", "method.mask=majority"], "[consensus, conflict, all]"),
                          (["-m", "finetune", "-o", "method.lr_search=maybe"], "[auto, on, off]")):
        r = CliRunner().invoke(main, ["config", *args])
        key = args[-1].split("=")[0]
        assert r.exit_code == 2 and key in r.output and f"expected one of {choices}" in r.output, r.output
        assert "Traceback" not in r.output


def test_enumerated_options_record_plain_strings(host):
    """Records, variants and hashes hold the option's string, exactly as before it was an Enum;
    YAML's booleans (`-o method.lr_search=off`) are read back as the words."""
    r = resolve(host, method="negmerge-min", overrides=["selection.floor_split=retain"])
    d = r.to_dict()
    assert type(d["method"]["value"]) is str and d["method"]["value"] == "min"
    assert type(d["selection"]["floor_split"]) is str and r.variant == ["selection.floor_split=retain"]
    assert r.cfg.method.value == "min" and str(r.cfg.method.mask) == "consensus"
    assert f"{r.cfg.method.by}" == "magnitude"
    for word, expect in (("off", "off"), ("false", "off"), ("on", "on"), ("yes", "on"), ("auto", "auto")):
        got = resolve(host, method="finetune", overrides=[f"method.lr_search={word}"])
        assert got.to_dict()["method"]["lr_search"] == expect
    assert resolve(host, method="finetune", file_layer={"method": {"lr_search": False}}).cfg.method.lr_search == "off"


def test_committed_records_resolve_to_their_hash_and_folder(host):
    """The config schema (Enum options included) still gives every committed record its recorded
    config hash and run folder: nothing recorded moved."""
    import json
    from pathlib import Path

    runs = Path(__file__).resolve().parents[1] / "leaderboards" / "runs"
    paths = sorted(runs.rglob("run.json"))
    assert len(paths) > 200
    for p in paths:
        rec = json.loads(p.read_text())
        r = resolve(host, file_layer=recorded_layer(rec))  # a v1 baseline: with the v1 search it ran
        assert r.hash == rec["config_hash"], p
        # the folder: its name under the defaults it ran with (a v1 baseline run today, search_grid=v1
        # being a variant, would go to a folder of its own)
        assert resolve(host, file_layer=rec["config"]).run_name == p.parent.parent.name, p
