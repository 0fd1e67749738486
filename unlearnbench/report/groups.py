"""Group boards: scenarios a paper reports as one table, side by side with their unweighted mean
(``ScenarioGroup``; PROTOCOL §8.4). Which scenarios form a group, their columns and the paper's rows
come from the scenario plugins (``Scenario.group``), never from this module.

Per value of the group's ``split_by`` config key (e.g. an architecture) one table: the row of θ_0
(each record's ``original``), one row per method and variant (the variant without the
split key, so one row spans the members), a member's cell the mean ± std over its seeds, and the mean
over all members. A member a row has no records for is "–", and that row's mean is not given: it says
"– (k of n)", never a mean over fewer members. The paper's rows follow, labelled as the paper's.
"""
from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from ..config import flatten
from .checks import BoardError


def groups_of(host: Any | None) -> list:
    """The registered scenarios' groups, each once, by name; two different groups of one name, or a
    group named like a scenario (its board would overwrite that scenario's), are an error."""
    if host is None:
        return []
    found: dict[str, Any] = {}
    names = set(host.scenarios.names())
    for name in sorted(names):
        g = getattr(host.scenarios.get(name), "group", None)
        if g is None:
            continue
        if g.name in found and found[g.name] != g:
            raise BoardError(f"two scenario groups are named {g.name!r}; each group needs its own name")
        if g.name in names:
            raise BoardError(f"scenario group {g.name!r} has a scenario's name: its board would replace that board")
        found[g.name] = g
    return [found[n] for n in sorted(found)]


@dataclass
class GroupRow:
    label: str
    role: str  # reference (the pretrained model) | measured | missing (no record at this split) | paper
    method: str = ""
    cells: dict = field(default_factory=dict)  # member -> {metric: {"mean", "std", "n"}} (absent: no record)
    mean: dict = field(default_factory=dict)  # metric -> mean over all members, or None
    present: int = 0  # members with a number for every column


def _stats(vals: list[float]) -> dict | None:
    vals = [v for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None
    return {"mean": statistics.mean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else None, "n": len(vals)}


def _complete(row: GroupRow, group) -> GroupRow:
    """The row's mean over all members where it has every one; else no mean (``present`` says how many)."""
    metrics = [c for c, _ in group.columns]
    have = [m for m, _ in group.members if all((row.cells.get(m) or {}).get(c) for c in metrics)]
    row.present = len(have)
    full = len(have) == len(group.members)
    row.mean = {c: statistics.mean(row.cells[m][c]["mean"] for m, _ in group.members) if full else None
                for c in metrics}
    return row


def _label(rec: dict, split_by: str) -> str:
    """The method and its variant without the split key: one row across the members."""
    variant = [v for v in rec.get("variant") or [] if not (split_by and v.startswith(f"{split_by}="))]
    oracle = " [ORACLE]" if (rec.get("selection") or {}).get("oracle") else ""
    return (f"{rec['method']} [{', '.join(variant)}]" if variant else rec["method"]) + oracle


def group_tables(group, records: list[dict]) -> dict[str, list[GroupRow]]:
    """{split value: rows} for ``group`` from ``records`` (those of other scenarios are ignored); the
    split values in the group's order, then any others sorted. Empty when no member has a record."""
    members = [m for m, _ in group.members]
    metrics = [c for c, _ in group.columns]
    recs = [r for r in records if r["scenario"] in members and not (r.get("info") or {}).get("diagnostic")]
    if not recs:
        return {}
    # one record per (split, row, member, trial): the last by path, as the scenario boards take it
    by: dict[str, dict[str, dict[str, dict[int, dict]]]] = {}
    for r in sorted(recs, key=lambda r: r.get("_file", "")):
        split = str(flatten(r.get("config") or {}).get(group.split_by, "")) if group.split_by else ""
        by.setdefault(split, {}).setdefault(_label(r, group.split_by), {}).setdefault(r["scenario"], {})[r["trial"]] = r
    order = [v for v, _ in group.split_labels]
    paper_splits = {p["split"] for p in group.paper}
    splits = [v for v in order if v in by or v in paper_splits] + sorted(v for v in by if v not in order)
    labels = sorted({lb for rows in by.values() for lb in rows})
    out = {}
    for split in splits:
        rows_here = by.get(split, {})
        pre = GroupRow(group.reference, "reference", "original")
        for m in members:  # θ_0's numbers, one per trial, shared by every method's record of that trial
            trials: dict[int, dict] = {}
            for per_member in rows_here.values():
                trials.update({t: r for t, r in per_member.get(m, {}).items() if r.get("original")})
            if trials:
                cells = {c: _stats([trials[t]["original"].get(c) for t in sorted(trials)]) for c in metrics}
                if any(cells.values()):
                    pre.cells[m] = cells
        rows = [_complete(pre, group)] if rows_here else []
        measured = []
        for label in labels:
            if label not in rows_here:
                if rows_here:  # run at another split only: visibly missing here
                    measured.append(GroupRow(label, "missing", label.split(" [")[0]))
                continue
            row = GroupRow(label, "measured", label.split(" [")[0])
            for m, trials in rows_here[label].items():
                row.cells[m] = {c: _stats([trials[t]["metrics"].get(c) for t in sorted(trials)]) for c in metrics}
            measured.append(_complete(row, group))
        rank = metrics[0]  # the first column orders the table (CLIP: the lowest mean Acc Df [P T1])
        measured.sort(key=lambda r: (r.role == "missing", r.mean.get(rank) is None,
                                     r.mean.get(rank) if r.mean.get(rank) is not None else 0.0, r.label))
        rows += measured
        for p in group.paper:
            if p["split"] != split:
                continue
            prow = GroupRow(f"paper: {p['label']}", "paper", p.get("method", ""))
            for m, vals in (p.get("cells") or {}).items():
                prow.cells[m] = {c: ({"mean": float(vals[c]), "std": None, "n": 1} if vals.get(c) is not None
                                     else None) for c in metrics}
            prow.present = sum(all(prow.cells.get(m, {}).get(c) for c in metrics) for m in members)
            prow.mean = {c: (p.get("mean") or {}).get(c) for c in metrics}  # the paper's own mean, as printed
            rows.append(prow)
        out[split] = rows
    return out


def _num(s: dict | None) -> str:
    if not s:
        return "–"
    return f"{s['mean']:.2f}" + (f" ± {s['std']:.2f}" if s.get("std") is not None else "")


def _cell(row: GroupRow, member: str, metrics: list[str]) -> str:
    cell = row.cells.get(member)
    if not cell or not any(cell.values()):
        return "–"
    return " / ".join(_num(cell.get(c)) for c in metrics)


def _mean_cell(row: GroupRow, group) -> str:
    metrics = [c for c, _ in group.columns]
    n = len(group.members)
    if any(row.mean.get(c) is not None for c in metrics):
        text = " / ".join("–" if row.mean.get(c) is None else f"{row.mean[c]:.2f}" for c in metrics)
        # the paper's mean is printed where its per-member cells are not given: say so, not "k of n"
        return text if row.role != "paper" or row.present in (0, n) else f"{text} (paper's mean)"
    return f"– ({row.present} of {n})"


def _seeds(row: GroupRow) -> str:
    ns = sorted({s["n"] for cell in row.cells.values() for s in cell.values() if s} if row.role != "paper" else set())
    if not ns:
        return "–"
    return str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"


def render_group_markdown(group, tables: dict[str, list[GroupRow]]) -> str:
    metrics = [c for c, _ in group.columns]
    heads = " / ".join(h for _, h in group.columns)
    split_names = dict(group.split_labels)
    n = len(group.members)
    parts = [f"# {group.name}", "", group.title, "",
             "Generated by `unlearnbench leaderboard` from the run records in `runs/`; do not edit by hand.",
             group.legend, "",
             (f"Each member cell is {heads}; Mean ({n}) is the unweighted mean over all {n} "
              f"({', '.join(h for _, h in group.members)}). A row without all {n} has no mean: its Mean cell says "
              f"how many it has (\"– (k of {n})\"), never a mean over fewer."), ""]
    head = ["Method", "Seeds", *(h for _, h in group.members), f"Mean ({n})"]
    for split, rows in tables.items():
        title = split_names.get(split, split or "all runs")
        parts += [f"## {title}" + (f" (`{group.split_by}={split}`)" if group.split_by and split else ""), ""]
        ours = [r for r in rows if r.role != "paper"]
        if ours:
            absent = [h for m, h in group.members if not any(m in r.cells for r in ours if r.role == "measured")]
            if absent:
                parts += [f"**Not run here yet:** {', '.join(absent)}; no row has a mean over the {n}.", ""]
            parts += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for r in ours:
                label = f"{r.label} (not run here yet)" if r.role == "missing" else r.label
                parts.append("| " + " | ".join([label, _seeds(r), *(_cell(r, m, metrics) for m, _ in
                                                                            group.members), _mean_cell(r, group)])
                             + " |")
            parts.append("")
        else:
            parts += [f"No runs at {title} yet.", ""]
        paper = [r for r in rows if r.role == "paper"]
        if paper:
            parts += [f"The paper's reported numbers ({group.paper_source}), for orientation; not measured here:", "",
                      "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for r in paper:
                parts.append("| " + " | ".join([r.label, "–", *(_cell(r, m, metrics) for m, _ in group.members),
                                                _mean_cell(r, group)]) + " |")
            parts.append("")
    return "\n".join(parts)


def render_group_csv(group, tables: dict[str, list[GroupRow]]) -> str:
    """One line per row: its split, each member's mean and std per metric, the mean over all members
    (empty unless the row has every member) and how many members it has."""
    metrics = [c for c, _ in group.columns]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["kind", "split", "method", "label",
                *[f"{m}_{c}_{s}" for m, _ in group.members for c in metrics for s in ("mean", "std")],
                *[f"mean_{c}" for c in metrics], "members", "source"])

    def num(x):
        return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"

    for split, rows in tables.items():
        for r in rows:
            vals = []
            for m, _ in group.members:
                for c in metrics:
                    s = (r.cells.get(m) or {}).get(c) or {}
                    vals += [num(s.get("mean")), num(s.get("std"))]
            w.writerow([r.role, split, r.method, r.label, *vals, *[num(r.mean.get(c)) for c in metrics],
                        f"{r.present} of {len(group.members)}", group.paper_source if r.role == "paper" else ""])
    return buf.getvalue()
