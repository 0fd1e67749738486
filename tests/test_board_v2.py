"""Protocol-2 boards (issue 16 acceptance 5 (b)-(d), PROTOCOL §5(d)): the ORACLE table from each record's
by_rule, the Original row inside the noise test with a line on whether anything beats it, and the
selection-optimism table. Protocol-1 boards stay as they were (tests/test_leaderboard.py)."""
from __future__ import annotations

import copy
import json

import pytest

from unlearnbench.report import aggregate, build

from helpers import m, rec


def _v2(method, trial, metrics, oracle_metrics=None, report=None, selected=True):
    r = rec(method, trial, metrics)
    r["protocol"] = 2
    r["selection"]["curve"] = []
    by = {"rule": "oracle_avg_gap", "selected": selected}
    if selected:
        by.update(metrics={"acc_val": 95.0, **(oracle_metrics or metrics)}, **{"lambda": 1.5})
    split = {"rule": "oracle_split_test", "selected": selected}
    if selected:
        split["report"] = report or {"gap_a": 1.0, "gap_b": 1.5, "optimism": 0.5}
    r["by_rule"] = {"oracle_avg_gap": by, "oracle_split_test": split}
    r["timings"]["select_evals"] = 41
    return r


def _write(tmp, recs):
    runs = tmp / "runs"
    for r in recs:
        p = runs / r["_file"]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({k: v for k, v in r.items() if k != "_file"}))
    return runs


def test_the_oracle_table_and_optimism_come_from_by_rule(tmp_path):
    recs = []
    for t, noise in enumerate((0.0, 0.4, -0.3)):
        # "good": Acc Df near Retrain's 95 under both rules; under the oracle even closer
        recs.append(_v2("good", t, m(100, 96 + noise, 95, 9), oracle_metrics=m(100, 95 + noise / 4, 95, 10),
                        report={"gap_a": 0.2, "gap_b": 0.9 + noise, "optimism": 0.7 + noise}))
        recs.append(_v2("noop", t, m(100, 100, 95, 0 + noise)))  # as good as doing nothing
        recs.append(_v2("fixed", t, m(99, 97, 94, 5), selected=False))  # nothing chose: the same under every rule
    rows = aggregate(copy.deepcopy(recs))["digits-10pct"]
    oracle = {r.method: r for r in rows if r.oracle}
    assert set(oracle) == {"good", "noop", "fixed"} and all("[ORACLE]" in r.label for r in oracle.values())
    assert oracle["good"].cells["acc_forget"]["mean"] == pytest.approx(95.0 + (0.0 + 0.4 - 0.3) / 12)
    free = {r.method: r for r in rows if r.role == "measured" and not r.oracle}
    assert oracle["fixed"].cells == free["fixed"].cells and oracle["fixed"].selection.startswith("none")
    orig = next(r for r in rows if r.method == "original")
    assert free["good"].mark == "best" and orig.mark == ""  # the Original competed, and lost beyond noise

    out = build(_write(tmp_path, recs), tmp_path / "lb", allow_dirty=True)
    md = (tmp_path / "lb" / "digits-10pct.md").read_text()
    assert "## ORACLE: the same runs at `oracle_avg_gap`'s choice" in md
    assert "**Against no unlearning:** 2 method(s)" in md and "good" in md.split("Against no unlearning")[1]
    opt = md.split("## Selection optimism (ORACLE)")[1]
    assert "| good | 0.20 ± 0.00 | 0.93 ± 0.35 | 0.73 ± 0.35 | 41 | 3 |" in opt
    assert "| fixed | – | – | – (no rule chose its result) |" in opt
    assert "Selection optimism" in (tmp_path / "lb" / "index.html").read_text()
    assert out["records"] == 9


def test_a_board_where_nothing_beats_no_unlearning_says_so(tmp_path):
    recs = [_v2("noop", t, m(100, 100 - d, 95, d)) for t, d in enumerate((0.0, 1.0, 2.0))]
    build(_write(tmp_path, recs), tmp_path / "lb", allow_dirty=True)
    md = (tmp_path / "lb" / "digits-10pct.md").read_text()
    assert "0 method(s)" in md and "no method can be told apart from leaving the model as it was" in md


def test_a_one_trial_board_says_the_noise_test_is_not_testable_rather_than_that_nothing_beats_it(tmp_path):
    # one trial has no seed noise: "no method can be told apart" would read as a finding about the methods
    recs = [_v2("good", 0, m(100, 95, 95, 10)), _v2("noop", 0, m(100, 100, 95, 0))]
    build(_write(tmp_path, recs), tmp_path / "lb", allow_dirty=True)
    md = (tmp_path / "lb" / "digits-10pct.md").read_text()
    assert "**Against no unlearning:** not testable yet: the board has 1 trial" in md
    assert "told apart" not in md and "0 method(s)" not in md


def test_the_index_sets_each_methods_gap_under_both_protocols_side_by_side(tmp_path):
    """Issue 16 acceptance 5: leaderboards/README.md shows each method's Avg. Gap under v1 and v2, generated
    from both versions' records (the v1 ones in their own folder)."""
    old = [rec("good", t, m(100, 99, 95, 2)) for t in range(3)] + \
        [rec("gone", t, m(90, 90, 90, 20)) for t in range(3)] + \
        [rec("x", t, m(100, 95, 95, 10), scenario="fmnist-10pct") for t in range(3)]  # no v2 board yet
    new = [_v2("good", t, m(100, 96, 95, 9), oracle_metrics=m(100, 95, 95, 10)) for t in range(3)]
    v1 = _write(tmp_path / "v1", old)
    build(_write(tmp_path / "v2", new), tmp_path / "lb", allow_dirty=True, compare=v1)
    idx = (tmp_path / "lb" / "README.md").read_text()
    assert "`unlearnbench leaderboard runs --out . --compare ../v1/runs`" in idx
    table = idx.split("## Avg. Gap under protocol v1 and v2")[1]
    assert "| Method | v1 | v2 | v2 ORACLE |" in table
    assert "| good | 3.00 | 0.50 | 0.00 |" in table  # (0+4+0+8)/4; (0+1+0+1)/4; 0
    assert "| gone | 7.50 | – | – |" in table and "| Original (no unlearning) | 3.75 | 3.75 | 3.75 |" in table
    assert "Not yet regenerated under v2: fmnist-10pct" in table
    build(_write(tmp_path / "v2", new), tmp_path / "plain", allow_dirty=True)
    assert "Avg. Gap under protocol" not in (tmp_path / "plain" / "README.md").read_text()


def test_claims_page_says_supported_refuted_or_within_noise_from_the_records(tmp_path, host):
    """Issue 16 acceptance 6: leaderboards/claims.md, generated, never typed: each claim per board and rule."""
    recs = []
    for t, d in enumerate((0.0, 0.2, -0.2)):
        recs.append(_v2("negmerge", t, m(100, 96 + d, 95, 9), oracle_metrics=m(100, 97, 95, 5),
                        report={"gap_a": 0.2, "gap_b": 0.4, "optimism": 0.2 + d / 10}))
        recs.append(_v2("task-arithmetic", t, m(100, 99 + d, 95, 3), oracle_metrics=m(100, 95, 95, 10),
                        report={"gap_a": 0.0, "gap_b": 1.0, "optimism": 1.0 + d}))
        recs.append(_v2("all", t, m(100, 96 + 2 * d, 95, 9 + d)))
    build(_write(tmp_path, recs), tmp_path / "lb", host, allow_dirty=True)
    page = (tmp_path / "lb" / "claims.md").read_text()
    free, oracle = page.split("### ORACLE")[0], page.split("### ORACLE")[1]
    # oracle-free: NegMerge 0.5 vs TA (0+4+0+7)/4 = 2.75 per seed: supported; ORACLE: 2.0 vs 0.0: refuted
    # the methods come from their declared roles (Method.claim_role), not from names in the core
    assert "| (a) negmerge − task-arithmetic (Task Arithmetic, single best) | **supported** |" in free
    assert "| (a) negmerge − task-arithmetic (Task Arithmetic, single best) | **refuted** |" in oracle
    assert "(b) consensus (negmerge) − all (all) | **within noise**" in free  # same seed-to-seed, differences ±
    assert "(e) negmerge's optimism − task-arithmetic's | **supported** |" in oracle
    assert "0: -0.80, 1: -0.98, 2: -0.62" in oracle  # every per-seed difference printed
    assert "(b) all (all) − conflict (conflict) | no records to compare" in free and "No n-ablation records" in page
    assert "[Does the paper's story hold without an oracle?](claims.md)" in (tmp_path / "lb" / "README.md").read_text()
