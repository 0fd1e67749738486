"""Board rows from run records, and the noise rule that marks a winner.

Rows are grouped by (method, config hash) and aggregated over trials: mean ± std, the number of
seeds, Avg. Gap from the trial means (paper-comparable) and paired per trial (PROTOCOL §8.3). The
best Avg. Gap (or, for a scenario without a Retrain, the lowest of its rank column) is marked only
when it is separated from the runner-up by more than seed noise.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from ..metrics import GAP_METRICS
from ..scenario import Scoring
from .families import REFERENCE, family_of
from .records import is_missing

METRICS = [("acc_retain", "Acc Dr"), ("acc_forget", "Acc Df"), ("acc_test", "Acc Dtest"), ("mia", "MIA")]
NOISE_Z = 2.0  # a win needs mean difference > 2 standard errors of the difference (~95%)


def scoring_of(rec: dict) -> Scoring:
    """The Scoring a record was made under (records from before it was recorded: the defaults)."""
    doc = rec.get("scoring")
    if not doc:
        return Scoring()
    return Scoring(board=tuple(doc["board"].items()), rank=doc.get("rank", "avg_gap"), legend=doc.get("legend", ""),
                   summary=tuple(tuple(c) for c in doc.get("summary", Scoring().summary)))


def variant_label(rec: dict, host: Any | None = None) -> str:
    """The method name plus every option that differs from its defaults (recorded by the run)."""
    variant = rec.get("variant")
    if variant is None:  # a record from before runs recorded their variant: diff against the defaults
        variant = _variant_from_defaults(rec, host)
        if variant is None:
            return f"{rec['method']} [config {rec['config_hash'][:8]}]"
    return f"{rec['method']} [{', '.join(variant)}]" if variant else rec["method"]


def _variant_from_defaults(rec: dict, host: Any | None) -> list[str] | None:
    from ..config import EXECUTION, flatten, resolve

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
    role: str  # measured | reference (Original/Retrain) | paper | missing: which table part the row is
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
    rank: str = "avg_gap"  # what orders the table and carries the mark: Avg. Gap or a board column
    legend: str = ""  # the scenario's sentence on its columns (Scoring.legend); "" = render.LEGEND
    # seeds whose v2 search found no feasible setting and returned θ_0 (PROTOCOL §7.3 step 3): such a
    # row shows the original's numbers, so it is never ranked or bolded
    none_feasible: int = 0
    oracle_mark: str = ""  # the Original row's mark inside the ORACLE table (protocol-2 boards)
    family: str = ""  # reference | merge | training-based | other, from the method plugin (``families``)


def aggregate(records: list[dict], host: Any | None = None) -> dict[str, list[Row]]:
    """Rows per scenario: Original and Retrain (the oracle method's model), one row per (method,
    config) over trials, every registered method without a record as a visibly missing row, and
    the paper's numbers (``Scenario.paper``) as labelled rows."""
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
        scoring = scoring_of(per_trial[trials[0]])
        for label, key in (("Original (no unlearning)", "original"), ("Retrain (oracle)", "retrain")):
            if key == "retrain" and not has_oracle:
                continue
            ref = row_from(label, key, [scoring_of(per_trial[t]).to_board(per_trial[t][key]) for t in trials],
                           [per_trial[t].get("retrain") for t in trials], trials, "reference")
            ref.extra = {"records": [per_trial[t]["_file"] for t in trials]}  # the records its numbers are read from
            rows.append(ref)
        for (method, _), recs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            recs = sorted(recs, key=lambda r: r["trial"])
            if _is_oracle_method(recs[0], host):
                continue  # the Retrain row above is this model
            row = row_from(variant_label(recs[0], host), "metrics", [scoring_of(r).to_board(r["metrics"]) for r in recs],
                           [r.get("retrain") for r in recs], [r["trial"] for r in recs], "measured")
            row.method = method
            row.used_splits = recs[0]["used_splits"]
            sel = recs[0].get("selection") or {}
            row.selection = sel.get("rule", "") or ""
            row.oracle = bool(sel.get("oracle"))
            row.none_feasible = sum(returned_original(r) for r in recs)
            if row.none_feasible:
                row.selection += NO_FEASIBLE + ("" if row.none_feasible == len(recs)
                                                else f" in {row.none_feasible} of {len(recs)} seeds")
            row.wall_s = statistics.mean(r["timings"]["total_s"] for r in recs)
            row.extra = {"lambda": _mean_std([r.get("lambda") for r in recs]),
                         "sparsity": _mean_std([(r.get("sparsity") or {}).get("u_all") for r in recs]),
                         "records": [r["_file"] for r in recs], "config_hash": recs[0]["config_hash"]}
            rows.append(row)
        v2 = all(int(r.get("protocol", 1)) >= 2 for r in all_recs)
        if v2 and has_oracle:  # PROTOCOL §5(d): each method's result under the ORACLE rule, same curves
            rows += _oracle_rows(groups, rows, host)
        ranked = [r for r in rows if r.role == "measured" and not r.oracle and not r.none_feasible]
        if v2 and has_oracle:  # §5(d) v2: "no unlearning" competes too; a win must beat it beyond noise
            ranked += [r for r in rows if r.role == "reference" and r.method == "original"]
        if has_oracle and scoring.rank == "avg_gap":
            _mark_best(ranked)
            if v2:
                _mark_best([r for r in rows if r.role == "measured" and r.oracle and r.extra.get("rule")]
                           + [r for r in rows if r.role == "reference" and r.method == "original"], mark="oracle_mark")
        else:  # no Retrain, so no gap: the scenario's rank column (CLIP: the paper bolds the lowest Acc Df [P T1])
            _mark_lowest(ranked, scoring.rank)
        for row in rows:
            row.rank, row.legend = scoring.rank, scoring.legend
        if host is not None:  # every registered method without a record here: visibly missing, never filled
            seen = {m for m, _ in groups}
            for name in host.methods.names():
                if not has_oracle and "retain" in host.methods.get(name).uses:
                    continue  # the scenario has no D_r: such a method cannot run there (the runner refuses it)
                if name not in seen:
                    rows.append(Row(label=name, method=name, role="missing",
                                    used_splits="+".join(sorted(host.methods.get(name).uses)),
                                    cells={c: None for c, _ in METRICS}, rank=scoring.rank,
                                    legend=scoring.legend))
        for row in rows:  # what the method plugin declares (families.family_of), never a list of names
            row.family = REFERENCE if row.role == "reference" else family_of(row.method, host)
        paper = _paper(scen, host)
        for p in (paper or {}).get("rows", []):
            rows.append(Row(label=f"paper: {p['label']}", method=p["method"], role="paper",
                            used_splits=p["used_splits"], cells={k: v for k, v in p["cells"].items() if k != "avg_gap"},
                            gap=(p["cells"]["avg_gap"] or {}).get("mean"), source=paper["table"], rank=scoring.rank,
                            legend=scoring.legend, family=family_of(p["method"], host)))
        out[scen] = rows
    return out


NO_FEASIBLE = ": no feasible setting (= original)"
ORACLE_RULE = "oracle_avg_gap"  # the ORACLE table's rule (PROTOCOL §5(b)); optimism from oracle_split_test
SPLIT_RULE = "oracle_split_test"


def under_rule(rec: dict, rule: str) -> tuple[dict, bool] | None:
    """A record's metrics under ``rule`` of its ``by_rule`` (PROTOCOL §5(d)), and whether that rule chose
    them: a result no rule chose (no selection) is the method's result under every rule. None when the
    record did not run the rule."""
    by = (rec.get("by_rule") or {}).get(rule)
    if by is None:
        return None
    if not by.get("selected"):
        return rec["metrics"], False
    return by["metrics"], True


def _oracle_rows(groups: dict, rows: list[Row], host: Any | None) -> list[Row]:
    """One ORACLE row per measured (method, config): its model at the oracle rule's choice on the same
    curves (``by_rule``), tagged ORACLE, in the board's oracle table, beside the paper's rows."""
    out = []
    for (method, _), recs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        recs = sorted(recs, key=lambda r: r["trial"])
        if _is_oracle_method(recs[0], host):
            continue
        got = [under_rule(r, ORACLE_RULE) for r in recs]
        if any(g is None for g in got):
            continue  # the records did not run the oracle rule (selection.also=none)
        row = row_from(f"{variant_label(recs[0], host)} [ORACLE]", "metrics",
                       [scoring_of(r).to_board(g[0]) for r, g in zip(recs, got)], [r.get("retrain") for r in recs],
                       [r["trial"] for r in recs], "measured")
        row.method, row.used_splits, row.oracle = method, recs[0]["used_splits"], True
        row.selection = ORACLE_RULE if any(g[1] for g in got) else "none (no rule chose)"
        row.extra = {"rule": ORACLE_RULE, "records": [r["_file"] for r in recs], "config_hash": recs[0]["config_hash"],
                     "lambda": _mean_std([(r.get("by_rule") or {}).get(ORACLE_RULE, {}).get("lambda") for r in recs])}
        row.wall_s = statistics.mean(r["timings"]["total_s"] for r in recs)
        out.append(row)
    return out


def optimism_rows(records: list[dict], host: Any | None = None) -> list[dict]:
    """Selection optimism per (method, config), from ``oracle_split_test`` (PROTOCOL §5(d) b''): the Avg.
    Gap at its choice on test half A (chosen on) and half B, and B − A, mean ± std over seeds. A method
    whose result no rule chose has no optimism to measure (None)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        if (r.get("info") or {}).get("diagnostic") or _is_oracle_method(r, host):
            continue
        groups.setdefault((r["method"], r["config_hash"]), []).append(r)
    out = []
    for (method, _), recs in sorted(groups.items(), key=lambda kv: kv[0]):
        reps = [((r.get("by_rule") or {}).get(SPLIT_RULE) or {}).get("report") for r in recs]
        if all(x is None for x in reps):
            if all((r.get("by_rule") or {}).get(SPLIT_RULE) is not None for r in recs):
                out.append({"label": variant_label(recs[0], host), "method": method, "n": 0})
            continue
        reps = [x for x in reps if x is not None]
        cells = {k: _mean_std([x[k] for x in reps]) for k in ("gap_a", "gap_b", "optimism")}
        evals = _mean_std([(r.get("timings") or {}).get("select_evals") or (r.get("timings") or {}).get("search_evals")
                           for r in recs])
        out.append({"label": variant_label(recs[0], host), "method": method, "n": len(reps), **cells,
                    "looks": evals})
    return out


def beats_original(rows: list[Row]) -> tuple[list[str] | None, Row | None]:
    """The ranked default-configuration rows whose Avg. Gap is below the Original row's beyond seed noise (the board's rule:
    NOISE_Z standard errors of the difference of the paired per-trial gaps), and that Original row; None instead of
    the list where the Original row has no per-trial spread (one trial): the test cannot be made there."""
    orig = next((r for r in rows if r.role == "reference" and r.method == "original"), None)
    if orig is None or orig.gap is None or not orig.gap_paired:
        return [], orig
    if orig.gap_paired[1] is None:
        return None, orig
    out = []
    for r in rows:  # default configurations only: a variant (an n-ablation point) is not a method of its own
        if r.role != "measured" or r.oracle or r.none_feasible or r.gap is None or not r.gap_paired \
                or r.label != r.method:
            continue
        if r.gap_paired[1] is None:
            continue
        se = math.sqrt(orig.gap_paired[1] ** 2 / len(orig.paired) + r.gap_paired[1] ** 2 / len(r.paired))
        if orig.gap - r.gap > NOISE_Z * se:
            out.append(r.label)
    return out, orig


def returned_original(rec: dict) -> bool:
    """The record's v2 search found no feasible setting and returned θ_0 (PROTOCOL §7.3 step 3). A v1
    search's ``none_feasible`` meant something else, the least-damage fallback's model, and its boards
    stay as they were generated, so only a v2 search's flag counts."""
    params = (rec.get("selection") or {}).get("params") or {}
    return params.get("search") == "v2" and bool(params.get("none_feasible"))


def _is_oracle_method(rec: dict, host: Any | None) -> bool:
    """The record is of the oracle method (Retrain): its model is the Retrain row already. Read from
    the registered method; without a host, from the record (an oracle method runs no selection)."""
    if host is not None and rec["method"] in host.methods:
        return bool(host.methods.get(rec["method"]).oracle)
    return bool(rec.get("oracle")) and not rec.get("selection")


def _paper(scen: str, host: Any | None) -> dict | None:
    """The paper's reported rows for a scenario, from the registered scenario (``Scenario.paper``)."""
    if host is None or scen not in host.scenarios:
        return None
    return getattr(host.scenarios.get(scen), "paper", None)


def row_from(label: str, key: str, metrics: list[dict], retrains: list[dict | None], trials: list[int],
             role: str, cols: list[tuple[str, str]] = METRICS) -> Row:
    """Mean ± std of each column over trials; Avg. Gap from the trial means (paper-comparable) and
    paired per trial (PROTOCOL §8.3). The CLI's run summary uses it too."""
    from ..metrics import avg_gap

    cells = {}
    for col, _ in cols:
        vals = [x.get(col) for x in metrics]
        m, s = _mean_std(vals)
        # n: the seeds this mean is over (a NaN or missing metric is no number); of: the row's seeds
        cells[col] = {"mean": m, "std": s, "n": sum(not is_missing(v) for v in vals), "of": len(vals)}
    row = Row(label=label, method=key, role=role, trials=trials, cells=cells)
    if all(r is not None for r in retrains) and retrains:
        # a trial with a missing Avg. Gap component has no gap; the gap from the trial means needs every
        # trial (a mean over fewer seeds than the Retrain mean is not like for like), so it is missing
        complete = [(m, r) for m, r in zip(metrics, retrains)
                    if all(not is_missing(m.get(c)) and not is_missing(r.get(c)) for c in GAP_METRICS)]
        if len(complete) == len(metrics):
            means = {c: cells[c]["mean"] for c in GAP_METRICS}
            ref = {c: statistics.mean(r[c] for r in retrains) for c in GAP_METRICS}
            row.gap = avg_gap(means, ref)[0]
        row.paired = [avg_gap(m, r)[0] for m, r in complete]
        row.gap_paired = _mean_std(row.paired) if row.paired else None
    return row


def seeds_over(row: Row) -> int | None:
    """The fewest seeds any of the row's numbers is a mean over, where fewer than the row's seeds
    (a NaN or missing metric in some trial); None when every number is over all of them."""
    ns = [c["n"] for c in row.cells.values() if isinstance(c, dict) and c.get("of") and "n" in c]
    if row.gap_paired is not None and row.trials:
        ns.append(len(row.paired))
    low = min(ns, default=None)
    return low if low is not None and low < len(row.trials) else None


def _mark_lowest_beyond_noise(rows: list[Row], value, std, n, attr: str = "mark") -> None:
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
        setattr(best, attr, "tie")
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
    setattr(best, attr, "tie" if tied else "best")
    for r in tied:
        setattr(r, attr, "tie")


def _mark_best(rows: list[Row], mark: str = "mark") -> None:
    """Bold the lowest Avg. Gap beyond the noise of the paired per-trial gaps. ``mark="oracle_mark"``:
    the ORACLE table's own marks (its Original row is the one of the oracle-free table)."""
    _mark_lowest_beyond_noise(rows, lambda r: r.gap, lambda r: r.gap_paired[1] if r.gap_paired else None,
                              lambda r: len(r.paired), attr=mark)


def _mark_lowest(rows: list[Row], col: str) -> None:
    """Bold the lowest mean of ``col`` beyond seed noise (unpaired, from the per-column std)."""
    def std(r):
        return (r.cells.get(col) or {}).get("std")

    _mark_lowest_beyond_noise(rows, lambda r: (r.cells.get(col) or {}).get("mean"), std,
                              lambda r: len(r.trials) if std(r) is not None else 1)
