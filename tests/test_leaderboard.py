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


V1_BOARDS = REPO / "benchmarks" / "results" / "protocol-v1"  # the protocol-1 records and boards (issue 16)


@pytest.mark.parametrize("where", ["leaderboards", "protocol-v1"])
def test_committed_leaderboards_regenerate_identically(tmp_path, host, where):
    """leaderboards/ (protocol 2, its README comparing with protocol 1's records) and the protocol-1 boards
    in benchmarks/results/protocol-v1/ are generated from their runs/ by one command each, byte for byte."""
    committed = REPO / "leaderboards" if where == "leaderboards" else V1_BOARDS
    if not (committed / "runs").exists():
        pytest.skip("no committed run records yet")
    build(committed / "runs", tmp_path, host, compare=V1_BOARDS / "runs" if where == "leaderboards" else None)
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
    assert "Not like for like" not in (V1_BOARDS / "digits-10pct.md").read_text()


# -- protocol 2 boards (PROTOCOL §11) ------------------------------------------------------------------

def _v2(r, sha="a" * 40, sizes=(1132, 125)):
    """A helpers.rec record as protocol 2 writes it: the version, its code commit, its split sizes."""
    r["protocol"] = 2
    r["provenance"] = {"git_sha": sha, "git_dirty": [] if not sha.endswith("-dirty") else ["methods/x.py"]}
    r["split_sizes"] = {"retain": sizes[0], "forget": sizes[1]}
    return r


def _write(runs, recs):
    for r in recs:
        p = runs / r["_file"]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({k: v for k, v in r.items() if k != "_file"}))


def test_a_board_never_mixes_protocol_versions(tmp_path):
    from click.testing import CliRunner

    from unlearnbench.cli import main
    from unlearnbench.report import BoardError

    runs = tmp_path / "runs"
    _write(runs, [rec("a", 0, m(100, 95, 95, 10)), _v2(rec("b", 0, m(99, 94, 95, 11)))])
    with pytest.raises(BoardError, match=r"mix protocol versions: 1 of protocol 1 \(e\.g\. digits-10pct/a/seed-0"):
        build(runs, tmp_path / "lb")
    assert not (tmp_path / "lb").exists()  # refused before anything is written
    r = CliRunner().invoke(main, ["leaderboard", str(runs), "--out", str(tmp_path / "lb")])
    assert r.exit_code == 2 and "never mixes versions" in r.output and "Traceback" not in r.output


def test_protocol_2_boards_come_from_committed_code_and_list_it(tmp_path):
    from unlearnbench.report import BoardError

    runs = tmp_path / "runs"
    clean = [_v2(rec("a", t, m(100, 95, 95, 10))) for t in range(2)]
    _write(runs, clean + [_v2(rec("b", 0, m(99, 94, 95, 11)), sha="b" * 40 + "-dirty")])
    with pytest.raises(BoardError, match=r"1 of 3 records do not come from committed code .*methods/x\.py"):
        build(runs, tmp_path / "lb")
    build(runs, tmp_path / "lb", allow_dirty=True)
    md = (tmp_path / "lb" / "digits-10pct.md").read_text()
    assert "**Not from committed code:** 1 of 3 records" in md and "not one to commit" in md
    assert f"`{'a' * 12}` (2 records), `{'b' * 12}-dirty` (1 record)" in md  # the commits, most records first
    assert "<strong>Not from committed code:</strong>" in (tmp_path / "lb" / "index.html").read_text()
    (runs / "digits-10pct" / "b" / "seed-0" / "run.json").unlink()
    build(runs, tmp_path / "lb2")  # every record from a commit: built, and the board names it
    md = (tmp_path / "lb2" / "digits-10pct.md").read_text()
    assert f"Protocol 2; built from the records of code commit(s) `{'a' * 12}` (2 records)." in md
    assert "Not from committed code" not in md
    # protocol 1 keeps its boards as built: no such line, and its -dirty records are no error
    v1 = [rec("a", 0, m(100, 95, 95, 10))]
    v1[0]["provenance"] = {"git_sha": "c" * 40 + "-dirty"}
    _write(tmp_path / "v1", v1)
    build(tmp_path / "v1", tmp_path / "lb3")
    assert "Protocol" not in (tmp_path / "lb3" / "digits-10pct.md").read_text()


def test_the_character_check_runs_on_every_trial_and_names_the_failures(tmp_path, host):
    """PROTOCOL §2.1 v2: from the records' original and Retrain metrics, Acc(D_train) weighted from
    Acc D_r and Acc D_f; a failing trial is named with the condition it fails."""
    from unlearnbench.character import train_accuracy, trial_character

    recs = [_v2(rec("a", t, m(100, 95, 95, 10))) for t in range(3)]
    recs[1]["retrain"] = {**recs[1]["retrain"], "acc_forget": 100.0}  # Retrain keeps D_f: no forgetting to measure
    recs[2]["original"] = {**recs[2]["original"], "acc_retain": 99.0}  # 99.10 on D_train, and MIA not above
    recs[2]["retrain"] = {**recs[2]["retrain"], "mia": 0.0}
    assert train_accuracy(recs[2]["original"], recs[2]["split_sizes"]) == pytest.approx(
        (1132 * 99.0 + 125 * 100.0) / 1257)
    assert trial_character(recs[0])["ok"]
    assert trial_character(recs[1])["failed"] == ["Retrain Acc(D_f) < original Acc(D_f)"]
    assert trial_character(recs[2])["failed"] == ["original Acc(D_train) >= 99.5", "Retrain MIA > original MIA"]
    _write(tmp_path / "runs", recs)
    build(tmp_path / "runs", tmp_path / "lb", host)
    md = (tmp_path / "lb" / "digits-10pct.md").read_text()
    line = next(x for x in md.splitlines() if "Character check" in x)
    assert "fails** on 2 of 3 trials" in line and "It passes on trial(s) 0." in line
    assert "trial 1: Retrain Acc(D_f) < original Acc(D_f) (Retrain 100.00, original 100.00)" in line
    assert "trial 2: original Acc(D_train) >= 99.5 (99.10), Retrain MIA > original MIA (Retrain 0.00, original 0.00)" \
        in line
    _write(tmp_path / "ok", [_v2(rec("a", t, m(100, 95, 95, 10)), sizes=(1100, 157)) for t in range(2)])
    build(tmp_path / "ok", tmp_path / "lb2", host)
    assert "Character check (PROTOCOL §2.1): passes on every trial (0, 1)." in \
        (tmp_path / "lb2" / "digits-10pct.md").read_text()


def test_the_smoke_scenario_says_it_cannot_rank_methods(tmp_path, host):
    """PROTOCOL §10.2 #47: digits-10pct's board says so (a scenario attribute); digits-class's does not."""
    assert host.scenarios.get("digits-10pct").smoke and not host.scenarios.get("digits-class").smoke
    recs = [_v2(rec("a", t, m(100, 95, 95, 10), scenario=s)) for s in ("digits-10pct", "digits-class")
            for t in range(2)]
    _write(tmp_path / "runs", recs)
    build(tmp_path / "runs", tmp_path / "lb", host)
    assert "**Smoke scenario: it cannot rank methods.** |D_f| = 125" in (tmp_path / "lb" / "digits-10pct.md").read_text()
    assert "Smoke scenario" not in (tmp_path / "lb" / "digits-class.md").read_text()
    assert "Smoke scenario" not in (V1_BOARDS / "digits-10pct.md").read_text()  # v1 boards as built


def test_the_n_ablation_plot_averages_random_subsets(tmp_path, monkeypatch):
    """PROTOCOL §9.5 v2: records that differ only in pool.size and pool.subset are one sweep; each n is
    mean ± std over its subsets and seeds (an error bar), where v1's prefixes were one point each."""
    import matplotlib.axes

    from unlearnbench.report import plots

    recs = []
    for n, subsets in ((3, ("0", "1", "2")), (27, ("0",))):
        for d in subsets:
            for t in range(2):
                r = _v2(rec("negmerge", t, m(99, 90 + int(d), 95, 10), chash=f"h{n}-{d}"))
                r["variant"] = [] if n == 27 else [f"pool.size={n}"] + ([f"pool.subset={d}"] if d != "0" else [])
                r["config"]["pool"] = {"size": 0 if n == 27 else n, "subset": d, "augment": "pool"}
                r["info"] = {"merge_cost": {"n": n}}
                r["sparsity"] = {"u_all": 50.0 + n + int(d)}
                r["_file"] = f"digits-class/negmerge-{n}-{d}/seed-{t}/run.json"
                recs.append(r)
    sweep = plots._pool_size_sweeps(recs)
    assert {n: len(rs) for n, rs in sweep["negmerge"].items()} == {3: 6, 27: 2}  # 3 subsets x 2 seeds at n = 3
    drawn = []
    real = matplotlib.axes.Axes.errorbar

    def errorbar(ax, x, y, yerr=None, **kw):
        drawn.append((list(x), list(y), list(yerr)))
        return real(ax, x, y, yerr=yerr, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", errorbar)
    names = plots.make_plots("digits-class", recs, [], tmp_path, {})
    assert "digits-class-nsweep.png" in names and (tmp_path / "digits-class-nsweep.png").stat().st_size > 0
    (ns, sp, sp_err), (_, af, af_err) = drawn
    assert ns == [3, 27] and sp == [54.0, 77.0] and af == [91.0, 90.0]
    assert sp_err == pytest.approx([0.8 ** 0.5, 0.0]) and af_err == pytest.approx([0.8 ** 0.5, 0.0])
    for r in recs:  # the same records as protocol 1's prefixes: plain means, no error bars
        r["config"]["pool"] = {"size": r["config"]["pool"]["size"]}
    drawn.clear()
    plots.make_plots("digits-class", recs, [], tmp_path, {})
    assert drawn == []


# -- the page a researcher reads (issue 19) --------------------------------------------------------------

class _Plugin:
    """A method plugin as the families read it: only what it declares."""

    def __init__(self, uses_pool=False, oracle=False):
        self.uses_pool, self.oracle, self.uses, self.title = uses_pool, oracle, frozenset({"forget"}), ""


class _Registry(dict):
    def names(self):
        return sorted(self)


def test_a_methods_family_is_what_its_plugin_declares_never_its_name():
    """Issue 19 acceptance 1: merge = reads the fine-tune pool (Method.uses_pool), Retrain = the oracle, the
    rest training-based; a method the board cannot look up is "other", whatever it is called."""
    from types import SimpleNamespace

    from unlearnbench.report.families import family_of, style_of

    host = SimpleNamespace(methods=_Registry(negmerge=_Plugin(uses_pool=False), gradient_ascent=_Plugin(uses_pool=True),
                                             oracle_x=_Plugin(oracle=True)))
    assert family_of("negmerge", host) == "training-based"  # named like a merge, declares no pool
    assert family_of("gradient_ascent", host) == "merge"
    assert family_of("oracle_x", host) == "reference" and family_of("unknown", host) == "other"
    assert family_of("negmerge", None) == "other"
    style = style_of({f"m{i:02d}": "merge" for i in range(24)} | {"t": "training-based"})
    assert len(set(style.values())) == 25  # no two rows of a family share both colour and marker
    assert style["t"][0] == "#D55E00" and {c for c, _ in style.values()} <= {"#0072B2", "#56B4E9", "#D55E00"}


def _drawn(monkeypatch):
    """Every scatter/annotate/set_xlim call of a plot, recorded."""
    import matplotlib.axes

    calls = []
    for name in ("scatter", "annotate", "set_xlim", "errorbar", "axvline"):
        real = getattr(matplotlib.axes.Axes, name)

        def spy(ax, *a, _real=real, _name=name, **kw):
            calls.append((_name, a, kw))
            return _real(ax, *a, **kw)

        monkeypatch.setattr(matplotlib.axes.Axes, name, spy)
    return calls


def test_the_tradeoff_plot_zooms_past_collapsed_methods_and_labels_them_on_the_edge(tmp_path, monkeypatch):
    """Issue 19 acceptance 1: the view spans the methods that kept their retain accuracy; a collapsed one
    (Acc D_r 45) is a labelled marker on the left edge; Retrain a star, the Original a hollow circle."""
    from unlearnbench.report import plots

    recs = [rec("good", t, m(99, 96, 95, 10)) for t in range(2)] + [rec("fair", t, m(97, 90, 94, 12)) for t in range(2)]
    recs += [rec("collapsed", t, m(45, 10, 44, 0)) for t in range(2)]
    rows = aggregate(recs)["digits-10pct"]
    for r in rows:
        r.family = {"good": "merge", "fair": "training-based", "collapsed": "merge"}.get(r.label, r.family)
    calls = _drawn(monkeypatch)
    assert plots.make_plots("digits-10pct", recs, rows, tmp_path, {}) == ["digits-10pct-tradeoff.png"]
    x0, x1 = [a for n, a, _ in calls if n == "set_xlim" and len(a) == 2][-1]  # the plot's own (last) call
    assert 90 < x0 < 97 and x1 > 100  # zoomed to 97..100 (with a margin), not down to 45
    edge = [a[0] for n, a, _ in calls if n == "annotate" and "collapsed" in a[0]]
    assert edge == ["◀ collapsed (45.0, 10.0)"]
    marks = [(kw.get("marker"), kw.get("facecolors"), kw.get("c")) for n, a, kw in calls if n == "scatter" and a[0]]
    assert ("*", None, "#000000") in marks and ("o", "none", None) in marks  # Retrain and the Original
    assert ("<", None, "#0072B2") in marks  # the collapsed merge method, on the edge in its family's colour
    # deterministic: test_build_writes_every_artifact compares its bytes, and the regenerate test the boards'


def test_a_forest_plot_per_claim_draws_each_boards_2se_interval_and_zero(tmp_path, monkeypatch):
    """Issue 19 acceptance 2: one plot per claim letter; each (board, rule) a row at its mean per-seed
    difference with ±2 SE (claims.verdict's), and the zero line."""
    import statistics

    from unlearnbench.report.claims import Comparison
    from unlearnbench.report.forest import forest_plots

    diffs = [-1.0, -2.0, -1.5]
    every = [Comparison("digits-class", "oracle-free (the run's own rule)", "a", "(a) x − y", list(enumerate(diffs))),
             Comparison("digits-class", "ORACLE (oracle_avg_gap)", "a", "(a) x − y", [(0, 1.0), (1, -1.0)]),
             Comparison("digits-class", "ORACLE (oracle_avg_gap)", "e", "(e) x − y", [], "optimism")]
    calls = _drawn(monkeypatch)
    made = forest_plots(every, tmp_path)
    assert [(c, n) for c, n, _ in made] == [("a", "claims-a.png")]  # (e) has nothing to draw
    bars = [(a[0], kw["xerr"]) for n, a, kw in calls if n == "errorbar"]
    se = statistics.stdev(diffs) / len(diffs) ** 0.5
    assert bars[0][0] == [pytest.approx(-1.5)] and bars[0][1][0] == [pytest.approx(2 * se)]
    assert len(bars) == 2 and any(n == "axvline" and a[0] == 0.0 for n, a, _ in calls)
    # deterministic: the regenerate test compares the committed boards' claims-*.png byte for byte


def test_the_page_marks_each_columns_best_and_links_every_row_to_its_evidence(tmp_path, host):
    """Issue 19 acceptances 3-5: the best of a column is the value closest to Retrain's (Retrain's Acc Df
    is 95 here, so 96 beats 90); every row links its records (relative, into runs/), its resolved config
    and hash, and the command that reruns it; nothing on the page reaches the network."""
    import re

    runs = tmp_path / "runs"
    recs = [rec("negmerge", t, m(99, 96, 95, 10)) for t in range(2)] + \
        [rec("finetune", t, m(98, 90, 94, 11), chash="h-ft") for t in range(2)]
    for r in recs:
        p = runs / r["_file"]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({k: v for k, v in r.items() if k != "_file"}))
    build(runs, tmp_path, host)
    page = (tmp_path / "index.html").read_text()
    row = {lab: re.search(rf'<tr data-family="([^"]+)"[^>]*data-label="{lab}".*?</tr>', page).group(0)
           for lab in ("negmerge", "finetune")}
    assert 'data-family="merge"' in row["negmerge"] and 'data-splits="forget-only"' in row["negmerge"]
    assert 'data-family="training-based"' in row["finetune"]
    tds = [re.findall(r"<td[^>]*>", row[lab]) for lab in ("negmerge", "finetune")]
    assert "cb" in tds[0][4] and "cb" not in tds[1][4]  # Acc Df: 96 is closer to Retrain's 95 than 90 is
    assert "cb" in tds[0][6] and "cb" not in tds[1][6]  # MIA: Retrain's is 10
    assert "cb" in tds[1][10]  # wall time: lower is better (finetune's records say 1.0 s as well: a tie)
    links = re.findall(r'href="([^"#]+)"', page)
    recs_linked = [x for x in links if x.startswith("runs/")]
    assert set(recs_linked) == {f"runs/{r['_file']}" for r in recs}  # (Original and Retrain link some again)
    assert row["negmerge"].count('href="runs/') == 2
    assert all((tmp_path / x).is_file() for x in links if not x.startswith("#"))  # every link resolves
    cfg = json.loads((tmp_path / "configs" / "h-ft.json").read_text())
    assert cfg["config_hash"] == "h-ft" and cfg["config"] == recs[2]["config"]
    assert "unlearnbench reproduce runs/digits-10pct/finetune</code>" in row["finetune"]
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<link" not in page  # no network request
