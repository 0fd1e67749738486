"""The paper's claims, checked on the boards' own records (issue 16 acceptance 6): ``claims.md``.

Each claim compares two (sets of) rows seed by seed, under each selection rule a board carries (the
oracle-free rule the suite ranks by, and the ORACLE rule of ``by_rule``), and says **supported**,
**refuted** or **within noise** by the boards' rule: a mean per-seed difference beyond ``NOISE_Z``
standard errors (s / √n of the per-seed differences) in the claimed direction supports it, beyond them
in the other direction refutes it. Every per-seed difference is printed. Nothing here is typed: a claim
with no records to test says so.

Claims, from the NegMerge paper (ICML 2025):

- (a) NegMerge has a lower Avg. Gap than Task Arithmetic's single best pool member [P T1, T2];
- (b) consensus < all < conflict: keeping only the sign-agreeing elements beats averaging everything,
  which beats keeping only the disagreeing ones [P T3];
- (c) as more models are merged (n), NegMerge's vector gets sparser and forgets at least as well [P T4];
- (d) NegMerge has a lower Avg. Gap than each training-based baseline [P T2];
- (e) an oracle flatters Task Arithmetic more than NegMerge: TA's selection optimism (more points
  looked at) exceeds NegMerge's [our hypothesis from the v1 audit, PROTOCOL §11].
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Callable

from ..metrics import avg_gap
from .rows import NOISE_Z, ORACLE_RULE, SPLIT_RULE, under_rule

# The parts methods play in the claims, each declared by the method itself (``Method.claim_role``), so
# the core names no method: a third-party NegMerge variant or baseline takes part by declaring its role.
ROLES = ("consensus", "single_best", "merge_all", "merge_conflict", "trained")


def roles_of(host: Any | None) -> dict[str, list[str]]:
    """role -> the registered methods that declare it (in name order); empty without a plugin host."""
    out: dict[str, list[str]] = {r: [] for r in ROLES}
    if host is None:
        return out
    for name in host.methods.names():
        role = getattr(host.methods.get(name), "claim_role", "")
        if role in out:
            out[role].append(name)
    return out


def _default(recs: list[dict]) -> list[dict]:
    """The records of default configurations (no variant): the rows the board ranks."""
    return [r for r in recs if not r.get("variant") and not (r.get("info") or {}).get("diagnostic")]


def _gap(rec: dict, rule: str | None) -> float | None:
    """The record's Avg. Gap under ``rule`` (None: its own rule's result)."""
    if not rec.get("retrain"):
        return None
    if rule is None:
        return avg_gap(rec["metrics"], rec["retrain"])[0]  # as the record's "gap" has it
    got = under_rule(rec, rule)
    return None if got is None else avg_gap(got[0], rec["retrain"])[0]


def _optimism(rec: dict, rule: str | None) -> float | None:
    rep = ((rec.get("by_rule") or {}).get(SPLIT_RULE) or {}).get("report")
    return None if rep is None else rep["optimism"]


def verdict(diffs: list[float]) -> tuple[str, float | None, float | None]:
    """(verdict, mean, standard error) for per-seed differences ``claimed − other``, where the claim is
    that they are negative."""
    if len(diffs) < 2:
        return ("not testable (fewer than 2 seeds)", diffs[0] if diffs else None, None)
    m, se = statistics.mean(diffs), statistics.stdev(diffs) / math.sqrt(len(diffs))
    if m < 0 and -m > NOISE_Z * se:
        return ("supported", m, se)
    if m > 0 and m > NOISE_Z * se:
        return ("refuted", m, se)
    return ("within noise", m, se)


def _paired(a: list[dict], b: list[dict], value: Callable[[dict], float | None]) -> list[tuple[int, float]]:
    by_b = {r["trial"]: r for r in b}
    out = []
    for r in sorted(a, key=lambda r: r["trial"]):
        o = by_b.get(r["trial"])
        if o is None:
            continue
        x, y = value(r), value(o)
        if x is not None and y is not None:
            out.append((r["trial"], x - y))
    return out


def _line(what: str, pairs: list[tuple[int, float]], unit: str = "Avg. Gap") -> str:
    if not pairs:
        return f"| {what} | no records to compare | – | – |"
    v, m, se = verdict([d for _, d in pairs])
    seeds = ", ".join(f"{t}: {d:+.2f}" for t, d in pairs)
    stat = "–" if m is None else (f"{m:+.2f}" + (f" ± {se:.2f}" if se is not None else ""))
    return f"| {what} | **{v}** | {stat} | {seeds} |"


RULES = ((None, "oracle-free (the run's own rule)"), (ORACLE_RULE, f"ORACLE ({ORACLE_RULE})"))
OWN_RULE = "the run's own rule"  # claim (c)'s one rule: the n-ablation records' own choice


@dataclass
class Comparison:
    """One line of claims.md: the per-seed differences ``claimed − other`` of one comparison on one
    board under one rule (a claim holds when they are negative beyond noise: ``verdict``)."""

    scenario: str
    rule: str  # the rule's title as claims.md prints it (RULES, or OWN_RULE for claim (c))
    claim: str  # the claim's letter: a, b, c, d, e
    what: str  # the comparison, as claims.md prints it
    pairs: list[tuple[int, float]]  # (trial, difference)
    unit: str = "Avg. Gap"


def _by_scenario(records: list[dict]) -> dict[str, dict[str, list[dict]]]:
    by: dict[str, dict[str, list[dict]]] = {}
    for r in _default(records):
        by.setdefault(r["scenario"], {}).setdefault(r["method"], []).append(r)
    return {s: by[s] for s in sorted(by)}


def _rule_comparisons(scen: str, meth: dict[str, list[dict]], roles: dict[str, list[str]], rule: str | None,
                      title: str) -> list[Comparison]:
    """Claims (a), (b), (d) and, under the ORACLE rule, (e) on one board; the methods of each claim are
    the ones that declare its role (``roles_of``)."""
    one = {r: (names[0] if names else "") for r, names in roles.items()}
    neg, ta, all_, conflict = one["consensus"], one["single_best"], one["merge_all"], one["merge_conflict"]

    def g(r):
        return _gap(r, rule)

    def cmp(letter, what, a, b, value=g, unit="Avg. Gap"):
        return Comparison(scen, title, letter, what, _paired(a, b, value), unit)

    out = [cmp("a", f"(a) {neg or 'consensus'} − {ta or 'single best'} (Task Arithmetic, single best)",
               meth.get(neg, []), meth.get(ta, [])),
           cmp("b", f"(b) consensus ({neg or '–'}) − all ({all_ or '–'})", meth.get(neg, []), meth.get(all_, [])),
           cmp("b", f"(b) all ({all_ or '–'}) − conflict ({conflict or '–'})", meth.get(all_, []),
               meth.get(conflict, []))]
    out += [cmp("d", f"(d) {neg} − {base}", meth.get(neg, []), meth[base])
            for base in roles["trained"] if base in meth]
    if rule is not None:  # optimism is a property of the oracle's choice
        out.append(cmp("e", f"(e) {neg or 'consensus'}'s optimism − {ta or 'single best'}'s", meth.get(neg, []),
                       meth.get(ta, []), lambda r: _optimism(r, rule), "optimism"))
    return out


def comparisons(records: list[dict], host: Any | None = None) -> list[Comparison]:
    """Every line of claims.md, in its order: per board, per rule, then claim (c) from the n-ablation
    (none where a board has no such records). The forest plots (``forest``) draw these."""
    roles = roles_of(host)
    neg = roles["consensus"][0] if roles["consensus"] else ""
    out: list[Comparison] = []
    for scen, meth in _by_scenario(records).items():
        for rule, title in RULES:
            out += _rule_comparisons(scen, meth, roles, rule, title)
        n = _n_pairs(scen, records, neg)
        if n is not None:
            lo, hi, spars, forget = n
            out += [Comparison(scen, OWN_RULE, "c", f"(c) sparsity % at n = {lo} − at n = {hi}", spars, "sparsity"),
                    Comparison(scen, OWN_RULE, "c", f"(c) Acc D_f at n = {hi} − at n = {lo}", forget, "Acc D_f")]
    return out


HEAD = ["| Claim | Verdict | Mean difference ± SE | Per seed |", "|---|---|---|---|"]


def claims_page(records: list[dict], host: Any | None = None) -> str:
    """The Markdown page: per scenario, per rule, one row per claim (``comparisons``)."""
    roles = roles_of(host)
    neg = roles["consensus"][0] if roles["consensus"] else ""
    every = comparisons(records, host)
    lines = ["# Does the paper's story hold without an oracle?", "",
             "Generated by `unlearnbench leaderboard` from the same records as the boards; never edited by hand. "
             "Each row compares two methods seed by seed (difference = first − second, so a claim of \"lower\" "
             f"is supported when the mean difference is below 0 by more than {NOISE_Z:g} standard errors of the "
             "per-seed differences, refuted when above 0 by as much, and within noise otherwise). Rules: the "
             "oracle-free rule the boards rank by, and the ORACLE rule evaluated on the same curves (PROTOCOL "
             "§5(d)). Claims from the NegMerge paper; (e) is the v1 audit's hypothesis (PROTOCOL §11).", ""]
    for scen in _by_scenario(records):
        lines += [f"## {scen}", ""]
        for _, title in RULES:
            lines += [f"### {title}", "", *HEAD]
            lines += [_line(c.what, c.pairs, c.unit) for c in every if c.scenario == scen and c.rule == title]
            lines.append("")
        lines += [f"### (c) sparsity and forgetting against n ({neg or 'consensus'}, {OWN_RULE})", ""]
        n_lines = [c for c in every if c.scenario == scen and c.claim == "c"]
        if n_lines:
            lines += HEAD + [_line(c.what, c.pairs, c.unit) for c in n_lines]
        else:
            lines.append("No n-ablation records on this board (`-o pool.size=n -o pool.subset=k`, PROTOCOL §9.5)."
                         if neg else "No method declares the consensus role (`Method.claim_role`).")
        lines += [""]
    return "\n".join(lines).rstrip() + "\n"


def _n_pairs(scen: str, records: list[dict], neg: str) -> tuple[int, int, list, list] | None:
    """(c) from the n-ablation records (negmerge differing from its defaults in pool.size and pool.subset
    only): per seed, the sparsity and Acc D_f at the largest n against the smallest, averaged over subsets;
    None when the board has records at fewer than two n."""
    pts: dict[int, dict[int, list[dict]]] = {}
    for r in records:
        if r["scenario"] != scen or r["method"] != neg or (r.get("info") or {}).get("diagnostic"):
            continue
        var = r.get("variant") or []
        if any(not (v.startswith("pool.size=") or v.startswith("pool.subset=")) for v in var):
            continue
        n = int((r.get("config") or {}).get("pool", {}).get("size") or 0) or int((r.get("timings") or {}).get("pool_n") or 0)
        if n:
            pts.setdefault(n, {}).setdefault(r["trial"], []).append(r)
    if len(pts) < 2:
        return None
    lo, hi = min(pts), max(pts)

    def mean_of(rs: list[dict], f: Callable[[dict], Any]) -> float | None:
        vals = [f(r) for r in rs if f(r) is not None]
        return statistics.mean(vals) if vals else None

    spars, forget = [], []
    for t in sorted(set(pts[lo]) & set(pts[hi])):
        s_hi = mean_of(pts[hi][t], lambda r: (r.get("sparsity") or {}).get("u_all"))
        s_lo = mean_of(pts[lo][t], lambda r: (r.get("sparsity") or {}).get("u_all"))
        f_hi = mean_of(pts[hi][t], lambda r: r["metrics"].get("acc_forget"))
        f_lo = mean_of(pts[lo][t], lambda r: r["metrics"].get("acc_forget"))
        if s_hi is not None and s_lo is not None:
            spars.append((t, s_lo - s_hi))  # the claim "sparser at larger n": s_lo − s_hi < 0
        if f_hi is not None and f_lo is not None:
            forget.append((t, f_hi - f_lo))  # "forgets at least as well": Acc D_f lower at larger n
    return lo, hi, spars, forget
