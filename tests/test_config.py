"""Layered typed config: precedence, typos that name close matches, hashing (DESIGN: config)."""
from __future__ import annotations

import pytest

from unlearnbench.config import resolve
from unlearnbench.errors import ConfigError


def test_defaults(host):
    r = resolve(host)
    assert r.scenario.name == "digits-10pct" and r.method.name == "negmerge" and r.rule.name == "val_matched"
    assert list(r.cfg.seeds) == [0, 1, 2] and r.cfg.selection.grid == "classifier"


def test_precedence_scenario_method_file_override(host, tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("selection:\n  kappa: 0.8\npool:\n  size: 5\n")
    r = resolve(host, file_layer={"selection": {"kappa": 0.8}, "pool": {"size": 5}},
                overrides=["pool.size=9"])
    assert r.cfg.selection.kappa == 0.8  # file beats the rule default
    assert r.cfg.pool.size == 9  # -o beats the file


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
    r = resolve(host)
    with pytest.raises(Exception):
        r.cfg.pool.size = 3
