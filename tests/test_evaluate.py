"""The evaluator (PROTOCOL §8): which data each metric reads, and how few images a measurement
forwards (identical splits once, subsets from their superset's pass) with the same numbers."""
from __future__ import annotations

import pytest

from unlearnbench.errors import ConfigError
from unlearnbench.scenario import Scoring

metric_splits = Scoring().metric_splits  # the classifier split roles


def test_metric_splits_name_the_declared_data():
    assert metric_splits("acc_forget") == {"forget"}
    assert metric_splits("acc_val_retain") == {"val"}  # D_val^r is part of D_val
    assert metric_splits("acc_retain_floor") == {"retain"}
    assert metric_splits("acc_train") == {"forget", "retain"}
    assert metric_splits("acc_test_forget_class") == {"test"}
    assert metric_splits("mia") == {"forget", "retain", "test"}  # members ⊂ D_r, non-members ⊂ D_test, D_f
    for bad in ("acc_nope", "loss_forget", "acc"):
        with pytest.raises(ConfigError, match="unknown metric"):
            metric_splits(bad)


def test_identical_splits_are_forwarded_once(host):
    """Under random forgetting D_val^r is D_val: a λ sweep pays for one pass."""
    import torch

    from unlearnbench.config import resolve
    from unlearnbench.evaluate import Evaluator

    res = resolve(host, scenario="digits-10pct", method="retrain")
    task = res.scenario.build_task(res.cfg.scenario, 0, None)
    assert task.indices("val") == task.indices("val_retain")
    torch.manual_seed(0)
    model = task.new_model()
    ev = Evaluator(task)
    got = ev.measure(model, ["acc_val", "acc_val_retain"])
    assert ev.forwarded == task.manifest["sizes"]["val"] and got["acc_val"] == got["acc_val_retain"]
    ev.measure(model, ["acc_forget"])
    assert ev.forwarded == task.manifest["sizes"]["val"] + task.manifest["sizes"]["forget"]


def test_evaluator_takes_subset_splits_from_the_superset_pass(host):
    """Class-wise selection reads D_f, D_val and D_val^r ⊂ D_val; the final evaluation reads the MIA
    members ⊂ D_r. Each subset's logits come from its superset's pass, with the same numbers as a
    pass of its own, and the images forwarded drop accordingly."""
    import torch

    from unlearnbench.config import resolve
    from unlearnbench.evaluate import Evaluator
    from unlearnbench.metrics import accuracy, logits

    res = resolve(host, scenario="digits-class", method="retrain")
    task = res.scenario.build_task(res.cfg.scenario, 0, None)
    torch.manual_seed(0)
    model = task.new_model()
    size = task.manifest["sizes"]

    ev = Evaluator(task)
    names = ["acc_forget", "acc_val", "acc_val_retain"]
    got = ev.measure(model, names)
    assert ev.forwarded == size["forget"] + size["val"]  # not + val_retain
    for n in names:
        x, y = task.tensors(n[4:])
        assert got[n] == accuracy(logits(model, x), y)
    assert 0 < size["val_retain"] < size["val"]

    ev = Evaluator(task)
    final = ev.measure(model, ev.report_names())
    distinct = {"retain", "forget", "test", "val", "test_forget_class", "mia_nonmembers"}
    assert ev.forwarded == sum(size[s] for s in distinct if s != "mia_nonmembers" or
                               task.manifest["splits"]["mia_nonmembers"] != task.manifest["splits"]["test"])
    assert set(task.manifest["splits"]["mia_members"]) <= set(task.manifest["splits"]["retain"])
    assert final["acc_test_forget_class"] == accuracy(logits(model, task.tensors("test_forget_class")[0]),
                                                      task.tensors("test_forget_class")[1])
