"""λ selection (PROTOCOL §5): the grids, the sweep's leak check, what a sweep records, and what a
selection rule must declare."""
from __future__ import annotations

import pytest

from unlearnbench.errors import ConfigError, SplitAccessError
from unlearnbench.scenario import Scoring
from unlearnbench.selection import GRIDS, SelectionRule, grid, sweep

metric_splits = Scoring().metric_splits  # the classifier split roles


def test_named_and_explicit_grids():
    g = grid("classifier")
    assert len(g) == 41 and g[0] == 0.0 and g[1] == 0.05 and g[-1] == 2.0  # {0, 0.05, ..., 2} (§5)
    assert grid("unit") == [round(0.05 * i, 2) for i in range(21)]
    assert grid("0:1:0.25") == [0.0, 0.25, 0.5, 0.75, 1.0]  # start:stop:step, inclusive
    assert grid("0:0.3:0.1") == [0.0, 0.1, 0.2, 0.3]  # no 0.30000000000000004
    g.append(9.0)
    assert GRIDS["classifier"][-1] == 2.0  # a copy: a caller cannot change the grid
    for bad in ("classifer", "0:1", ""):
        with pytest.raises(ConfigError, match="unknown lambda grid"):
            grid(bad)
    for bad, why in (("a:b:c", "must be numbers"), ("0:1:nan", "finite"), ("0:1:0", "step must be > 0"),
                     ("0.5:1.5:-0.25", "step must be > 0"), ("1:0:0.1", "below start")):
        with pytest.raises(ConfigError, match=f"lambda grid '{bad}': .*{why}.*-o selection.grid=0:2:0.05"):
            grid(bad)


class _Spy(SelectionRule):
    """Records the baseline each call sees."""

    name = "spy"
    reads = frozenset({"forget"})
    seen: list

    def needs(self, cfg, task):
        return ["acc_forget"]

    def can_stop(self, curve, cfg, task, baseline=None):
        self.seen.append(("stop", baseline))
        return False

    def choose(self, curve, cfg, task, reference, baseline=None):
        self.seen.append(("choose", baseline))
        return 0, 0.0


def test_the_baseline_is_theta0_whether_or_not_the_grid_starts_at_0():
    rule = _Spy()
    rule.seen = []
    sel, seen = _sweep(rule, {"forget"})  # starts at 0: the baseline IS curve[0], nothing extra measured
    assert seen == [0.0, 0.5, 1.0] and sel.evals == 3 and sel.params == {}
    assert all(b is sel.curve[0] for _, b in rule.seen) and len(rule.seen) == 4
    rule.seen = []
    sel, seen = _sweep(rule, {"forget"}, (1.5, 2.0))  # θ_0 measured once, first, and recorded
    assert seen == [0.0, 1.5, 2.0] and sel.evals == 3 and [c["lambda"] for c in sel.curve] == [1.5, 2.0]
    assert sel.params["baseline"] == {"lambda": 0.0, "acc_forget": 100.0}
    assert all(b is sel.params["baseline"] for _, b in rule.seen)


class _Rule(SelectionRule):
    """Minimise Acc D_f; reads whatever ``wants`` says."""

    name = "toy"
    reads = frozenset({"forget", "val"})

    def __init__(self, wants=("acc_forget",)):
        self.wants = list(wants)

    def needs(self, cfg, task):
        return self.wants

    def choose(self, curve, cfg, task, reference, baseline=None):
        i = min(range(len(curve)), key=lambda i: curve[i]["acc_forget"])
        return i, curve[i]["acc_forget"]


def _sweep(rule, allowed, lambdas=(0.0, 0.5, 1.0)):
    seen = []
    sel = sweep(seen.append, lambda names: {n: 100 - 10 * seen[-1] for n in names}, list(lambdas), rule, None,
                None, None, frozenset(allowed), metric_splits)
    return sel, seen


def test_sweep_refuses_a_metric_beyond_the_declared_splits_before_any_lambda():
    seen = []
    for metric, leak in (("acc_test", "test"), ("mia", "retain"), ("acc_retain_floor", "retain")):
        with pytest.raises(SplitAccessError, match=f"'toy' asks for '{metric}', which reads .*'{leak}'"):
            sweep(seen.append, lambda names: {}, [0.0, 1.0], _Rule(["acc_forget", metric]), None, None, None,
                  frozenset({"forget", "val"}), metric_splits)
    assert seen == []  # refused before a single λ was set


def test_sweep_records_the_curve_in_grid_order_and_the_grid_edge():
    sel, seen = _sweep(_Rule(), {"forget", "val"})
    assert seen == [0.0, 0.5, 1.0] and sel.evals == 3
    assert [c["lambda"] for c in sel.curve] == seen and sel.curve[1] == {"lambda": 0.5, "acc_forget": 95.0}
    assert (sel.lam, sel.index, sel.score, sel.rule, sel.oracle) == (1.0, 2, 90.0, "toy", False)
    assert sel.grid_edge  # λ* is the largest λ: the grid may be too short
    sel, _ = _sweep(_Rule(), {"forget", "val"}, (0.0, 1.0, 2.0, 1.5))  # not sorted: the edge is the max
    assert sel.lam == 2.0 and sel.grid_edge
    assert set(sel.summary()) >= {"rule", "lambda", "score", "evals", "curve", "grid_edge"}


def test_a_rule_declares_its_splits_and_oracle_reads():
    class Silent(_Rule):
        reads = frozenset()

    class Peeking(_Rule):
        reads = frozenset({"forget", "test"})

    with pytest.raises(ValueError, match="must declare the splits"):
        Silent().validate_definition()
    with pytest.raises(ValueError, match=r"reads \['test'\] but is not declared oracle=True"):
        Peeking().validate_definition()
    Peeking.oracle = True
    Peeking().validate_definition()


def test_every_registered_rule_is_well_defined(host):
    for name in host.rules.names():
        rule = host.rules.get(name)
        assert rule.oracle == bool(rule.reads & {"test", "retrain"}), name
