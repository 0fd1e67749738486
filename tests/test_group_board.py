"""Group boards (report.groups): scenarios a paper averages over, side by side with their unweighted mean;
here the CLIP board of [P T1]'s shape (PROTOCOL §8.4, §9.1) on synthetic CLIP records, and a toy group that
shows the board knows no scenario by name."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from unlearnbench import ScenarioGroup
from unlearnbench.report import build
from unlearnbench.report.groups import (
    group_tables,
    groups_of,
    render_group_csv,
    render_group_markdown,
)

DATA = ["cars", "dtd", "eurosat", "gtsrb", "mnist", "resisc45", "sun397", "svhn"]


def clip_rec(data, method, trial, df, dr, arch="vit-b-32"):
    """A CLIP run record as the runner writes it (the fields the boards read)."""
    scen = f"clip-{data}"
    m = {"acc_forget_test": df, "acc_control_test": dr, "acc_forget_val": df, "acc_control_val": dr}
    variant = [] if arch == "vit-b-32" else [f"scenario.arch={arch}"]
    return {"scenario": scen, "method": method, "trial": trial, "config_hash": f"{scen}-{method}-{arch}",
            "variant": variant, "config": {"scenario": {"name": scen, "arch": arch}, "method": {"name": method}},
            "_file": f"{scen}/{method}-{arch}/seed-{trial}/run.json", "metrics": m, "retrain": None, "gap": None,
            "original": {**m, "acc_forget_test": 50.0 + DATA.index(data), "acc_control_test": 63.0},
            "used_splits": "forget+val", "selection": {"rule": "control_threshold", "oracle": False},
            "timings": {"total_s": 1.0}, "lambda": 0.5, "sparsity": None, "info": {}}


def records():
    recs = []
    for i, d in enumerate(DATA):  # negmerge: all eight, two seeds each
        recs += [clip_rec(d, "negmerge", t, 10.0 + i + t, 60.0 + 0.1 * i) for t in range(2)]
    recs += [clip_rec(d, "uniform", 0, 30.0, 61.0) for d in DATA[:5]]  # five of eight
    recs.append(clip_rec("cars", "negmerge", 0, 40.0, 64.0, arch="vit-b-16"))
    return recs


def line(md, section, start):
    part = md.split(f"## {section}")[1].split("\n## ")[0]
    return next(ln for ln in part.splitlines() if ln.startswith(f"| {start}")).split(" | ")


def test_the_clip_board_has_table_1s_shape_and_never_averages_fewer_than_eight(host):
    (group,) = [g for g in groups_of(host) if g.name == "clip"]
    assert [m for m, _ in group.members] == [f"clip-{d}" for d in DATA]  # from the scenario plugin
    tables = group_tables(group, records())
    assert list(tables) == ["vit-b-32", "vit-b-16", "vit-l-14"]  # per architecture; L/14: the paper's rows only
    rows = {r.label: r for r in tables["vit-b-32"]}
    nm = rows["negmerge"]
    # each data set's mean over seeds (10.5 + i), then the unweighted mean over the eight
    assert nm.cells["clip-svhn"]["acc_forget_test"]["mean"] == pytest.approx(17.5)
    assert nm.mean["acc_forget_test"] == pytest.approx(14.0) and nm.mean["acc_control_test"] == pytest.approx(60.35)
    assert rows["uniform"].mean == {"acc_forget_test": None, "acc_control_test": None}  # 5 of 8: no mean
    assert rows["uniform"].present == 5
    md = render_group_markdown(group, tables)
    head = line(md, "ViT-B/32", "Method")
    assert head[2:] == ["Cars", "DTD", "EuroSAT", "GTSRB", "MNIST", "RESISC45", "SUN397", "SVHN", "Mean (8) |"]
    row = line(md, "ViT-B/32", "negmerge")
    assert row[1] == "2" and row[2] == "10.50 ± 0.71 / 60.00 ± 0.00" and row[-1] == "14.00 / 60.35 |"
    row = line(md, "ViT-B/32", "uniform")
    assert row[2] == "30.00 / 61.00" and row[7:10] == ["–", "–", "–"] and row[-1] == "– (5 of 8) |"
    pre = line(md, "ViT-B/32", "Pre-trained (zero-shot)")  # θ_0 of each data set's records
    assert pre[2] == "50.00 ± 0.00 / 63.00 ± 0.00" and pre[-1] == "53.50 / 63.00 |"
    # the paper's rows beside the measured ones: [P T1]'s mean, [P T B1]'s data sets at ViT-B/32
    paper = line(md, "ViT-B/32", "paper: TA: NegMerge")
    assert paper[2] == "27.40 / 60.40" and paper[-1] == "20.76 / 60.36 |"
    assert line(md, "ViT-B/32", "paper: Linear TA: NegMerge")[-1] == "8.03 / 60.58 |"
    # ViT-B/16: the arch is the table, not part of the row's name; only Cars ran, so every other set is missing
    b16 = md.split("## ViT-B/16")[1].split("\n## ")[0]
    assert "**Not run here yet:** DTD, EuroSAT, GTSRB, MNIST, RESISC45, SUN397, SVHN" in b16
    assert line(md, "ViT-B/16", "negmerge")[2] == "40.00 / 64.00" and line(md, "ViT-B/16", "negmerge")[-1] == \
        "– (1 of 8) |"
    assert line(md, "ViT-B/16", "uniform (not run here yet)")[-1] == "– (0 of 8) |"
    assert line(md, "ViT-B/16", "paper: TA: NegMerge")[-1] == "19.24 / 64.54 |"
    l14 = md.split("## ViT-L/14")[1]
    assert "No runs at ViT-L/14 yet." in l14 and "| paper: TA: NegMerge |" in l14 and "17.32 / 72.08" in l14
    csv_rows = {(r.split(",")[1], r.split(",")[3]): r.split(",") for r in render_group_csv(group, tables).splitlines()}
    uni, neg = csv_rows[("vit-b-32", "uniform")], csv_rows[("vit-b-32", "negmerge")]
    assert uni[-4:-2] == ["", ""] and uni[-2] == "5 of 8"  # the mean columns stay empty
    assert neg[-4:-2] == ["14.0000", "60.3500"] and neg[-2] == "8 of 8"


def test_build_writes_the_clip_board_only_where_there_are_clip_records(tmp_path, host, monkeypatch):
    from helpers import m, rec

    monkeypatch.setattr("unlearnbench.report.plots.make_plots", lambda *a, **k: [])  # not what is tested here
    runs = tmp_path / "runs"
    some = [r for r in records() if r["scenario"] in ("clip-cars", "clip-svhn")]
    for r in some + [rec("negmerge", 0, m(99, 96, 93, 12))]:
        p = runs / r["_file"]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({k: v for k, v in r.items() if k != "_file"}))
    out = build(runs, tmp_path / "lb", host)
    assert "clip.md" in out["written"] and "clip.csv" in out["written"]
    assert "| negmerge | 2 | 10.50 ± 0.71 / 60.00 ± 0.00 | – |" in (tmp_path / "lb" / "clip.md").read_text()
    assert "– (2 of 8) |" in (tmp_path / "lb" / "clip.md").read_text()
    assert "[clip](clip.md)" in (tmp_path / "lb" / "README.md").read_text()
    for r in runs.glob("clip-*"):  # no CLIP records: no clip board, and the index does not name one
        import shutil

        shutil.rmtree(r)
    build(runs, tmp_path / "lb2", host)
    assert not (tmp_path / "lb2" / "clip.md").exists() and "clip" not in (tmp_path / "lb2" / "README.md").read_text()


def test_a_group_is_whatever_the_scenario_plugins_declare():
    """The board reads members, columns and the split key from the group: a toy group of two scenarios."""
    toy = ScenarioGroup("toy", "Two toy scenarios", members=(("s-a", "A"), ("s-b", "B")),
                        columns=(("acc", "Acc"),), legend="toy legend",
                        paper=({"split": "", "label": "theirs", "method": "x", "cells": {"s-a": {"acc": 1.0}},
                                "mean": {"acc": 2.0}},), paper_source="T9")
    scen = {n: SimpleNamespace(name=n, group=toy) for n in ("s-a", "s-b")}
    scen["other"] = SimpleNamespace(name="other", group=None)
    host = SimpleNamespace(scenarios=SimpleNamespace(names=lambda: list(scen), get=scen.__getitem__))
    assert groups_of(host) == [toy]
    recs = [{"scenario": s, "method": "x", "trial": 0, "metrics": {"acc": v}, "original": {"acc": 9.0},
             "_file": f"{s}.json"} for s, v in (("s-a", 3.0), ("s-b", 5.0), ("other", 100.0))]
    md = render_group_markdown(toy, group_tables(toy, recs))
    assert "| x | 1 | 3.00 | 5.00 | 4.00 |" in md  # "other" is no member: not in the mean
    assert "| paper: theirs | – | 1.00 | – | 2.00 (paper's mean) |" in md
    with pytest.raises(ValueError, match="not members"):
        ScenarioGroup("bad", "", members=(("s-a", "A"),), columns=(("acc", "Acc"),),
                      paper=({"split": "", "label": "p", "cells": {"s-z": {}}},))
