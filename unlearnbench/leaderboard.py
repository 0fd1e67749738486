"""Leaderboards generated from run records: Markdown + CSV per scenario, plots, one HTML page.

Everything here is derived from ``run.json`` files; nothing is typed in. Rows are grouped by
(method, config hash) and aggregated over trials: mean ± std, the number of seeds, Avg. Gap
from the trial means (paper-comparable) and paired per trial (PROTOCOL §8.3). Rows chosen by
an oracle selection rule go to their own table, never into the default ranking (§1.4). The
best Avg. Gap is marked only when it is separated from the runner-up by more than seed noise.
"""
from __future__ import annotations

import csv
import html
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .metrics import GAP_METRICS
from .provenance import where
from .reference import PAPER

METRICS = [("acc_retain", "Acc Dr"), ("acc_forget", "Acc Df"), ("acc_test", "Acc Dtest"), ("mia", "MIA")]
NOISE_Z = 2.0  # a win needs mean difference > 2 standard errors of the difference (~95%)
SCENARIO_ORDER = ("digits-10pct", "digits-class", "fmnist-10pct", "fmnist-class")


# CLIP dataset negation reports Acc D_r on the control set and Acc D_f on the forget set's test
# split (PROTOCOL §8.4); on the board they take the paper's columns of the same names [P T1].
CLIP_AS_BOARD = {"acc_control_test": "acc_retain", "acc_forget_test": "acc_forget"}


def _board(m: dict | None) -> dict | None:
    if not m or "acc_control_test" not in m:
        return m
    return {**m, **{board: m[k] for k, board in CLIP_AS_BOARD.items() if k in m}}


def load_runs(runs_dir: str | Path) -> list[dict]:
    out = []
    for p in sorted(Path(runs_dir).rglob("run.json")):
        rec = json.loads(p.read_text())
        rec["_file"] = str(p.relative_to(runs_dir))
        out.append(rec)
    return out


def variant_label(rec: dict, host: Any | None = None) -> str:
    """The method name plus every option that differs from its defaults (recorded by the run)."""
    variant = rec.get("variant")
    if variant is None:  # a record from before runs recorded their variant: diff against the defaults
        variant = _variant_from_defaults(rec, host)
        if variant is None:
            return f"{rec['method']} [config {rec['config_hash'][:8]}]"
    return f"{rec['method']} [{', '.join(variant)}]" if variant else rec["method"]


def _variant_from_defaults(rec: dict, host: Any | None) -> list[str] | None:
    from .config import EXECUTION, flatten, resolve

    if host is None:
        return None
    try:
        default = resolve(host, method=rec["method"], scenario=rec["scenario"]).to_dict()
    except Exception:  # the plugin is not installed here
        return None
    a, b = flatten(default), flatten(rec["config"])
    diff = [f"{k}={b[k]}" for k in sorted(b) if k.split(".")[0] not in EXECUTION and a.get(k) != b[k]]
    return [d.replace("selection.name=", "selection=") for d in diff]


def _mean_std(vals: list[float]) -> tuple[float, float | None]:
    vals = [v for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return float("nan"), None
    return statistics.mean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


@dataclass
class Row:
    label: str
    method: str
    kind: str  # measured | reference (Original/Retrain) | paper
    used_splits: str = ""
    selection: str = ""
    oracle: bool = False
    trials: list[int] = field(default_factory=list)
    cells: dict = field(default_factory=dict)  # col -> {"mean", "std", ...}
    gap: float | None = None
    gap_paired: tuple[float, float | None] | None = None
    paired: list[float] = field(default_factory=list)
    wall_s: float | None = None
    mark: str = ""  # "best", "tie" (within noise of the best), or ""
    source: str = ""
    extra: dict = field(default_factory=dict)


def aggregate(records: list[dict], host: Any | None = None) -> dict[str, list[Row]]:

    by_scen: dict[str, dict[tuple, list[dict]]] = {}
    for r in records:
        if (r.get("info") or {}).get("diagnostic"):  # test read at every λ: never a leaderboard row (§5)
            continue
        by_scen.setdefault(r["scenario"], {}).setdefault((r["method"], r["config_hash"]), []).append(r)
    out: dict[str, list[Row]] = {}
    for scen, groups in by_scen.items():
        rows: list[Row] = []
        all_recs = [r for g in groups.values() for r in g]
        has_oracle = all(r.get("retrain") for r in all_recs)
        # Original and Retrain: one per trial, shared by every method (dedup by trial).
        per_trial = {r["trial"]: r for r in sorted(all_recs, key=lambda r: r["_file"])}
        trials = sorted(per_trial)
        for label, key in (("Original (no unlearning)", "original"), ("Retrain (oracle)", "retrain")):
            if key == "retrain" and not has_oracle:
                continue
            rows.append(_row_from(label, key, [_board(per_trial[t][key]) for t in trials],
                                  [per_trial[t].get("retrain") for t in trials], trials, "reference"))
        for (method, _), recs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            recs = sorted(recs, key=lambda r: r["trial"])
            if method == "retrain":
                continue  # the Retrain row above is this model
            row = _row_from(variant_label(recs[0], host), "metrics", [_board(r["metrics"]) for r in recs],
                            [r.get("retrain") for r in recs], [r["trial"] for r in recs], "measured")
            row.method = method
            row.used_splits = recs[0]["used_splits"]
            sel = recs[0].get("selection") or {}
            row.selection = sel.get("rule", "") or ""
            row.oracle = bool(sel.get("oracle"))
            row.wall_s = statistics.mean(r["timings"]["total_s"] for r in recs)
            row.extra = {"lambda": _mean_std([r.get("lambda") for r in recs]),
                         "sparsity": _mean_std([(r.get("sparsity") or {}).get("u_all") for r in recs]),
                         "records": [r["_file"] for r in recs]}
            rows.append(row)
        if has_oracle:
            _mark_best([r for r in rows if r.kind == "measured" and not r.oracle])
        else:  # CLIP negation: no Retrain, so no gap; the paper bolds the lowest Acc Df [P T1]
            _mark_lowest([r for r in rows if r.kind == "measured" and not r.oracle], "acc_forget")
        if host is not None:  # every registered method without a record here: visibly missing, never filled
            seen = {m for m, _ in groups}
            for name in host.methods.names():
                if not has_oracle and "retain" in host.methods.get(name).uses:
                    continue  # CLIP negation has no D_r: such a method cannot run there (runner refuses it)
                if name not in seen:
                    rows.append(Row(label=name, method=name, kind="missing",
                                    used_splits="+".join(sorted(host.methods.get(name).uses)),
                                    cells={c: None for c, _ in METRICS}))
        for paper in PAPER.get(scen, {}).get("rows", []):
            rows.append(Row(label=f"paper: {paper['label']}", method=paper["method"], kind="paper",
                            used_splits=paper["used_splits"], cells={k: v for k, v in paper["cells"].items()
                                                                      if k != "avg_gap"},
                            gap=(paper["cells"]["avg_gap"] or {}).get("mean"), source=PAPER[scen]["table"]))
        out[scen] = rows
    return out


def _row_from(label: str, key: str, metrics: list[dict], retrains: list[dict | None], trials: list[int],
              kind: str, cols: list[tuple[str, str]] = METRICS) -> Row:
    """Mean ± std of each column over trials; Avg. Gap from the trial means (paper-comparable) and
    paired per trial (PROTOCOL §8.3). The CLI's run summary uses it too."""
    from .metrics import avg_gap

    cells = {}
    for col, _ in cols:
        m, s = _mean_std([x.get(col) for x in metrics])
        cells[col] = {"mean": m, "std": s}
    row = Row(label=label, method=key, kind=kind, trials=trials, cells=cells)
    if all(r is not None for r in retrains) and retrains:
        means = {c: cells[c]["mean"] for c in GAP_METRICS}
        ref = {c: statistics.mean(r[c] for r in retrains) for c in GAP_METRICS}
        row.gap = avg_gap(means, ref)[0]
        row.paired = [avg_gap(m, r)[0] for m, r in zip(metrics, retrains)]
        row.gap_paired = _mean_std(row.paired)
    return row


def _mark_lowest_beyond_noise(rows: list[Row], value, std, n) -> None:
    """Mark the row with the lowest ``value`` as best only if every other row is worse by more than
    seed noise (NOISE_Z standard errors of the difference: sqrt(s_b²/n_b + s_r²/n_r)); rows within
    noise, or whose noise is unknown, tie with it. A row with fewer than 2 seeds cannot win; if it looks
    as good as the best, no win can be claimed."""
    rows = [r for r in rows if value(r) is not None and not math.isnan(value(r))]
    single = [r for r in rows if n(r) < 2]  # one seed: its noise is unknown
    rows = [r for r in rows if n(r) >= 2]
    if not rows:
        return
    best = min(rows, key=lambda r: (value(r), r.label))
    if any(value(r) <= value(best) for r in single):
        best.mark = "tie"
        return
    tied = []
    for r in rows:
        if r is best:
            continue
        if std(best) is None or std(r) is None:
            tied.append(r)
            continue
        se = math.sqrt(std(best) ** 2 / n(best) + std(r) ** 2 / n(r))
        if value(r) - value(best) <= NOISE_Z * se:
            tied.append(r)
    best.mark = "tie" if tied else "best"
    for r in tied:
        r.mark = "tie"


def _mark_best(rows: list[Row]) -> None:
    """Bold the lowest Avg. Gap beyond the noise of the paired per-trial gaps."""
    _mark_lowest_beyond_noise(rows, lambda r: r.gap, lambda r: r.gap_paired[1] if r.gap_paired else None,
                              lambda r: len(r.paired))


def _mark_lowest(rows: list[Row], col: str) -> None:
    """Bold the lowest mean of ``col`` beyond seed noise (unpaired, from the per-column std)."""
    def std(r):
        return (r.cells.get(col) or {}).get("std")

    _mark_lowest_beyond_noise(rows, lambda r: (r.cells.get(col) or {}).get("mean"), std,
                              lambda r: len(r.trials) if std(r) is not None else 1)


# -- like for like ------------------------------------------------------------------------------

def _origin(rec: dict, key: str) -> tuple:
    """What identifies the model ``key`` (original / retrain) a record was scored against: its
    weights' digest where recorded (split by ``_split_by_weights``), and always its measured metrics (records written before
    weights_digest existed, or on another device, still differ there)."""
    m = rec.get(key) or {}
    return tuple((k, round(float(m[k]), 4)) for k in sorted(m) if isinstance(m[k], (int, float)))


def _split_by_weights(group: list[dict]) -> list[list[dict]]:
    """Records with equal metrics but different recorded original weights are still different
    models; records without a recorded hash join the first hashed part."""
    by_sha: dict[str | None, list[dict]] = {}
    for r in group:
        by_sha.setdefault((r.get("weights_digest") or {}).get("original"), []).append(r)
    known = [v for k, v in by_sha.items() if k is not None]
    if len(known) <= 1:
        return [group]
    known[0] += by_sha.get(None, [])
    return known


def _describe(group: list[dict]) -> str:
    methods = sorted({r["method"] for r in group})
    more = ", ..." if len(methods) > 4 else ""
    return f"{len(group)} record(s) from {', '.join(sorted({where(r) for r in group}))} ({', '.join(methods[:4])}{more})"


def consistency(records: list[dict]) -> dict[str, list[str]]:
    """Per scenario, one warning per trial whose records were not all unlearned from the same
    original model (and scored against the same Retrain).

    The store key of an original names its recipe; the weights it holds depend on the device
    and library versions that trained it. Records from two machines can therefore carry the same
    trial number yet start from different originals: each record stays internally sound (its
    metrics and Avg. Gap use its own Original and Retrain), but rows built on different ones
    are not like for like, and the Original/Retrain rows can show only one of them."""
    out: dict[str, list[str]] = {}
    by: dict[tuple[str, int], list[dict]] = {}
    for r in records:
        if (r.get("info") or {}).get("diagnostic"):
            continue
        by.setdefault((r["scenario"], r["trial"]), []).append(r)
    for (scen, trial), recs in sorted(by.items()):
        groups: dict[tuple, list[dict]] = {}
        for r in recs:
            groups.setdefault((_origin(r, "original"), _origin(r, "retrain")), []).append(r)
        split = [part for g in groups.values() for part in _split_by_weights(g)]
        if len(split) > 1:
            parts = "; ".join(_describe(g) for g in sorted(split, key=len, reverse=True))
            out.setdefault(scen, []).append(
                f"trial {trial}: records unlearned {len(split)} different original models: {parts}. Each record is "
                "scored against its own Original and Retrain, but rows built on different originals are not like "
                "for like, and the Original/Retrain rows show only one of them.")
    return out


# -- rendering ----------------------------------------------------------------------------------

def _cell(c: dict | None) -> str:
    if c is None or c.get("mean") is None or (isinstance(c["mean"], float) and math.isnan(c["mean"])):
        return "–"  # missing stays visibly missing
    s = f"{c['mean']:.2f}"
    if c.get("std") is not None:
        s += f" ± {c['std']:.2f}"
    if c.get("derived"):
        s += " (derived)"
    return s


def _gap(row: Row) -> str:
    if row.gap is None:
        return "–"
    s = f"{row.gap:.2f}"
    return f"**{s}**" if row.mark == "best" else (f"{s} ≈" if row.mark == "tie" else s)


def _paired(row: Row) -> str:
    if not row.gap_paired:
        return "–"
    m, s = row.gap_paired
    return f"{m:.2f}" + (f" ± {s:.2f}" if s is not None else "")


HEAD = ["Method", "Used splits", "Selection", "Acc Dr", "Acc Df", "Acc Dtest", "MIA", "Avg. Gap",
        "Avg. Gap (paired)", "Seeds", "Wall s"]


def _cells(row: Row) -> list[str]:
    sel = row.selection + (" (ORACLE)" if row.oracle else "")
    if row.kind == "missing":
        sel = "not run yet"
    cells = [_cell(row.cells.get(c)) for c, _ in METRICS]
    if row.gap is None and row.mark and row.kind == "measured":  # CLIP: the mark is on Acc Df
        i = [c for c, _ in METRICS].index("acc_forget")
        cells[i] = f"**{cells[i]}**" if row.mark == "best" else f"{cells[i]} ≈"
    return [row.label, row.used_splits or "–", sel or "–", *cells,
            _gap(row), _paired(row), str(len(row.trials)) if row.trials else "–",
            f"{row.wall_s:.1f}" if row.wall_s is not None else "–"]


def _md_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def _sections(rows: list[Row]) -> list[tuple[str, list[Row]]]:
    ref = [r for r in rows if r.kind == "reference"]
    def rank(r):
        if r.gap is not None:
            return r.gap
        c = r.cells.get("acc_forget") or {}
        return c["mean"] if c.get("mean") is not None and not math.isnan(c["mean"]) else math.inf

    measured = sorted([r for r in rows if r.kind == "measured" and not r.oracle], key=lambda r: (rank(r), r.label))
    oracle = [r for r in rows if r.kind == "measured" and r.oracle]
    paper = [r for r in rows if r.kind == "paper"]
    missing = sorted([r for r in rows if r.kind == "missing"], key=lambda r: r.label)
    out = [("Methods (oracle-free selection)", ref + measured + missing)]
    if oracle:
        out.append(("Oracle selection: reads test and the Retrain model, reproduces the paper's tuning; "
                    "not a usable unlearning procedure (PROTOCOL §5(b))", oracle))
    if paper:
        out.append((f"The paper's reported numbers ({paper[0].source}), for orientation; not measured here", paper))
    return out


def render_markdown(scen: str, rows: list[Row], plots: list[str], warnings: list[str] | None = None) -> str:
    parts = [f"# {scen}", "", *(f"> **Not like for like.** {w}\n" for w in warnings or []),
             "Generated by `unlearnbench leaderboard` from the run records in `runs/`; do not edit by hand.",
             "Mean ± std over seeds. Avg. Gap: mean |Δ| to Retrain over Acc Dr, Acc Df, Acc Dtest, MIA, from the "
             "trial means (paper-comparable); paired: per trial, then mean ± std. **Bold** = lowest Avg. Gap, "
             "separated from every other row by more than seed noise; ≈ = within noise of the lowest.", ""]
    if not any(r.gap is not None for r in rows if r.kind in ("measured", "reference")):  # CLIP negation
        parts[-2] = ("Mean ± std over seeds. CLIP dataset negation (PROTOCOL §8.4): Acc Dr is ImageNet val (the "
                     "control), Acc Df the forget data set's test split; there is no Retrain, so no Avg. Gap. "
                     "**Bold** = lowest Acc Df, separated from every other row by more than seed noise; ≈ = within "
                     "noise of the lowest.")
    for title, rs in _sections(rows):
        parts += [f"## {title}", "", _md_table(rs), ""]
    if scen not in PAPER:
        parts += ["The paper reports no numbers for this scenario.", ""]
    for p in plots:
        parts += [f"![{p}](plots/{p})", ""]
    return "\n".join(parts)


def render_csv(rows: list[Row]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = [c for c, _ in METRICS]
    w.writerow(["kind", "method", "label", "used_splits", "selection", "oracle", "seeds",
                *[f"{c}_{s}" for c in cols for s in ("mean", "std")], "avg_gap", "avg_gap_paired_mean",
                "avg_gap_paired_std", "mark", "wall_s", "source"])

    def num(x):
        return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"

    for r in [r for _, rs in _sections(rows) for r in rs]:
        vals = []
        for c in cols:
            cell = r.cells.get(c) or {}
            vals += [num(cell.get("mean")), num(cell.get("std"))]
        gp = r.gap_paired or (None, None)
        w.writerow([r.kind, r.method, r.label, r.used_splits, r.selection, int(r.oracle), len(r.trials), *vals,
                    num(r.gap), num(gp[0]), num(gp[1]), r.mark, num(r.wall_s), r.source])
    return buf.getvalue()


SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var asc = th.getAttribute('data-dir') !== 'asc';
      table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('data-dir'); });
      th.setAttribute('data-dir', asc ? 'asc' : 'desc');
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute('data-sort'), y = b.cells[col].getAttribute('data-sort');
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _sort_key(row: Row, i: int) -> str:
    cols = [None, None, None, *[c for c, _ in METRICS], "gap", "paired", "seeds", "wall"]
    key = cols[i]
    if key is None:
        return _cells(row)[i]
    if key == "gap":
        v = row.gap
    elif key == "paired":
        v = row.gap_paired[0] if row.gap_paired else None
    elif key == "seeds":
        v = len(row.trials)
    elif key == "wall":
        v = row.wall_s
    else:
        v = (row.cells.get(key) or {}).get("mean")
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.6f}"


def render_html(tables: dict[str, list[Row]], plots: dict[str, list[str]],
                warnings: dict[str, list[str]] | None = None) -> str:
    e = html.escape
    body = []
    for scen, rows in tables.items():
        body.append(f'<section id="{e(scen)}"><h2>{e(scen)}</h2>')
        for w in (warnings or {}).get(scen, []):
            body.append(f'<p class="warn"><strong>Not like for like.</strong> {e(w)}</p>')
        for title, rs in _sections(rows):
            body.append(f"<h3>{e(title)}</h3><table class=\"sortable\"><thead><tr>"
                        + "".join(f"<th>{e(h)}</th>" for h in HEAD) + "</tr></thead><tbody>")
            for r in rs:
                cls = f' class="{r.mark}{" df" if r.gap is None else ""}"' if r.mark else ""  # df: CLIP, on Acc Df
                cells = _cells(r)
                body.append(f"<tr{cls}>" + "".join(
                    f'<td data-sort="{e(_sort_key(r, i))}">{e(c.replace("**", ""))}</td>'
                    for i, c in enumerate(cells)) + "</tr>")
            body.append("</tbody></table>")
        for p in plots.get(scen, []):
            body.append(f'<figure><img src="plots/{e(p)}" alt="{e(p)}"><figcaption>{e(p)}</figcaption></figure>')
        body.append("</section>")
    nav = " · ".join(f'<a href="#{e(s)}">{e(s)}</a>' for s in tables)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>unlearnbench leaderboard"
            "</title><style>body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;"
            "margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}td:first-child,"
            "th:first-child{text-align:left}th{cursor:pointer;background:#f3f3f3}tr.best td{font-weight:bold;"
            "background:#e8f6e8}tr.tie td:nth-child(8){background:#f6f6e0}tr.tie.df td:nth-child(5){background:#f6f6e0}"
            "p.warn{background:#fde8e8;padding:.5em}img{max-width:48em}</style></head><body>"
            "<h1>unlearnbench leaderboard</h1><p>Generated by <code>unlearnbench leaderboard</code> from recorded "
            "runs; mean ± std over seeds; click a column to sort. Bold row: lowest Avg. Gap (CLIP negation: lowest "
            "Acc Df) beyond seed noise; ≈: within noise of the lowest. Oracle-selected rows are in their own table.</p>"
            f"<nav>{nav}</nav>" + "".join(body) + f"<script>{SORT_JS}</script></body></html>\n")


def render_index(tables: dict[str, list[Row]], records: list[dict]) -> str:
    lines = ["# Leaderboards", "",
             "Generated by `unlearnbench leaderboard runs --out .` (from this folder) from the run records in `runs/`; "
             "never edited by hand. Open `index.html` for sortable tables with the plots.", "",
             "| Scenario | Methods measured | Seeds | Devices | Table |", "|---|---|---|---|---|"]
    for scen, rows in tables.items():
        recs = [r for r in records if r["scenario"] == scen]
        devices = sorted({(r.get("provenance") or {}).get("gpu") or (r.get("provenance") or {}).get("cpu") or "?"
                          for r in recs})
        measured = sorted({r.method for r in rows if r.kind == "measured"})
        seeds = sorted({r["trial"] for r in recs})
        lines.append(f"| {scen} | {len(measured)} | {', '.join(map(str, seeds))} | {'; '.join(devices)} | "
                     f"[{scen}.md]({scen}.md) |")
    return "\n".join(lines) + "\n"


def build(runs_dir: str | Path, out_dir: str | Path, host: Any | None = None) -> dict:
    """Write <scenario>.md/.csv, plots/*.png and index.html under ``out_dir``; returns what was written."""
    from .plots import make_plots

    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    records = load_runs(runs_dir)
    tables = aggregate(records, host)
    order = sorted(tables, key=lambda s: (SCENARIO_ORDER.index(s) if s in SCENARIO_ORDER else 99, s))
    tables = {s: tables[s] for s in order}
    warnings = consistency(records)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "plots").mkdir(exist_ok=True)
    written, plots = [], {}
    for scen, rows in tables.items():
        plots[scen] = make_plots(scen, [r for r in records if r["scenario"] == scen], rows, out_dir / "plots")
        (out_dir / f"{scen}.md").write_text(render_markdown(scen, rows, plots[scen], warnings.get(scen)))
        (out_dir / f"{scen}.csv").write_text(render_csv(rows))
        written += [f"{scen}.md", f"{scen}.csv", *(f"plots/{p}" for p in plots[scen])]
    (out_dir / "index.html").write_text(render_html(tables, plots, warnings))
    (out_dir / "README.md").write_text(render_index(tables, records))
    written += ["index.html", "README.md"]
    return {"records": len(records), "scenarios": list(tables), "written": written,
            "warnings": {s: w for s, w in warnings.items() if s in tables}}
