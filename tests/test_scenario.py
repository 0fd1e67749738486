"""unlearnbench.scenario: the Task a scenario builds and the Scoring it declares (DESIGN, "The core
names no family"): a new family brings its scoring, augmentations and λ grids with no core edit."""
from __future__ import annotations

from types import MappingProxyType

import pytest
import torch

from unlearnbench import ConfigError, Recipe, Scoring
from unlearnbench.report import scoring_of
from unlearnbench.selection import grid


def _task(host, **fields):
    from dataclasses import replace

    scen = host.scenarios.get("digits-10pct")
    from unlearnbench.config import resolve

    res = resolve(host, scenario="digits-10pct", method="retrain")
    return replace(scen.build_task(res.cfg.scenario, 0, None), **fields)


def test_classifier_defaults_are_the_protocol():
    s = Scoring()
    assert s.report == ("retain", "forget", "test", "val") and s.mia and s.has_oracle and s.rank == "avg_gap"
    assert s.metric_splits("acc_val_retain") == {"val"} and s.metric_splits("mia") == {"forget", "retain", "test"}
    assert s.metric_splits("acc_train") == {"forget", "retain"}
    with pytest.raises(ConfigError, match="unknown metric 'acc_nowhere'"):
        s.metric_splits("acc_nowhere")


def test_a_scenario_maps_its_metrics_onto_the_board_and_the_record_keeps_it():
    s = Scoring(report=("f_test", "c_test"), mia=False, has_oracle=False, rank="acc_forget",
                board=(("acc_retain", "acc_c_test"), ("acc_forget", "acc_f_test")), legend="my columns",
                split_roles=MappingProxyType({"f_test": frozenset({"test"}), "c_test": frozenset({"test"})}))
    assert s.to_board({"acc_c_test": 60.0, "acc_f_test": 20.0}) == {
        "acc_c_test": 60.0, "acc_f_test": 20.0, "acc_retain": 60.0, "acc_forget": 20.0}
    assert s.metric_splits("acc_f_test") == {"test"}
    with pytest.raises(ConfigError):  # the classifier's splits are not this scenario's
        s.metric_splits("acc_val")
    back = scoring_of({"scoring": s.record()})  # what the report rebuilds from run.json
    assert (back.board, back.rank, back.legend, back.summary) == (s.board, s.rank, s.legend, s.summary)
    assert scoring_of({}) == Scoring()  # a record from before Scoring was recorded: the classifier's


def test_a_task_brings_its_own_augmentations(host):
    def upside_down(xb, gen):
        return xb.flip(-2)

    task = _task(host, augmentations={"upside_down": upside_down})
    rec = Recipe(epochs=1, batch=4, lr=0.1, augment="upside_down")
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert torch.equal(task.augment_for(rec)(x, torch.Generator()), x.flip(-2))
    assert task.augment_for(Recipe(epochs=1, batch=4, lr=0.1, augment="none")) is None  # the suite's names stay
    with pytest.raises(ConfigError, match="upside_down"):  # an unknown name lists this task's names too
        task.augment_for(Recipe(epochs=1, batch=4, lr=0.1, augment="sideways"))
    plain = _task(host)
    with pytest.raises(ConfigError, match="unknown augmentation 'upside_down'"):  # only that task has it
        plain.augment_for(rec)


def test_a_task_brings_its_own_lambda_grids(host):
    task = _task(host, grids={"coarse": [0.0, 0.5, 1.0]})
    assert grid("coarse", task.grids) == [0.0, 0.5, 1.0]
    assert grid("unit", task.grids)[-1] == 1.0 and len(grid("classifier", task.grids)) == 41  # the suite's too
    assert grid("0:1:0.25") == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ConfigError, match="coarse"):
        grid("fine", task.grids)


def test_a_scenario_without_an_oracle_refuses_methods_that_read_retain(host, tmp_path, session_store):
    """The runner's refusal is generic: it reads Scoring.has_oracle and the method's ``uses``."""
    from unlearnbench.config import resolve
    from unlearnbench.runner import run_trial

    res = resolve(host, scenario="digits-10pct", method="finetune")
    scen = res.scenario
    real = scen.build_task

    def no_oracle(*a, **kw):
        from dataclasses import replace

        return replace(real(*a, **kw), scoring=Scoring(has_oracle=False))

    scen.build_task = no_oracle  # an instance attribute: this host's scenario only
    try:
        with pytest.raises(ConfigError, match="does not have .*used splits do not include retain"):
            run_trial(res, 0, store=session_store, runs_dir=tmp_path, data_root=None)
    finally:
        del scen.build_task
