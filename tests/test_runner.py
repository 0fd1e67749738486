"""The runner (DESIGN: runner): the Used-splits column, threads, and the sweep that skips recorded
(config, trial) cells and resumes after an interruption. Whole runs are tests/test_runs.py's."""
from __future__ import annotations

import json

import pytest

from unlearnbench.report.records import RecordError
from unlearnbench.runner import pick_threads, recorded, run_dir, used_splits

from helpers import m, rec


class _Method:
    def __init__(self, uses, selects=True):
        self.uses, self.selects = frozenset(uses), selects


def test_used_splits_count_the_rule_only_when_it_selected():
    from unlearnbench.rules import OracleAvgGap, ValMatched

    val = ValMatched.Config()
    assert used_splits(_Method({"retain"}), ValMatched(), val, None) == "forget+retain+val"  # canonical order
    assert used_splits(_Method({"retain"}), ValMatched(), val, None, selected=False) == "retain"  # search off
    assert used_splits(_Method({"retain"}, selects=False), ValMatched(), val, None) == "retain"  # Retrain
    oracle = used_splits(_Method({"forget"}), OracleAvgGap(), OracleAvgGap.Config(), None)
    assert oracle == "forget+retain+val+test"  # the retrain model is not a split


def test_threads_never_exceed_the_free_cores():
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert pick_threads(0, 1) == 1  # 0: the scenario's choice
    assert pick_threads(10_000, 1) == cores and pick_threads(0, 10_000) == cores
    assert pick_threads(1, 8) == 1  # an explicit request wins over the scenario's


def test_recorded_means_this_config_and_trial_on_disk(host, tmp_path):
    from unlearnbench.config import resolve

    res = resolve(host, overrides=["pool.size=3"])
    path = run_dir(tmp_path, res.scenario.name, res.run_name, 1) / "run.json"
    assert not recorded(tmp_path, res, 1)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(rec(res.method.name, 1, m(100, 95, 95, 10), chash=res.hash)))
    assert recorded(tmp_path, res, 1) and not recorded(tmp_path, res, 0)
    path.write_text(json.dumps(rec(res.method.name, 1, m(100, 95, 95, 10), chash="another")))
    assert not recorded(tmp_path, res, 1)  # the same folder, another config: run again
    said = []
    for bad in ('{"config_hash": "' + res.hash + '", "tri', "[1, 2]", "{}",  # torn by an interruption, ...
                json.dumps({"config_hash": res.hash, "trial": 1})):  # ... or no result in it
        path.write_text(bad)
        assert not recorded(tmp_path, res, 1, warn=said.append)  # a bad record is not a result: run again
        with pytest.raises(RecordError, match="run.json"):
            recorded(tmp_path, res, 1, strict=True)
    assert len(said) == 4 and all(str(path) in s for s in said)


@pytest.mark.slow
def test_sweep_skips_recorded_and_resumes(host, session_store, tmp_path):
    from unlearnbench.config import resolve
    from unlearnbench.runner import sweep_grid

    res = [resolve(host, method=mm, overrides=["pool.size=3"]) for mm in ("negmerge", "uniform")]
    first = sweep_grid(res, [0, 1], store=session_store, runs_dir=tmp_path, data_root=None, echo=lambda s: None)
    assert first == {"ran": 4, "skipped": 0, "failed": 0}
    again = sweep_grid(res, [0, 1], store=session_store, runs_dir=tmp_path, data_root=None, echo=lambda s: None)
    assert again == {"ran": 0, "skipped": 4, "failed": 0}
    (tmp_path / res[1].scenario.name / res[1].run_name / "seed-1" / "run.json").unlink()  # as if interrupted there
    resumed = sweep_grid(res, [0, 1], store=session_store, runs_dir=tmp_path, data_root=None, echo=lambda s: None)
    assert resumed == {"ran": 1, "skipped": 3, "failed": 0}
    changed = [resolve(host, method="negmerge", overrides=["pool.size=4"])]  # another config hash: runs again
    assert sweep_grid(changed, [0], store=session_store, runs_dir=tmp_path, data_root=None,
                      echo=lambda s: None)["ran"] == 1
