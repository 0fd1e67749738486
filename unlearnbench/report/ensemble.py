"""The ensemble board (issue 18 acceptance 4-5): per scenario with ensemble results, KLOM P95 per split, the
NeurIPS 2023 forgetting quality with both utility ratios and the score, and U-LiRA's AUC, |AUC − 0.5| and
TPR at 1% FPR, with the No unlearning and Retrain (independent) rows (PROTOCOL §8.7.0). Every value comes
with its N (or K×M) and resolution (the KLOM floor, ε_max, the challenge's ceiling), and the manifest key of
the ensemble it was computed from. None of it enters Avg. Gap or the accuracy ranking (§8.7: final-evaluation
metrics that no selection rule reads).

The results are ``ensemble.json`` files beside the run folders (``ensemble.build``). A board without any
renders exactly as before, so the committed boards regenerate byte for byte.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..ensemble.build import RESULT_FILE
from ..provenance import where

REFERENCE_ROWS = ("No unlearning", "Retrain (independent)")
SPLIT_HEADERS = (("retain", "D_r"), ("forget", "D_f"), ("test", "D_test′"))


def load_results(runs_dir: str | Path) -> dict[str, dict]:
    """{scenario: {"reference": its rows or None, "methods": {run folder: result}}} for every ensemble.json
    under ``runs_dir`` (<scenario>/ensemble.json and <scenario>/<run>/ensemble.json). An unreadable file is
    skipped: a board is never blocked by a partial ensemble result."""
    out: dict[str, dict] = {}
    root = Path(runs_dir)
    for p in sorted(root.glob(f"*/{RESULT_FILE}")) + sorted(root.glob(f"*/*/{RESULT_FILE}")):
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(doc, dict) or "scenario" not in doc:
            continue
        scen = out.setdefault(str(doc["scenario"]), {"reference": None, "methods": {}})
        if p.parent.parent == root:
            scen["reference"] = doc
        else:
            scen["methods"][p.parent.name] = doc
    return out


def unreplayed(doc: dict) -> bool:
    """Whether an ensemble's trial-0 replayed run failed to give its record's weights (the replay check): it
    ran from another original, i.e. the ensemble was built on another machine than the record (weights depend
    on the CPU's kernels, not only the seeds)."""
    return (doc.get("replay_check") or {}).get("same") is False


def _f(v: Any, d: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:.{d}f}"


def _cells(m: dict) -> list[str]:
    """One row's cells: KLOM (N, P95 per split), challenge (N / ε_max, FQ, RA, TA, score), U-LiRA (K×M, AUC,
    |AUC − 0.5|, TPR@1%FPR)."""
    k, c, u = m.get("klom"), m.get("challenge"), m.get("ulira")
    cells = [str(k["N"]) if k else "—"]
    cells += [_f(k["splits"][s]["p95"]) if k and s in k["splits"] else "—" for s, _ in SPLIT_HEADERS]
    cells += [f"{c['N']} / {c['epsilon_max']}" if c else "—"]
    cells += [_f(c.get(key), 3) if c else "—" for key in ("fq", "ra_ratio", "ta_ratio", "score")]
    expected = " (expected)" if u and u.get("expected") else ""
    cells += [f"{u['K']}×{u['M']}" if u else "—"]
    cells += [(_f(u.get(key), 3) + expected) if u else "—" for key in ("auc", "auc_dev", "tpr_at_0.01_fpr")]
    ens = (k or c or {}).get("ensembles", {}).get("runs") or (u or {}).get("ensembles", {}).get("runs")
    return cells + [f"`{ens[:10]}`" if ens else "—"]


HEADER = ("| Row | KLOM N | KLOM P95 D_r | KLOM P95 D_f | KLOM P95 D_test′ | FQ N / ε_max | FQ | RA_U/RA_R | TA_U/TA_R "
          "| Score | U-LiRA K×M | AUC | \\|AUC−0.5\\| | TPR@1%FPR | Runs ensemble |")


def ensemble_section(scen: str, results: dict, board_methods: list[str]) -> str:
    """The Markdown section of ``scen``'s board: its ensemble table, the resolution each column is read
    against, and the board's methods without an ensemble result, each shown missing."""
    ref = results.get("reference")
    methods = results.get("methods", {})
    any_doc = ref or next(iter(methods.values()))
    rows: list[str] = []
    floors = ref["rows"] if ref else {}
    for name in REFERENCE_ROWS:
        if name in floors:
            rows.append(f"| {name} | " + " | ".join(_cells(floors[name])) + " |")
    order = sorted(methods, key=lambda n: ((methods[n]["metrics"].get("klom") or {}).get("splits", {})
                                           .get("forget", {}).get("p95", math.inf), n))
    others = [n for n in order if unreplayed(methods[n])]
    for n in order:
        mark = " †" if n in others else ""
        rows.append(f"| {n}{mark} | " + " | ".join(_cells(methods[n]["metrics"])) + " |")
    missing = [n for n in board_methods if n not in methods and n not in ("retrain",)]
    ncols = HEADER.replace("\\|", "").count("|") - 2  # cells after "Row" (an escaped \| is text, not a border)
    for n in missing:
        rows.append(f"| {n} | " + " | ".join(["missing"] + ["—"] * (ncols - 1)) + " |")
    sep = "|" + "---|" * (ncols + 1)
    sizes = any_doc.get("sizes", {})
    lines = ["", "## Ensemble metrics (PROTOCOL §8.7)", "",
             f"Trial 0's forget set; ensemble runs replay each trial-0 record's chosen recipe with fresh run seeds "
             f"(§8.7.0). Sizes: challenge N = {sizes.get('challenge')}, KLOM N = {sizes.get('klom')}, U-LiRA "
             f"K×M = {sizes.get('lira_k')}×{sizes.get('lira_m')} (variance={sizes.get('variance')}). "
             "These values never enter Avg. Gap or the ranking above.", "", HEADER, sep, *rows, ""]
    rr = floors.get("Retrain (independent)", {})
    notes = []
    built: dict[str, list[str]] = {}
    for name, doc in ([("No unlearning, Retrain (independent)", ref)] if ref else []) + sorted(methods.items()):
        built.setdefault(where(doc), []).append(name)
    if len(built) > 1:
        parts = "; ".join(f"{len(v)} from {k} ({', '.join(v[:4])}{', ...' if len(v) > 4 else ''})"
                          for k, v in sorted(built.items(), key=lambda kv: -len(kv[1])))
        lines[3:3] = [f"> **Not like for like.** The ensemble results were built on {len(built)} machines: {parts}. "
                        "Each result is internally sound, but their originals and oracles differ, so rows from "
                        "different machines are not compared against the same Retrain ensemble.", ""]
    if others:
        at = sorted({where(methods[n]) for n in others})
        notes.append(f"**†** Trial 0's replayed run did not reproduce the record's unlearned weights (the replay "
                     f"check): these ensembles were built on another machine ({', '.join(at)}) than their accuracy "
                     "records, from that machine's own O_0 with the record's chosen setting, epoch and λ*. Their "
                     "originals, oracles and runs all come from one machine, so each row is sound; it is not the "
                     "record's own model that the runs replay.")
    if rr.get("klom"):
        fl = rr["klom"]["floor"]
        notes.append(f"**KLOM** (KL(unlearned ‖ oracle) of binned margins, P95 over each split; lower is better): "
                     f"the floor at N = {rr['klom']['N']} is Retrain (independent), R′ scored against R: "
                     + ", ".join(f"{h} {_f(fl.get(s))}" for s, h in SPLIT_HEADERS if s in fl)
                     + "; a value within the floor is indistinguishable from Retrain at this N (§8.7.1).")
    if rr.get("challenge"):
        c = rr["challenge"]
        notes.append(f"**FQ** (NeurIPS 2023 challenge; higher is better): ε_max = {c['epsilon_max']} at N = {c['N']}; "
                     f"the ceiling is Retrain (independent)'s FQ {_f(c['fq'], 3)}, not 1; No unlearning is N copies of "
                     "O_0, FQ = 0 by construction; the utility ratios are unclipped and shown beside the score (§8.7.2).")
    if rr.get("ulira"):
        u = rr["ulira"]
        notes.append("**U-LiRA** (cross-fitted Gaussian LiRA after unlearning; closer to Retrain is better): Retrain's "
                     "AUC 0.5 and TPR@1%FPR 1% hold in expectation by construction" +
                     (f"; its row is measured from the {u['K']}×{u['M']} retrains on H_k ∖ D_f^{{k,m}} "
                      "(`--ulira-measure-retrain`), the finite-sample spread of that expectation (§8.7.3)."
                      if u.get("measured") else ", not measured (§8.7.3; `--ulira-measure-retrain` measures it)."))
    if missing:
        notes.append(f"**Missing** (no ensemble result yet): {', '.join(missing)}; build one with `unlearnbench "
                     f"ensemble -s {scen} --methods NAME`, or `-o eval.ensembles=on` on run/sweep.")
    return "\n".join(lines + [n + "\n" for n in notes]).rstrip("\n") + "\n"


def ensemble_csv(results: dict) -> str:
    """The table as CSV, one row per ensemble row, with N, K×M, ε_max and the floor in their own columns."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["row", "klom_n", *[f"klom_p95_{s}" for s, _ in SPLIT_HEADERS], *[f"klom_floor_{s}" for s, _ in SPLIT_HEADERS],
                "fq_n", "epsilon_max", "fq", "fq_ceiling", "ra_ratio", "ta_ratio", "score", "lira_k", "lira_m", "auc",
                "auc_dev", "tpr_at_1pct_fpr", "runs_ensemble"])
    ref = (results.get("reference") or {}).get("rows", {})
    allrows = [(n, ref[n]) for n in REFERENCE_ROWS if n in ref] + \
              [(n, d["metrics"]) for n, d in sorted(results.get("methods", {}).items())]
    for name, m in allrows:
        k, c, u = m.get("klom") or {}, m.get("challenge") or {}, m.get("ulira") or {}
        w.writerow([name, k.get("N"), *[(k.get("splits") or {}).get(s, {}).get("p95") for s, _ in SPLIT_HEADERS],
                    *[(k.get("floor") or {}).get(s) for s, _ in SPLIT_HEADERS], c.get("N"), c.get("epsilon_max"),
                    c.get("fq"), c.get("ceiling"), c.get("ra_ratio"), c.get("ta_ratio"), c.get("score"), u.get("K"),
                    u.get("M"), u.get("auc"), u.get("auc_dev"), u.get("tpr_at_0.01_fpr"),
                    (k.get("ensembles") or c.get("ensembles") or u.get("ensembles") or {}).get("runs")])
    return buf.getvalue()


# -- claims.md: which methods can be told apart from Retrain (issue 18 acceptance 5) ------------------------------
def _auc_se(n_pos: int, n_neg: int) -> float:
    """The standard error of the AUC of two samples of one distribution (Mann-Whitney null), the band of
    PROTOCOL §8.7.5 item 7."""
    return math.sqrt((n_pos + n_neg + 1) / (12 * n_pos * n_neg))


def distinguishable(doc: dict) -> dict:
    """Whether one method's ensemble result tells it apart from Retrain, per metric, by the rules below."""
    m = doc["metrics"]
    out: dict[str, Any] = {}
    k = m.get("klom")
    if k:
        over = {s: (k["splits"][s]["p95"], k["floor"][s]) for s in k["splits"] if s in k["floor"]}
        out["klom"] = {"forget": over.get("forget", (None, None))[0] is not None and over["forget"][0] > over["forget"][1],
                       "damage": [s for s, (v, f) in over.items() if s != "forget" and v > f], "values": over,
                       "N": k["N"]}
    u = m.get("ulira")
    if u and u.get("auc") is not None and u.get("n_pos") and u.get("n_neg"):
        se = _auc_se(u["n_pos"], u["n_neg"])
        out["ulira"] = {"yes": u["auc_dev"] > 3 * se, "auc": u["auc"], "se": se, "K": u["K"], "M": u["M"]}
    return out


def claims_section(all_results: dict[str, dict]) -> str:
    """The question the accuracy board could not answer on digits-10pct, on every scenario with ensemble results."""
    lines = ["", "## Which methods can be told apart from Retrain? (ensemble metrics, PROTOCOL §8.7)", "",
             "Decision rules. **KLOM**: a method is distinguishable from Retrain on a split when its P95 exceeds the "
             "floor at the same N, the P95 of Retrain (independent), R′ scored against R (PROTOCOL §8.7.1, \"a method "
             "within the floor is indistinguishable from Retrain at this ensemble size\"); D_f answers the question, "
             "D_r and D_test′ flag damage. **U-LiRA**: distinguishable when |AUC − 0.5| exceeds 3 standard errors of "
             "the null AUC, √((n₊ + n₋ + 1)/(12 n₊ n₋)), over the pooled (target, example) cases, the band of §8.7.5 "
             "item 7; the cases share examples and models, so this band is narrower than the truth and \"no\" is the "
             "stronger answer. Both rules read one realisation of each ensemble; nothing here is a selection rule.", ""]
    for scen in sorted(all_results):
        methods = all_results[scen].get("methods", {})
        if not methods:
            continue
        lines += [f"### {scen}", ""]
        elsewhere = sorted({where(d) for d in methods.values() if unreplayed(d)})
        if elsewhere:
            lines += [f"Built on {', '.join(elsewhere)}, not the machine of the accuracy records (the board's † rows): "
                      "each ensemble is sound on its own, and replays the records' chosen settings from that "
                      "machine's own O_0.", ""]
        lines += ["| Method | KLOM D_f P95 vs floor (N) | KLOM: told apart on D_f? | KLOM damage on "
                  "| U-LiRA AUC ± SE (K×M) | U-LiRA: told apart? |", "|---|---|---|---|---|---|"]
        for name in sorted(methods):
            d = distinguishable(methods[name])
            k, u = d.get("klom"), d.get("ulira")
            kv = k["values"].get("forget") if k else None
            lines.append(
                f"| {name} | " + (f"{_f(kv[0])} vs {_f(kv[1])} ({k['N']})" if kv else "—") + " | "
                + ("**yes**" if k and k["forget"] else "no" if k else "—") + " | "
                + (", ".join(k["damage"]) or "none" if k else "—") + " | "
                + (f"{_f(u['auc'], 3)} ± {_f(u['se'], 3)} ({u['K']}×{u['M']})" if u else "—") + " | "
                + ("**yes**" if u and u["yes"] else "no" if u else "—") + " |")
        lines.append("")
    return "\n".join(lines)
