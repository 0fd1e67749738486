"""selection.also (issue 16, PROTOCOL §5(d)): the oracle rules choose on the same curves as the run's own
rule, each record carries every rule's result, and the run's own result is the one it has alone."""
from __future__ import annotations

import pytest

from unlearnbench.config import resolve
from unlearnbench.runner import run_trial


def _run(host, store, tmp, method, *over):
    res = resolve(host, scenario="digits-10pct", method=method, overrides=["pool.size=3", *over])
    return run_trial(res, 0, store=store, runs_dir=tmp, data_root=None)


@pytest.mark.parametrize("method", ["negmerge", "task-arithmetic"])
def test_the_oracle_rules_ride_on_the_same_curves(host, session_store, tmp_path, method):
    from unlearnbench.rules import OracleAvgGap, OracleSplitTest

    both = _run(host, session_store, tmp_path / "auto", method)
    alone = _run(host, session_store, tmp_path / "none", method, "selection.also=none")
    # the run's own choice, and so its model, does not depend on which other rules looked
    assert both["weights_digest"]["unlearned"] == alone["weights_digest"]["unlearned"]
    assert both["lambda"] == alone["lambda"] and alone["by_rule"] is None
    assert both["config_hash"] != alone["config_hash"]  # but the record says what else ran
    by = both["by_rule"]
    assert set(by) == {"oracle_avg_gap", "oracle_split_test"}
    for name, rule in (("oracle_avg_gap", OracleAvgGap()), ("oracle_split_test", OracleSplitTest())):
        r = by[name]
        assert r["selected"] and r["oracle"] and set(r["metrics"]) == set(both["metrics"])
        assert r["gap"]["avg_gap"] >= 0 and len(r["weights_digest"]) == 64
        if method == "negmerge":  # the choice is a point of the recorded (union) curve, which holds its metrics
            curve = both["selection"]["curve"]
            assert r["lambda"] == curve[r["index"]]["lambda"]
            assert set(rule.needs(rule.Config(), None)) <= set(curve[0])
    rep = by["oracle_split_test"]["report"]
    assert rep["optimism"] == pytest.approx(rep["gap_b"] - rep["gap_a"])
    # on digits the selection-time subsamples are the whole sets (|D_r| < 5,000, |half A| < 2,000), so the
    # rule's score at its choice is the full gap on half A
    assert by["oracle_split_test"]["score"] == pytest.approx(rep["gap_a"], abs=1e-9)
    if method == "task-arithmetic":  # each rule picks its own best member from the same sweeps
        info = by["oracle_avg_gap"]["info"]
        scores = [s["score"] for s in info["member_scores"]]
        assert len(scores) == 3 and by["oracle_avg_gap"]["score"] == min(scores)


def test_a_result_no_rule_chose_is_the_same_under_every_rule(host, session_store, tmp_path):
    rec = _run(host, session_store, tmp_path, "finetune", "method.lr_search=off", "method.epochs=1")
    assert rec["selection"] is None
    assert rec["by_rule"] == {"oracle_avg_gap": {"rule": "oracle_avg_gap", "selected": False},
                              "oracle_split_test": {"rule": "oracle_split_test", "selected": False}}


def test_also_names_are_checked(host):
    from unlearnbench.errors import ConfigError

    with pytest.raises(ConfigError, match="selection.also names 'nope'"):
        resolve(host, overrides=["selection.also=nope"])
    res = resolve(host, overrides=["selection.also=oracle_avg_gap,val_matched,oracle_avg_gap"])
    assert [r.name for r in res.also] == ["oracle_avg_gap"]  # the run's own rule and repeats dropped


def test_a_search_serves_every_rule_from_the_same_trained_points(host, session_store, tmp_path):
    """The §7.3 v2 search trains each (value, epoch) once; the oracle rules choose among the same points
    (``Selection.states``), and the run's own choice does not move."""
    over = ["method.lr_search=on", "method.epochs=2"]
    both = _run(host, session_store, tmp_path / "auto", "finetune", *over)
    alone = _run(host, session_store, tmp_path / "none", "finetune", *over, "selection.also=none")
    assert both["weights_digest"]["unlearned"] == alone["weights_digest"]["unlearned"]
    assert both["selection"]["params"]["chosen"] == alone["selection"]["params"]["chosen"]
    curve = both["selection"]["curve"]
    assert len(curve) == len(alone["selection"]["curve"]) and "acc_test" in curve[0] and "acc_test" not in \
        alone["selection"]["curve"][0]
    for name in ("oracle_avg_gap", "oracle_split_test"):
        r = both["by_rule"][name]
        assert r["selected"] and set(r["chosen"]) <= {"lr", "epoch"}
        assert {k: curve[r["index"]].get(k) for k in r["chosen"]} == r["chosen"]
        assert set(r["metrics"]) == set(both["metrics"])


def test_no_split_is_forwarded_twice_through_the_same_weights_after_the_choice(host, session_store, tmp_path,
                                                                               monkeypatch):
    """The records' per-rule rows (rule_result): rules that chose the same weights are evaluated once, and
    oracle_split_test's report on test halves A and B reuses the logits of its model's full metrics (D_r,
    D_f), so no split goes through one set of weights twice (on fmnist D_r alone is 48,600 images)."""
    from unlearnbench import evaluate, runner
    from unlearnbench.store import tensor_digest

    seen, inside = [], {"on": False}
    real_logits, real_rule_result = evaluate.logits, runner.rule_result

    def logits(model, x, device="cpu"):
        if inside["on"]:
            seen.append((tensor_digest(model.state_dict()), len(x)))
        return real_logits(model, x, device)

    def rule_result(*a, **kw):
        inside["on"] = True
        try:
            return real_rule_result(*a, **kw)
        finally:
            inside["on"] = False

    monkeypatch.setattr(evaluate, "logits", logits)
    monkeypatch.setattr(runner, "rule_result", rule_result)
    rec = _run(host, session_store, tmp_path, "negmerge")
    assert set(rec["by_rule"]) == {"oracle_avg_gap", "oracle_split_test"}
    assert rec["by_rule"]["oracle_split_test"]["report"]["gap_a"] >= 0
    assert seen and len(seen) == len(set(seen)), seen
