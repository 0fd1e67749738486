"""The built-in selection rules of PROTOCOL §5 on hand-made λ-curves: what each chooses, what it
counts as feasible, when it stops, and what it reads."""
from __future__ import annotations

import dataclasses

import pytest

from unlearnbench.rules import ControlThreshold, OracleAvgGap, OracleAvgGapVal, ValMatched
from unlearnbench.selection import sweep


class _Task:
    from unlearnbench.scenario import Scoring

    class_wise = False
    scoring = Scoring()


def _run_sweep(rule, cfg, table, reference=None, lambdas=None, also=()):
    """sweep over ``lambdas`` (default: the table's λs) with ``table`` (λ -> metrics) as the model;
    returns the Selection and the λs set, in order."""
    state = {}
    calls = []

    def set_lambda(lam):
        state["lam"] = lam
        calls.append(lam)

    return sweep(set_lambda, lambda names: {n: table[state["lam"]][n] for n in names},
                 sorted(table) if lambdas is None else lambdas, rule, cfg, _Task(), reference, rule.reads,
                 _Task.scoring.metric_splits, also=also), calls


def test_control_threshold_stops_at_first_violation():
    table = {0.0: {"acc_forget": 90, "acc_val_retain": 100}, 0.5: {"acc_forget": 60, "acc_val_retain": 97},
             1.0: {"acc_forget": 40, "acc_val_retain": 96}, 1.5: {"acc_forget": 10, "acc_val_retain": 80},
             2.0: {"acc_forget": 5, "acc_val_retain": 99}}
    cfg = ControlThreshold.Config()
    sel, calls = _run_sweep(ControlThreshold(), cfg, table)
    assert calls == [0.0, 0.5, 1.0, 1.5] and sel.evals == 4  # nothing evaluated past the violation
    assert sel.lam == 1.0 and sel.score == 40
    sel, calls = _run_sweep(ControlThreshold(), dataclasses.replace(cfg, early_stop=False), table)
    assert len(calls) == 5 and sel.lam == 2.0 and sel.grid_edge


def test_val_matched_random_and_floor():
    table = {0.0: {"acc_forget": 100, "acc_val": 90, "acc_val_retain": 90},
             0.5: {"acc_forget": 91, "acc_val": 89, "acc_val_retain": 89},
             1.0: {"acc_forget": 88, "acc_val": 88, "acc_val_retain": 84}}  # 84 < 0.95·90: infeasible
    sel, _ = _run_sweep(ValMatched(), ValMatched.Config(), table)
    assert sel.lam == 0.5 and sel.score == 1  # v2: |91 − 90|, the original's Acc D_val
    sel, _ = _run_sweep(ValMatched(), ValMatched.Config(target="edited"), table)
    assert sel.lam == 0.5 and sel.score == 2  # v1: |91 − 89|, the edited model's


def test_oracle_rule_minimises_avg_gap():
    ref = {"acc_retain": 100, "acc_forget": 90, "acc_test": 90, "mia": 10}
    table = {0.0: {"acc_retain": 100, "acc_forget": 100, "acc_test": 91, "mia": 0},
             1.0: {"acc_retain": 99, "acc_forget": 91, "acc_test": 90, "mia": 9},
             2.0: {"acc_retain": 80, "acc_forget": 80, "acc_test": 80, "mia": 30}}
    sel, _ = _run_sweep(OracleAvgGap(), OracleAvgGap.Config(subsample=False), table, reference=ref)
    assert sel.lam == 1.0 and sel.score == pytest.approx(0.75) and sel.oracle


def test_oracle_rule_selects_on_the_subsamples_against_retrain_on_the_same():
    """PROTOCOL §5(d): during selection Acc D_r is the 5,000-sample floor split and MIA the ≤ 2,000 +
    2,000 subsample, and Retrain's reference is measured on the same subsamples."""
    rule = OracleAvgGap()
    assert rule.needs(rule.Config(), _Task()) == ["acc_retain_floor", "acc_forget", "acc_test", "mia_sel"]
    ref = {"acc_retain_floor": 100, "acc_forget": 90, "acc_test": 90, "mia_sel": 10,
           "acc_retain": 0, "mia": 99}  # the full-set values must not be read
    curve = [{"acc_retain_floor": 100, "acc_forget": 100, "acc_test": 91, "mia_sel": 0},
             {"acc_retain_floor": 99, "acc_forget": 91, "acc_test": 90, "mia_sel": 9}]
    assert rule.choose(curve, rule.Config(), _Task(), ref) == (1, pytest.approx(0.75))


def test_split_test_rule_reports_both_halves_and_the_optimism():
    from unlearnbench.rules import OracleSplitTest

    rule = OracleSplitTest()
    assert rule.oracle and rule.needs(rule.Config(), _Task()) == ["acc_retain_floor", "acc_forget", "acc_test_a",
                                                                  "mia_sel_a"]
    got = {"acc_retain": 99, "acc_forget": 91, "acc_test_a": 90, "acc_test_b": 87, "mia_a": 9, "mia_b": 5}
    ref = {"acc_retain": 100, "acc_forget": 90, "acc_test_a": 90, "acc_test_b": 90, "mia_a": 10, "mia_b": 10}
    out = rule.final_report(lambda names: {n: got[n] for n in names}, lambda names: {n: ref[n] for n in names})
    assert out["gap_a"] == pytest.approx((1 + 1 + 0 + 1) / 4) and out["gap_b"] == pytest.approx((1 + 1 + 3 + 5) / 4)
    assert out["optimism"] == pytest.approx(out["gap_b"] - out["gap_a"])


def test_val_matched_v2_ties_go_to_the_higher_floor_then_the_smaller_lambda():
    """PROTOCOL §10.2 #46: class-wise, Acc D_f = 0 at several λ; v1 took the smallest, v2 the one that
    keeps the most of D_val^r (target=edited keeps v1's ties)."""
    curve = [{"acc_forget": 100, "acc_val": 90, "acc_val_retain": 90},
             {"acc_forget": 0, "acc_val": 80, "acc_val_retain": 88},
             {"acc_forget": 0, "acc_val": 82, "acc_val_retain": 89},
             {"acc_forget": 0, "acc_val": 81, "acc_val_retain": 89}]
    rule = ValMatched()
    assert rule.choose(curve, rule.Config(), _ClassWise(), None) == (2, 0)
    assert rule.choose(curve, rule.Config(target="edited"), _ClassWise(), None) == (1, 0)


def test_val_matched_extends_the_grid_once_when_the_last_lambda_wins():
    """PROTOCOL §5(c) v2: λ* = max Λ and feasible → the same step on to 2·max Λ, once; the record says
    grid_extended, and grid_edge when λ* is still the last point."""
    from unlearnbench.selection import extension

    lambdas = [0.0, 0.5, 1.0]
    assert extension(lambdas) == [1.5, 2.0] and extension([round(0.05 * i, 2) for i in range(41)])[-1] == 4.0
    table = {lam: {"acc_forget": 100 - 3 * i, "acc_val": 90, "acc_val_retain": 90}  # |Acc D_f − 90|: 10, 7, 4, 1, 2
             for i, lam in enumerate([0.0, 0.5, 1.0, 1.5, 2.0])}
    sel, calls = _run_sweep(ValMatched(), ValMatched.Config(), table, lambdas=lambdas)
    assert calls == [0.0, 0.5, 1.0, 1.5, 2.0] and sel.lam == 1.5 and sel.params["grid_extended"]
    assert not sel.grid_edge and sel.evals == 5
    sel, calls = _run_sweep(ValMatched(), ValMatched.Config(target="edited"), table, lambdas=lambdas)
    assert calls == lambdas and sel.lam == 1.0 and sel.grid_edge  # v1: no extension
    table[2.0]["acc_forget"] = 90  # best at 2·max Λ: the choice stays at the edge
    sel, _ = _run_sweep(ValMatched(), ValMatched.Config(), table, lambdas=lambdas)
    assert sel.lam == 2.0 and sel.grid_edge and sel.params["grid_extended"]


class _Spy(ValMatched):
    """val_matched that writes down every metric name it was shown."""

    name = "spy"

    def __init__(self):
        self.seen = set()

    def feasible(self, curve, cfg, task, baseline=None):
        for p in curve + [baseline or {}]:
            self.seen |= set(p)
        return super().feasible(curve, cfg, task, baseline)

    def choose(self, curve, cfg, task, reference, baseline=None):
        for p in curve + [baseline or {}]:
            self.seen |= set(p)
        return super().choose(curve, cfg, task, reference, baseline)


def test_a_rule_sees_only_its_metrics_on_a_shared_curve():
    """Issue 16 acceptance 1: one sweep measures the union of its rules' metrics, once per λ, and each
    rule chooses with only the metrics it declared visible, even though the curve holds the others:
    the run's own choice is the one it makes alone, and the other rules' land in ``also``."""
    from unlearnbench.rules import OracleSplitTest
    from unlearnbench.selection import RuleUse

    names = ["acc_forget", "acc_val", "acc_val_retain", "acc_retain_floor", "acc_test", "mia_sel", "acc_test_a",
             "mia_sel_a"]
    lambdas = [0.0, 0.5, 1.0, 1.5, 2.0]
    table = {lam: {n: 100 - (7 + j) * i * (n != "acc_val_retain") for j, n in enumerate(names)}
             for i, lam in enumerate(lambdas)}
    for lam in lambdas:
        table[lam]["acc_val"] = 90
    ref = dict(table[1.0])  # the oracles' optimum inside the grid (no extension)
    alone_spy = _Spy()
    alone, _ = _run_sweep(alone_spy, ValMatched.Config(), table, lambdas=lambdas)
    spy = _Spy()
    asked = []
    also = [RuleUse(OracleAvgGap(), OracleAvgGap.Config(), ref, OracleAvgGap.reads),
            RuleUse(OracleSplitTest(), OracleSplitTest.Config(), ref, OracleSplitTest.reads)]
    state = {}
    sel = sweep(lambda lam: state.update(lam=lam),
                lambda ns: asked.append((state["lam"], list(ns))) or {n: table[state["lam"]][n] for n in ns},
                lambdas, spy, ValMatched.Config(), _Task(), None, spy.reads, _Task.scoring.metric_splits, also=also)
    assert spy.seen == alone_spy.seen == {"lambda", "acc_forget", "acc_val", "acc_val_retain"}
    assert (sel.lam, sel.score, sel.index) == (alone.lam, alone.score, alone.index)
    for lam in lambdas:  # each metric at most once per λ (the oracle rules' in stages: _Pruner)
        got = [n for at, ns in asked if at == lam for n in ns]
        assert len(got) == len(set(got)) and set(got) <= set(names)
    assert {n for at, ns in asked if at == 0.0 for n in ns} == set(names)  # the first point: the union
    assert set(sel.curve[0]) == {"lambda", "acc_forget", "acc_val", "acc_val_retain"}  # the method's view
    full = sel.summary()["curve"]
    assert set(full[0]) == {"lambda", *names}  # the record keeps every rule's metrics
    assert set(sel.also) == {"oracle_avg_gap", "oracle_split_test"} and sel.also["oracle_avg_gap"]["oracle"]
    for name, rule in (("oracle_avg_gap", OracleAvgGap()), ("oracle_split_test", OracleSplitTest())):
        # against every metric at every λ (the table): the oracle rules' pruned points change no choice
        idx, score = rule.choose([{n: table[p["lambda"]][n] for n in rule.needs(rule.Config(), _Task())}
                                  for p in full], rule.Config(), _Task(), ref)
        assert (sel.also[name]["index"], sel.also[name]["score"]) == (idx, pytest.approx(score))


def test_pruned_oracle_rules_choose_exactly_as_fully_measured_ones():
    """The oracle rules of ``selection.also`` are measured in stages (Acc D_f, Acc D_r, Acc D_test, MIA) and a
    point stops being measured for a rule once ¼·Σ of its known |Δ|s exceeds the rule's best score so far
    (``selection._Pruner``): on random curves every rule's choice and score equal those of the same rules
    measured in full at every λ, and the MIAs (the SVC fits) are measured at fewer points."""
    import random

    from unlearnbench.rules import OracleSplitTest
    from unlearnbench.selection import PRUNED, RuleUse, extension

    class Whole(OracleAvgGap):  # the same rule, never staged: every metric at every point
        def stages(self, cfg, task):
            return None

    class WholeSplit(OracleSplitTest):
        def stages(self, cfg, task):
            return None

    names = ["acc_forget", "acc_val", "acc_val_retain", "acc_retain_floor", "acc_test", "mia_sel", "acc_test_a",
             "mia_sel_a"]
    lambdas = [round(0.1 * i, 1) for i in range(21)]
    skipped = 0
    for seed in range(40):
        rnd = random.Random(seed)
        table = {lam: {n: rnd.choice([rnd.uniform(0, 100), 50.0]) for n in names}
                 for lam in lambdas + extension(lambdas)}  # a choice at the end extends the grid
        ref = {n: rnd.uniform(0, 100) for n in names}
        runs = []
        for rules in ((OracleAvgGap(), OracleSplitTest()), (Whole(), WholeSplit())):
            asked, state = [], {}
            also = [RuleUse(r, r.Config(), ref, r.reads) for r in rules]
            sel = sweep(lambda lam: state.update(lam=lam),
                        lambda ns: asked.extend(ns) or {n: table[state["lam"]][n] for n in ns},
                        lambdas, ValMatched(), ValMatched.Config(), _Task(), None, ValMatched.reads,
                        _Task.scoring.metric_splits, also=also)
            runs.append((sel, asked))
        (pruned, asked_p), (whole, asked_w) = runs
        for name in ("oracle_avg_gap", "oracle_split_test"):
            assert pruned.also[name] == whole.also[name]
        assert (pruned.lam, pruned.index) == (whole.lam, whole.index)
        assert asked_w.count("mia_sel") == len(whole.summary()["curve"])  # every point, extension included
        skipped += asked_w.count("mia_sel") - asked_p.count("mia_sel")
        for p in pruned.summary()["curve"]:
            if "oracle_avg_gap" in p.get(PRUNED, ()):
                assert "mia_sel" not in p  # what the record says was not measured, was not
    assert skipped > 0


def test_nothing_feasible_picks_least_damage_not_a_collapse():
    """In a learning-rate search nothing may keep the val floor; a collapsed model (Acc Df ≈ Acc Dval
    ≈ chance) must not win on |Acc Df − Acc Dval| then."""
    base = {"acc_forget": 100, "acc_val": 95, "acc_val_retain": 95}
    curve = [{"acc_forget": 60, "acc_val": 80, "acc_val_retain": 80},  # damaged, but far less
             {"acc_forget": 10, "acc_val": 10, "acc_val_retain": 10}]  # collapsed: |Df - Dval| = 0
    idx, _ = ValMatched().choose(curve, ValMatched.Config(), _Task(), None, base)
    assert idx == 0


class _ClassWise(_Task):
    class_wise = True


VAL_CURVE = [{"acc_forget": 100, "acc_val": 90, "acc_val_retain": 90},  # λ = 0: the floor is 0.95·90 = 85.5
             {"acc_forget": 40, "acc_val": 88, "acc_val_retain": 88},
             {"acc_forget": 20, "acc_val": 86, "acc_val_retain": 86},
             {"acc_forget": 5, "acc_val": 80, "acc_val_retain": 80}]  # below the floor


def test_val_matched_matches_val_at_random_and_minimises_forget_class_wise():
    rule, cfg = ValMatched(), ValMatched.Config()
    assert rule.feasible(VAL_CURVE, cfg, _Task()) == [True, True, True, False]
    assert rule.choose(VAL_CURVE, cfg, _Task(), None) == (0, 10)  # |Acc Df − Acc Dval|: 10, 48, 66 (and 75)
    assert rule.choose(VAL_CURVE, cfg, _ClassWise(), None) == (2, 20)  # Acc Df, the 5 being infeasible


def test_val_matched_ties_go_to_the_smaller_lambda():
    curve = [{"acc_forget": 95, "acc_val": 90, "acc_val_retain": 90},
             {"acc_forget": 92, "acc_val": 90, "acc_val_retain": 90},
             {"acc_forget": 88, "acc_val": 90, "acc_val_retain": 90}]  # |gap| 5, 2, 2
    assert ValMatched().choose(curve, ValMatched.Config(), _Task(), None) == (1, 2)


def test_val_matched_floor_on_retain_reads_retain():
    rule = ValMatched()
    cfg = dataclasses.replace(ValMatched.Config(), floor_split="retain")
    assert rule.reads_for(cfg, _Task()) == {"forget", "val", "retain"}
    assert rule.reads_for(ValMatched.Config(), _Task()) == {"forget", "val"}
    assert rule.needs(cfg, _Task()) == ["acc_forget", "acc_val", "acc_retain_floor"]
    curve = [{"acc_forget": 100, "acc_val": 90, "acc_retain_floor": 100},
             {"acc_forget": 90, "acc_val": 90, "acc_retain_floor": 94}]  # matched, but below 0.95·100
    assert rule.feasible(curve, cfg, _Task()) == [True, False]
    assert rule.choose(curve, cfg, _Task(), None)[0] == 0


def test_control_threshold_floor_from_the_baseline_when_given():
    """A hyperparameter search has no λ = 0 point: the floor is θ_0's, measured apart."""
    rule, cfg = ControlThreshold(), ControlThreshold.Config()
    curve = [{"acc_forget": 50, "acc_val_retain": 96}, {"acc_forget": 30, "acc_val_retain": 94}]
    assert rule.feasible(curve, cfg, _Task()) == [True, True]  # against curve[0]: 0.95·96 = 91.2
    assert rule.feasible(curve, cfg, _Task(), {"acc_val_retain": 100}) == [True, False]  # 0.95·100 = 95
    assert rule.choose(curve, cfg, _Task(), None, {"acc_val_retain": 100}) == (0, 50)
    assert rule.can_stop(curve + [{"acc_forget": 1, "acc_val_retain": 50}], cfg, _Task())
    assert not rule.can_stop(curve + [{"acc_forget": 1, "acc_val_retain": 50}],
                             dataclasses.replace(cfg, early_stop=False), _Task())


def test_oracle_val_rule_and_oracles_need_the_retrain_reference():
    ref = {"acc_retain": 100, "acc_forget": 90, "acc_val": 90}
    curve = [{"acc_retain": 100, "acc_forget": 100, "acc_val": 92},  # (0 + 10 + 2) / 3 = 4
             {"acc_retain": 97, "acc_forget": 91, "acc_val": 89}]  # (3 + 1 + 1) / 3 = 5/3
    idx, score = OracleAvgGapVal().choose(curve, OracleAvgGapVal.Config(), _Task(), ref)
    assert idx == 1 and score == pytest.approx(5 / 3)
    assert "test" not in OracleAvgGapVal.reads and OracleAvgGapVal.oracle
    for rule in (OracleAvgGap(), OracleAvgGapVal()):
        with pytest.raises(ValueError, match="needs the retrain oracle"):
            rule.choose(curve, rule.Config(), _Task(), None)


def test_a_grid_not_starting_at_0_keeps_the_theta0_floor():
    """Reliability review 2, defect 1: grid 1.5:2:0.05 took the κ floor from λ = 1.5, not θ_0."""
    from unlearnbench.selection import grid

    lambdas = grid("1.5:2:0.05")
    table = {0.0: {"acc_forget": 100, "acc_val": 90, "acc_val_retain": 98.33}}  # floor 0.95 × 98.33 = 93.4
    for i, lam in enumerate(lambdas):  # Acc D_val^r falls from 95 by 1 per step; Acc D_f meets Acc D_val late
        table[lam] = {"acc_forget": 100 - 2 * i, "acc_val": 90, "acc_val_retain": 95 - i}
    sel, calls = _run_sweep(ValMatched(), ValMatched.Config(), table, lambdas=lambdas)
    assert calls[0] == 0.0 and calls[1:] == lambdas  # θ_0 measured once, before the grid
    # the floor of λ = 1.5 (0.95 × 95) would allow λ = 1.7 (Acc D_val^r 91); θ_0's allows up to 1.55
    assert sel.lam == 1.55 and sel.curve[sel.index]["acc_val_retain"] >= 0.95 * 98.33

    ctable = {lam: {"acc_forget": v["acc_forget"], "acc_val_retain": v["acc_val_retain"]} for lam, v in table.items()}
    sel, calls = _run_sweep(ControlThreshold(), ControlThreshold.Config(), ctable, lambdas=lambdas)
    assert sel.lam == 1.55 and calls == [0.0, 1.5, 1.55, 1.6]  # stops at the first point under θ_0's floor


@pytest.mark.parametrize("kappa", [0.0, -1.0, 1.5, 2.0, float("nan"), float("inf")])
@pytest.mark.parametrize("rule", [ValMatched(), ControlThreshold()], ids=lambda r: r.name)
def test_kappa_outside_0_1_is_refused(rule, kappa):
    from unlearnbench.errors import ConfigError

    with pytest.raises(ConfigError, match=r"selection.kappa=.* in \(0, 1\].*-o selection.kappa=0.95"):
        rule.check_config(dataclasses.replace(rule.Config(), kappa=kappa))
    rule.check_config(dataclasses.replace(rule.Config(), kappa=1.0))  # (0, 1]: 1 is allowed
