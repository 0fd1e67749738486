"""Layered typed config: precedence, typos that name close matches, hashing (DESIGN: config)."""
from __future__ import annotations

import pytest

from unlearnbench.config import resolve
from unlearnbench.errors import ConfigError


def test_defaults(host):
    r = resolve(host)
    assert r.scenario.name == "digits-class" and r.method.name == "negmerge" and r.rule.name == "val_matched"
    assert (r.cfg.pool.subset, r.cfg.pool.augment) == ("0", "pool")  # PROTOCOL §9.5, §6.3 v2
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

    runs = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "protocol-v1" / "runs"
    paths = sorted(runs.rglob("run.json"))
    assert len(paths) > 200
    for p in paths:
        rec = json.loads(p.read_text())
        r = resolve(host, file_layer=rec["config"], protocol=rec.get("protocol", 1))
        assert (r.hash, r.run_name) == (rec["config_hash"], p.parent.parent.name), p


def test_v1_pools_stay_reachable_by_name_and_keep_their_hash(host):
    """v2 pools (random subsets §9.5, translation §6.3) hash anew; pool.subset=prefix and
    pool.augment=v1 are protocol 1's pools, and a protocol-1 record resolves to its own hash."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "protocol-v1" / "runs" / "digits-10pct"
    rec = json.loads((path / "negmerge@0b126ac3" / "seed-0" / "run.json").read_text())
    assert rec["variant"] == ["pool.size=10"] and "protocol" not in rec
    v1 = resolve(host, file_layer=rec["config"], protocol=1)
    assert (v1.cfg.pool.subset, v1.cfg.pool.augment) == ("prefix", "v1") and v1.variant == ["pool.size=10"]
    assert v1.hash == rec["config_hash"]
    v2 = resolve(host, file_layer=rec["config"])  # the same options under v2's defaults: another computation
    assert v2.hash != rec["config_hash"]
    named = resolve(host, file_layer=rec["config"], overrides=["pool.subset=prefix", "pool.augment=v1",
                                                              "selection.target=edited", "selection.also=none"])
    assert named.hash == rec["config_hash"]
    drawn = [resolve(host, scenario="digits-10pct", overrides=["pool.size=10", f"pool.subset={d}"]) for d in (0, 1, 2)]
    assert len({r.hash for r in drawn}) == 3 and drawn[1].variant == ["pool.size=10", "pool.subset=1"]


@pytest.mark.parametrize("over, match", [
    (["pool.subset=first"], "pool.subset='first': give a draw number"),
    (["pool.subset=-1"], "give a draw number"),
    (["pool.augment=none"], "unknown pool.augment 'none'"),
    (["pool.subset=1"], "one subset only"),  # the whole pool (size 0) has one subset
    (["pool.size=26", "pool.subset=27"], "only 27 distinct subsets"),
])
def test_bad_pool_subsets_and_augmentations_are_refused(host, over, match):
    with pytest.raises(ConfigError, match=match):
        resolve(host, overrides=over)
