"""The boards as text: a Markdown table and a CSV per scenario, and the index (leaderboards/README.md).
The HTML page is ``page``'s.

Missing numbers stay visibly missing ("–"), oracle-selected rows get their own table, and the
paper's rows are labelled as the paper's.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import math

from .rows import METRICS, Row, seeds_over

# The classifier board's sentence on its columns; a scenario with other columns brings its own
# (``Scoring.legend``, recorded in each run.json).
LEGEND = ("Mean ± std over seeds. Avg. Gap: mean |Δ| to Retrain over Acc Dr, Acc Df, Acc Dtest, MIA, from the "
          "trial means (paper-comparable); paired: per trial, then mean ± std. **Bold** = lowest Avg. Gap, "
          "separated from every other row by more than seed noise; ≈ = within noise of the lowest.")


def format_cell(c: dict | None) -> str:
    """A mean ± std cell (``{"mean", "std", "derived"}``) as the boards and the run summary print it."""
    if c is None or c.get("mean") is None or (isinstance(c["mean"], float) and math.isnan(c["mean"])):
        return "–"  # missing stays visibly missing
    s = f"{c['mean']:.2f}"
    if c.get("std") is not None:
        s += f" ± {c['std']:.2f}"
    if c.get("derived"):
        s += " (derived)"
    if c.get("of") and c.get("n", c["of"]) < c["of"]:  # a NaN or missing metric in some seed: say over how many
        s += f" (n={c['n']})"
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
    n = f" (n={len(row.paired)})" if row.trials and len(row.paired) < len(row.trials) else ""
    return f"{m:.2f}" + (f" ± {s:.2f}" if s is not None else "") + n


def _seeds(row: Row) -> str:
    """The row's seed count; "2 of 3" when some number of the row is a mean over fewer seeds (a NaN
    or missing metric in a trial), the cell itself saying "(n=2)"."""
    if not row.trials:
        return "–"
    low = seeds_over(row)
    return f"{low} of {len(row.trials)}" if low is not None else str(len(row.trials))


HEAD = ["Method", "Used splits", "Selection", "Acc Dr", "Acc Df", "Acc Dtest", "MIA", "Avg. Gap",
        "Avg. Gap (paired)", "Seeds", "Wall s"]


def cells(row: Row) -> list[str]:
    sel = row.selection + (" (ORACLE)" if row.oracle else "")
    if row.role == "missing":
        sel = "not run yet"
    cells = [format_cell(row.cells.get(c)) for c, _ in METRICS]
    if row.rank != "avg_gap" and row.mark and row.role == "measured":  # the mark sits on the rank column
        i = [c for c, _ in METRICS].index(row.rank)
        cells[i] = f"**{cells[i]}**" if row.mark == "best" else f"{cells[i]} ≈"
    return [row.label, row.used_splits or "–", sel or "–", *cells,
            _gap(row), _paired(row), _seeds(row),
            f"{row.wall_s:.1f}" if row.wall_s is not None else "–"]


def _md_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def _sections(rows: list[Row]) -> list[tuple[str, list[Row]]]:
    return [(title, rs) for _, title, rs in sections(rows)]


def sections(rows: list[Row]) -> list[tuple[str, str, list[Row]]]:
    """The board's tables in order, each (view, title, rows): view "free" (the oracle-free ranking),
    "oracle" (rows an ORACLE rule chose) or "paper" (the paper's numbers); the page switches by view."""
    ref = [r for r in rows if r.role == "reference"]
    def rank(r):
        if r.gap is not None:
            return r.gap
        c = r.cells.get(r.rank) or {}
        return c["mean"] if c.get("mean") is not None and not math.isnan(c["mean"]) else math.inf

    measured = sorted([r for r in rows if r.role == "measured" and not r.oracle and not r.none_feasible],
                      key=lambda r: (rank(r), r.label))
    # the original's numbers under a method's name (§7.3 step 3): below the ranked rows, never in their order
    measured += sorted([r for r in rows if r.role == "measured" and not r.oracle and r.none_feasible],
                       key=lambda r: r.label)
    oracle = [r for r in rows if r.role == "measured" and r.oracle and not r.extra.get("rule")]
    by_rule = sorted([r for r in rows if r.role == "measured" and r.oracle and r.extra.get("rule")],
                     key=lambda r: (rank(r), r.label))
    paper = [r for r in rows if r.role == "paper"]
    missing = sorted([r for r in rows if r.role == "missing"], key=lambda r: r.label)
    out = [("free", "Methods (oracle-free selection)", ref + measured + missing)]
    if by_rule:  # protocol 2: every method again, at the ORACLE rule's choice on the same curves (§5(d))
        orig = [dataclasses.replace(r, mark=r.oracle_mark) for r in ref if r.method == "original"]
        out.append(("oracle", f"ORACLE: the same runs at `{by_rule[0].extra['rule']}`'s choice (reads test and the "
                    "Retrain model; comparable with the paper's tuned rows, not a usable unlearning procedure; "
                    "PROTOCOL §5(b), §5(d))", orig + by_rule))
    if oracle:
        out.append(("oracle", "Oracle selection: reads test and the Retrain model, reproduces the paper's tuning; "
                    "not a usable unlearning procedure (PROTOCOL §5(b))", oracle))
    if paper:
        out.append(("paper", f"The paper's reported numbers ({paper[0].source}), for orientation; not measured here",
                    paper))
    return out


def optimism_table(opt: list[dict]) -> str:
    """Selection optimism (PROTOCOL §5(d) b''), one row per method, as a Markdown table."""
    def cell(ms) -> str:
        m, s = ms
        return "–" if m is None or (isinstance(m, float) and math.isnan(m)) else \
            f"{m:.2f}" + (f" ± {s:.2f}" if s is not None else "")

    lines = ["| Method | Avg. Gap on half A (chosen on) | Avg. Gap on half B | Optimism (B − A) | Points looked at | Seeds |",
             "|---|---|---|---|---|---|"]
    for o in sorted(opt, key=lambda o: o["label"]):
        if not o["n"]:
            lines.append(f"| {o['label']} | – | – | – (no rule chose its result) | – | – |")
            continue
        looks = o["looks"][0]
        lines.append(f"| {o['label']} | {cell(o['gap_a'])} | {cell(o['gap_b'])} | {cell(o['optimism'])} | "
                     f"{'–' if looks is None or math.isnan(looks) else f'{looks:.0f}'} | {o['n']} |")
    return "\n".join(lines)


OPTIMISM_NOTE = ("How much of an oracle's number is selection on test noise: `oracle_split_test` chooses on test "
                 "half A (and the MIA non-members in it) and is scored on both halves; optimism = gap(B) − "
                 "gap(A). A method that looks at the criterion more often (Task Arithmetic: pool × λ points) is "
                 "expected to show more. ORACLE; never ranked (PROTOCOL §5(d)).")


def render_markdown(scen: str, rows: list[Row], plots: list[str], warnings: list[str] | None = None,
                    notes: list[str] | None = None, optimism: list[dict] | None = None) -> str:
    """``notes``: the board's lines on its records (``checks.board_notes``), each its own paragraph;
    ``optimism``: the rows of the selection-optimism table (``rows.optimism_rows``), protocol 2."""
    legend = next((r.legend for r in rows if r.legend), "") or LEGEND
    parts = [f"# {scen}", "", *(f"> **Not like for like.** {w}\n" for w in warnings or []),
             *(f"{n}\n" for n in notes or []),
             "Generated by `unlearnbench leaderboard` from the run records in `runs/`; do not edit by hand.",
             legend, ""]
    for title, rs in _sections(rows):
        parts += [f"## {title}", "", _md_table(rs), ""]
    if optimism:
        parts += ["## Selection optimism (ORACLE)", "", OPTIMISM_NOTE, "", optimism_table(optimism), ""]
    if not any(r.role == "paper" for r in rows):
        parts += ["The paper reports no numbers for this scenario.", ""]
    for p in plots:
        parts += [f"![{p}](plots/{p})", ""]
    return "\n".join(parts)


def render_csv(rows: list[Row]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = [c for c, _ in METRICS]
    # "kind" is the row's role (measured, reference, paper, missing): the published CSV header is kept
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
        seeds = len(r.trials) if seeds_over(r) is None else _seeds(r)  # "2 of 3": see _seeds
        w.writerow([r.role, r.method, r.label, r.used_splits, r.selection, int(r.oracle), seeds, *vals,
                    num(r.gap), num(gp[0]), num(gp[1]), r.mark, num(r.wall_s), r.source])
    return buf.getvalue()


def sort_key(row: Row, i: int) -> str:
    cols = [None, None, None, *[c for c, _ in METRICS], "gap", "paired", "seeds", "wall"]
    key = cols[i]
    if key is None:
        return cells(row)[i]
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


def compare_versions(old: dict[str, list[Row]], old_protocol: int | None, new: dict[str, list[Row]],
                     new_protocol: int | None, where: str = "") -> str:
    """A Markdown table of each method's Avg. Gap (oracle-free, and ORACLE where the newer board has it)
    under two protocol versions, per scenario both boards have (issue 16: what v2 changed in the ranking).
    Default configurations only, matched by method; a method on one board only shows "–" on the other."""
    a, b = f"v{old_protocol or 1}", f"v{new_protocol or 1}"

    def gaps(rows: list[Row], oracle: bool) -> dict[str, Row]:
        # default configurations only (label = method): variants such as n-ablation points are on the boards
        return {r.method: r for r in rows if r.role == "measured" and r.oracle == oracle
                and r.label.replace(" [ORACLE]", "") == r.method and (not oracle or r.extra.get("rule"))}

    def g(r: Row | None) -> str:
        if r is None or r.gap is None:
            return "–"
        return f"{r.gap:.2f}" + (" (no feasible setting)" if r.none_feasible else "")

    lines = [f"## Avg. Gap under protocol {a} and {b}", "",
             f"Generated from both versions' records (PROTOCOL §11 lists what changed). Oracle-free selection "
             f"unless marked ORACLE; lower is better. The {a} records are in `{where}`, their boards beside them.", ""]
    for scen in sorted(set(old) & set(new)):
        o, n, no = gaps(old[scen], False), gaps(new[scen], False), gaps(new[scen], True)
        orig_o = next((r for r in old[scen] if r.method == "original"), None)
        orig_n = next((r for r in new[scen] if r.method == "original"), None)
        lines += [f"### {scen}", "", f"| Method | {a} | {b} | {b} ORACLE |", "|---|---|---|---|",
                  f"| Original (no unlearning) | {g(orig_o)} | {g(orig_n)} | {g(orig_n)} |"]
        for label in sorted(set(o) | set(n)):
            lines.append(f"| {label} | {g(o.get(label))} | {g(n.get(label))} | {g(no.get(label))} |")
        lines.append("")
    missing = sorted(set(old) - set(new))
    if missing:
        lines += [f"Not yet regenerated under {b}: {', '.join(missing)} (their {a} boards are beside `{where}`).", ""]
    return "\n".join(lines)


def render_index(tables: dict[str, list[Row]], records: list[dict], versions: str | None = None,
                 compare: str | None = None, claims: bool = False, groups: list[tuple[str, str]] | None = None) -> str:
    cmd = "unlearnbench leaderboard runs --out ." + (f" --compare {compare}" if compare else "")
    lines = ["# Leaderboards", "",
             f"Generated by `{cmd}` (from this folder) from the run records in `runs/`; "
             "never edited by hand. Open `index.html` (a static page: from disk or any static host) for the "
             "tables with their filters, each row's records, config and rerun command, the plots, and the claims "
             "as forest plots.", "",
             "| Scenario | Methods measured | Seeds | Devices | Table |", "|---|---|---|---|---|"]
    for scen, rows in tables.items():
        recs = [r for r in records if r["scenario"] == scen]
        devices = sorted({(r.get("provenance") or {}).get("gpu") or (r.get("provenance") or {}).get("cpu") or "?"
                          for r in recs})
        measured = sorted({r.method for r in rows if r.role == "measured"})
        seeds = sorted({r["trial"] for r in recs})
        lines.append(f"| {scen} | {len(measured)} | {', '.join(map(str, seeds))} | {'; '.join(devices)} | "
                     f"[{scen}.md]({scen}.md) |")
    for name, title in groups or []:  # boards over a group of scenarios (report.groups), listed only when written
        lines += ["", f"**[{name}]({name}.md)**: {title}."]
    if claims:
        lines += ["", "**[Does the paper's story hold without an oracle?](claims.md)** Each of the NegMerge "
                  "paper's claims, checked on these boards under each rule: supported, refuted or within noise."]
    if versions:
        lines += ["", versions.rstrip()]
    return "\n".join(lines) + "\n"
