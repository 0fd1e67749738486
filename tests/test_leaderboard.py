"""Leaderboards from run records: aggregation, noise-aware marking, paper rows, rendering, and
regeneration of the committed leaderboards/. The sweep's skip/resume is tests/test_runner.py's."""
from __future__ import annotations


import filecmp
import json
from pathlib import Path

import pytest

from unlearnbench.report import aggregate, build, render_csv, render_markdown

from helpers import m, rec

REPO = Path(__file__).resolve().parents[1]


def test_best_marked_only_beyond_noise():
    recs = []
    for t, jitter in enumerate((0.0, 0.1, -0.1)):
        recs.append(rec("good", t, m(100, 95 + jitter, 95, 10)))  # gap ≈ 0
        recs.append(rec("bad", t, m(90, 80 + jitter, 85, 30)))  # gap ≈ 13.75
    rows = {r.label: r for r in aggregate(recs)["digits-10pct"]}
    assert rows["good"].mark == "best" and rows["bad"].mark == ""
    assert rows["good"].gap == pytest.approx(0.0, abs=1e-9) and rows["bad"].gap == pytest.approx(13.75)
    assert len(rows["good"].trials) == 3


def test_noisy_difference_is_a_tie():
    recs = []
    for t, (a, b) in enumerate(((95, 97), (99, 92), (91, 96))):
        recs.append(rec("x", t, m(100, a, 95, 10)))
        recs.append(rec("y", t, m(100, b, 95, 10)))
    rows = {r.label: r for r in aggregate(recs)["digits-10pct"]}
    assert rows["x"].mark == "tie" and rows["y"].mark == "tie"  # no win within seed noise


def test_oracle_rows_kept_apart_and_paper_rows_labelled(host):
    recs = [rec("negmerge", t, m(99, 96, 93, 12), scenario="cifar10-10pct") for t in range(2)]
    recs += [rec("negmerge", t, m(99, 95, 93, 12), scenario="cifar10-10pct", rule="oracle_avg_gap", oracle=True)
             for t in range(2)]
    rows = aggregate(recs, host)["cifar10-10pct"]  # the paper's rows come from the registered scenario
    md = render_markdown("cifar10-10pct", rows, [])
    assert "## Oracle selection" in md and "(ORACLE)" in md
    assert "paper: NegMerge" in md and "P T2" in md and "1.07" in md  # the paper's own row, labelled
    oracle_section = md.split("## Oracle selection")[1].split("##")[0]
    assert "oracle_avg_gap" in oracle_section
    assert "oracle_avg_gap" not in md.split("## Oracle selection")[0]  # not ranked with the others
    csv_text = render_csv(rows)
    assert csv_text.splitlines()[0].startswith("kind,method,label") and "paper" in csv_text


def test_missing_cell_stays_missing():
    r = rec("a", 0, m(100, 95, 95, 10))
    r["metrics"]["mia"] = float("nan")
    md = render_markdown("digits-10pct", aggregate([r])["digits-10pct"], [])
    row = next(line for line in md.splitlines() if line.startswith("| a |"))
    assert "| – |" in row


def test_a_nan_metric_is_missing_and_the_seed_count_says_over_how_many():
    """One seed's NaN Acc Df: the cell is a mean over 2 seeds and says so, the row says "2 of 3";
    the Avg. Gap from the trial means needs every trial's components, so it is missing; the paired
    gap is over the 2 complete trials and says so."""
    recs = [rec("a", t, m(100, 95 + t, 95, 10)) for t in range(3)]
    recs[1]["metrics"]["acc_forget"] = float("nan")
    recs += [rec("b", t, m(100, 95, 95, 10)) for t in range(3)]
    rows = {r.label: r for r in aggregate(recs)["digits-10pct"]}
    a = rows["a"]
    assert a.cells["acc_forget"]["n"] == 2 and a.cells["acc_forget"]["mean"] == pytest.approx(96.0)
    assert a.gap is None and len(a.paired) == 2 and a.mark == ""
    md = render_markdown("digits-10pct", list(rows.values()), [])
    line = next(ln for ln in md.splitlines() if ln.startswith("| a |")).split(" | ")
    assert line[4] == "96.00 ± 1.41 (n=2)" and line[7] == "–" and line[8].endswith("(n=2)") and line[9] == "2 of 3"
    b_line = next(ln for ln in md.splitlines() if ln.startswith("| b |")).split(" | ")
    assert b_line[9] == "3" and "(n=" not in "".join(b_line)
    csv_row = next(ln for ln in render_csv(list(rows.values())).splitlines() if ",a,a," in ln).split(",")
    assert csv_row[6] == "2 of 3" and csv_row[15] == ""  # seeds, avg_gap


def test_build_writes_every_artifact(tmp_path):
    runs = tmp_path / "runs"
    for r in [rec("good", t, m(100, 95, 95, 10)) for t in range(3)] + [rec("bad", 0, m(90, 80, 85, 30))]:
        p = runs / r["_file"]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({k: v for k, v in r.items() if k != "_file"}))
    out = build(runs, tmp_path / "lb")
    assert out["scenarios"] == ["digits-10pct"]
    for f in ("digits-10pct.md", "digits-10pct.csv", "index.html", "plots/digits-10pct-tradeoff.png"):
        assert (tmp_path / "lb" / f).stat().st_size > 0, f
    first = (tmp_path / "lb" / "plots" / "digits-10pct-tradeoff.png").read_bytes()
    build(runs, tmp_path / "lb2")
    assert (tmp_path / "lb2" / "plots" / "digits-10pct-tradeoff.png").read_bytes() == first  # deterministic


def test_committed_leaderboards_regenerate_identically(tmp_path, host):
    """leaderboards/ is generated from leaderboards/runs/ by one command, byte for byte."""
    committed = REPO / "leaderboards"
    if not (committed / "runs").exists():
        pytest.skip("no committed run records yet")
    build(committed / "runs", tmp_path, host)
    generated = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert generated, "nothing generated"
    for rel in generated:
        assert (committed / rel).exists(), f"{rel} is generated but not committed"
        assert filecmp.cmp(tmp_path / rel, committed / rel, shallow=False), f"{rel} differs from its regeneration"


def test_single_seed_rows_cannot_take_or_block_a_clear_win():
    recs = []
    for t, jitter in enumerate((0.0, 0.1, -0.1)):
        recs.append(rec("good", t, m(100, 95 + jitter, 95, 10)))
        recs.append(rec("bad", t, m(90, 80 + jitter, 85, 30)))
    worse_lone = rec("lone", 0, m(95, 90, 90, 20))
    rows = {r.label: r for r in aggregate(recs + [worse_lone])["digits-10pct"]}
    assert rows["good"].mark == "best" and rows["lone"].mark == ""
    better_lone = rec("lone", 0, m(100, 95, 95, 10))
    rows = {r.label: r for r in aggregate(recs + [better_lone])["digits-10pct"]}
    assert rows["good"].mark == "tie"  # an unreplicated row at least as good: no win claimed


def test_methods_without_records_are_visibly_missing(host):
    rows = aggregate([rec("negmerge", t, m(99, 96, 93, 12)) for t in range(2)], host)["digits-10pct"]
    md = render_markdown("digits-10pct", rows, [])
    line = next(x for x in md.splitlines() if x.startswith("| salun |"))
    assert "not run yet" in line and line.count("| – |") >= 4  # a row of dashes, not a number


def test_records_from_different_originals_are_flagged(tmp_path):
    """Same trial, same recipe, different weights (another device): not like for like, and said so
    in the tables and on the page; the committed boards carry no such warning by accident."""
    from unlearnbench.report import consistency

    same = [rec("a", 0, m(100, 95, 95, 10)), rec("b", 0, m(99, 94, 95, 11))]
    assert consistency(same) == {}
    other = rec("c", 0, m(98, 93, 94, 12))
    other["original"] = {**other["original"], "acc_test": 94.2}
    other["provenance"] = {"cpu": "AMD EPYC", "torch": "2.14.1"}
    w = consistency(same + [other])
    assert list(w) == ["digits-10pct"] and "trial 0" in w["digits-10pct"][0] and "2 different original" in \
        w["digits-10pct"][0] and "CPU AMD EPYC" in w["digits-10pct"][0]
    # equal metrics but different recorded weights: still two models
    x, y = rec("a", 1, m(100, 95, 95, 10)), rec("b", 1, m(100, 95, 95, 10))
    x["weights_digest"], y["weights_digest"] = {"original": "1" * 64}, {"original": "2" * 64}
    assert "trial 1" in consistency([x, y])["digits-10pct"][0]
    y["weights_digest"] = {"original": "1" * 64}
    assert consistency([x, y]) == {}
    runs = tmp_path / "runs"
    for r in same + [other]:
        p = runs / r["_file"]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({k: v for k, v in r.items() if k != "_file"}))
    out = build(runs, tmp_path / "lb")
    assert out["warnings"]["digits-10pct"]
    assert "Not like for like" in (tmp_path / "lb" / "digits-10pct.md").read_text()
    assert 'class="warn"' in (tmp_path / "lb" / "index.html").read_text()
    assert "Not like for like" not in (REPO / "leaderboards" / "digits-10pct.md").read_text()
