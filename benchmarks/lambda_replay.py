"""Replay every λ-search strategy (selection.strategy) against the full grid (issue 15, acceptance 4).

1. Stored curves: every committed record whose selection curve is a λ sweep (benchmarks/results/protocol-v1/runs and
   benchmarks/results). The stored curve is the function a strategy queries (θ_0 − λτ is rebuilt
   from θ_0 at each λ, taskvec.InPlaceEditor, so a λ's metrics do not depend on the order λs are
   visited); each strategy runs through the real ``selection.sweep`` and its λ* and score are
   compared with the record's. A curve that is not the full grid is replayed only where a strategy
   asks for recorded points alone (else: undetermined).
2. Task Arithmetic on digits (``--ta-digits``): per scenario and trial, a fresh store trains the
   original, Retrain and the 27-member pool and runs TA with ``grid`` (every member's full curve is
   captured); that run is first checked against the committed record (artifact keys, the
   original's metrics, member_scores), then each strategy is replayed on every member's curve and
   also run for real on the same store, and every member's λ and score are compared.
3. Task Arithmetic on fmnist-10pct trial 0 (``--fmnist-store DIR``, a store holding the original,
   Retrain and the pool): one real TA run with ``--fmnist-strategy`` on a copy of the store,
   compared member by member with the committed record.

    OMP_NUM_THREADS=1 python benchmarks/lambda_replay.py --ta-digits --fmnist-store /work/st-fmnist \
        --out benchmarks/results/lambda_replay.txt
"""
from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = ("grid", "frontier", "halving")


class _Task:
    """What a rule reads of a task, for a stored curve: class_wise and the classifier scoring."""

    def __init__(self, class_wise: bool):
        from unlearnbench.scenario import Scoring

        self.class_wise = class_wise
        self.scoring = Scoring()
        self.grids = None


class Undetermined(Exception):
    pass


def replay(curve: list[dict], lambdas: list[float], rule, rcfg, task, reference, strategy: str):
    """``strategy`` run through selection.sweep with ``curve`` as the metric function."""
    from unlearnbench.selection import sweep

    table = {p["lambda"]: p for p in curve}
    state: dict = {}

    def set_lambda(lam: float) -> None:
        state["lam"] = lam

    def measure(names: list[str]) -> dict:
        point = table.get(state["lam"])
        if point is None:
            raise Undetermined(f"λ={state['lam']} is not in the stored curve")
        return {n: point[n] for n in names}

    return sweep(set_lambda, measure, lambdas, rule, rcfg, task, reference, frozenset(rule.reads_for(rcfg, task)),
                 task.scoring.metric_splits, strategy=strategy)


def _fmt_curve(curve: list[dict], rule_name: str, class_wise: bool) -> str:
    keys = [k for k in curve[0] if k != "lambda"]
    return "; ".join(f"{p['lambda']:g}:" + ",".join(f"{p[k]:.2f}" for k in keys) for p in curve) + \
        f"   (columns {','.join(keys)})"


def stored_curves(host, out) -> dict:
    import glob

    from unlearnbench.config import resolve
    from unlearnbench.selection import grid

    paths = sorted(glob.glob(str(ROOT / "benchmarks/results/protocol-v1/runs/**/run.json"), recursive=True)
                   + glob.glob(str(ROOT / "benchmarks/results/**/run.json"), recursive=True))
    stats: dict = {}
    disagreements: list[str] = []
    n_records = n_sweeps = n_full = 0
    for p in paths:
        rec = json.loads(Path(p).read_text())
        n_records += 1
        sel = rec.get("selection") or {}
        curve = sel.get("curve") or []
        if not curve or not all("lambda" in c for c in curve):
            continue  # no λ sweep: a hyperparameter search (or none)
        n_sweeps += 1
        res = resolve(host, file_layer=rec["config"], device_here=False)
        rule, rcfg = res.rule, res.cfg.selection
        lambdas = grid(str(rcfg.grid), None)
        full = [c["lambda"] for c in curve] == lambdas
        n_full += full
        class_wise = rec["config"]["scenario"].get("forget_class") is not None
        task = _Task(class_wise)
        where = str(Path(p).relative_to(ROOT).parent)
        for strat in STRATEGIES:
            key = (rec["scenario"], strat)
            s = stats.setdefault(key, {"n": 0, "agree": 0, "undetermined": 0, "evals": 0})
            s["n"] += 1
            try:
                got = replay(curve, lambdas, rule, rcfg, task, rec.get("retrain"), strat)
            except Undetermined as e:
                s["undetermined"] += 1
                disagreements.append(f"  {strat:9s} {where}: undetermined ({e}; curve has {len(curve)} points)")
                continue
            s["evals"] += got.evals
            if got.lam == sel["lambda"] and got.score == sel["score"]:
                s["agree"] += 1
            else:
                disagreements.append(
                    f"  {strat:9s} {where}: λ* {got.lam:g} score {got.score:.4f} (evaluated "
                    f"{[c['lambda'] for c in got.curve]}) vs record λ* {sel['lambda']:g} score {sel['score']:.4f}\n"
                    f"            curve: {_fmt_curve(curve, rule.name, class_wise)}")
    out(f"records read: {n_records}; with a λ sweep: {n_sweeps} (full-grid curves: {n_full}, others: "
        f"{n_sweeps - n_full}); rules/grids: every one val_matched on the classifier grid (41 points)")
    out("")
    out(f"{'scenario':16s} {'strategy':9s} {'sweeps':>6s} {'agree':>6s} {'undet.':>6s} {'mean evals':>10s}")
    totals: dict = {}
    for (scen, strat), s in sorted(stats.items(), key=lambda kv: (kv[0][0], STRATEGIES.index(kv[0][1]))):
        done = s["n"] - s["undetermined"]
        out(f"{scen:16s} {strat:9s} {s['n']:6d} {s['agree']:6d} {s['undetermined']:6d} "
            f"{s['evals'] / max(done, 1):10.2f}")
        t = totals.setdefault(strat, {"n": 0, "agree": 0, "undetermined": 0, "evals": 0})
        for k in t:
            t[k] += s[k]
    for strat in STRATEGIES:
        t = totals[strat]
        out(f"{'ALL':16s} {strat:9s} {t['n']:6d} {t['agree']:6d} {t['undetermined']:6d} "
            f"{t['evals'] / max(t['n'] - t['undetermined'], 1):10.2f}   (full grid: 41)")
    out("")
    out(f"disagreements ({len(disagreements)}):" if disagreements else "disagreements: none")
    for d in disagreements:
        out(d)
    return totals


def _capture():
    """Wraps context.sweep so every Selection of a run is kept (the method records only the best)."""
    import unlearnbench.context as context

    seen: list = []
    real = context.sweep

    def wrapped(*a, **k):
        sel = real(*a, **k)
        seen.append((sel, a, k))
        return sel

    context.sweep = wrapped
    return seen, lambda: setattr(context, "sweep", real)


def _run_ta(host, scenario: str, trial: int, store_root: Path, runs: Path, strategy: str):
    import torch

    from unlearnbench.config import resolve
    from unlearnbench.runner import run_trial
    from unlearnbench.store import Store

    res = resolve(host, method="task-arithmetic", scenario=scenario,
                  overrides=["threads=1"] + ([f"selection.strategy={strategy}"] if strategy != "grid" else []))
    seen, undo = _capture()
    try:
        t0 = time.perf_counter()
        rec = run_trial(res, trial, store=Store(store_root), runs_dir=runs / strategy, data_root=None)
        wall = time.perf_counter() - t0
    finally:
        undo()
    torch.set_num_threads(1)
    return rec, [s for s, _, _ in seen], [(a, k) for _, a, k in seen], wall


def _members_cmp(got: list[dict], want: list[dict]) -> list[str]:
    diffs = []
    for g, w in zip(got, want):
        if g["key"] != w["key"]:
            diffs.append(f"member {g['index']}: key {g['key'][:12]} vs {w['key'][:12]}")
        elif (g["lambda"], g["score"]) != (w["lambda"], w["score"]):
            diffs.append(f"member {g['index']}: λ {g['lambda']:g} score {g['score']:.4f} vs λ {w['lambda']:g} "
                         f"score {w['score']:.4f}")
    if len(got) != len(want):
        diffs.append(f"{len(got)} members vs {len(want)}")
    return diffs


def ta_digits(host, out) -> dict:
    agg = {s: {"members": 0, "agree_grid": 0, "agree_record": 0, "evals": 0, "real_match": 0} for s in STRATEGIES}
    for scenario in ("digits-10pct", "digits-class"):
        for trial in (0, 1, 2):
            old = json.loads((ROOT / f"benchmarks/results/protocol-v1/runs/{scenario}/task-arithmetic/seed-{trial}/run.json").read_text())
            with tempfile.TemporaryDirectory(prefix="lambda-replay-") as tmp:
                tmp = Path(tmp)
                rec, sels, calls, wall = _run_ta(host, scenario, trial, tmp / "store", tmp / "runs", "grid")
                same_art = rec["artifacts"] == old["artifacts"]
                same_orig = rec["original"] == old["original"]
                rep = _members_cmp(rec["info"]["member_scores"], old["info"]["member_scores"])
                out(f"{scenario} trial {trial}: grid rerun {wall:.0f} s; artifact keys "
                    f"{'equal' if same_art else 'DIFFER'}; original's metrics {'equal' if same_orig else 'DIFFER'} "
                    f"(the record has no weights digest); member_scores vs record: "
                    f"{'all 27 equal' if not rep else f'{len(rep)} differ (the record does not reproduce here)'}")
                for d in rep:
                    out(f"    grid rerun vs record: {d}")
                cw = old["config"]["scenario"].get("forget_class") is not None
                for strat in STRATEGIES:
                    a = agg[strat]
                    replayed = []
                    for sel, (args, kw), member in zip(sels, calls, rec["info"]["member_scores"]):
                        lambdas, rule, rcfg, task, reference = args[2], args[3], args[4], args[5], args[6]
                        got = replay(sel.curve, lambdas, rule, rcfg, task, reference, strat)
                        replayed.append({"index": member["index"], "key": member["key"], "lambda": got.lam,
                                         "score": got.score})
                        a["members"] += 1
                        a["evals"] += got.evals
                        if (got.lam, got.score) == (sel.lam, sel.score):
                            a["agree_grid"] += 1
                        else:
                            out(f"    {strat}: member {member['index']}: λ {got.lam:g} score {got.score:.4f} vs grid "
                                f"λ {sel.lam:g} score {sel.score:.4f}; evaluated {[c['lambda'] for c in got.curve]}"
                                f"\n        curve: {_fmt_curve(sel.curve, rule.name, cw)}")
                    a["agree_record"] += 27 - len(_members_cmp(replayed, old["info"]["member_scores"]))
                    if strat != "grid":  # the same strategy for real, on the stored pool
                        rec2, _, _, wall2 = _run_ta(host, scenario, trial, tmp / "store", tmp / "runs", strat)
                        real = _members_cmp(rec2["info"]["member_scores"], replayed)
                        a["real_match"] += 27 - len(real)
                        out(f"  {strat}: replay agrees with the grid rerun on "
                            f"{sum(1 for r, s in zip(replayed, sels) if (r['lambda'], r['score']) == (s.lam, s.score))}"
                            f"/27 members; the real run ({wall2:.0f} s, {rec2['timings']['select_evals']} evaluations "
                            f"vs {rec['timings']['select_evals']}, select {rec2['timings']['select_s']:.1f} s vs "
                            f"{rec['timings']['select_s']:.1f} s) matches the replay on {27 - len(real)}/27"
                            + (f"; TA's λ* {rec2['lambda']:g} vs {rec['lambda']:g}, best member "
                               f"{rec2['info']['best_member']['index']} vs {rec['info']['best_member']['index']}"))
                        for d in real:
                            out(f"      real vs replay: {d}")
    out("")
    out(f"{'strategy':9s} {'members':>7s} {'=grid rerun':>11s} {'=record':>8s} {'real=replay':>11s} {'mean evals':>10s}")
    for strat in STRATEGIES:
        a = agg[strat]
        out(f"{strat:9s} {a['members']:7d} {a['agree_grid']:11d} {a['agree_record']:8d} "
            f"{a['real_match'] if strat != 'grid' else '-':>11} {a['evals'] / max(a['members'], 1):10.2f}")
    return agg


def ta_fmnist(host, store: Path, strategy: str, out) -> None:
    old = json.loads((ROOT / "benchmarks/results/protocol-v1/runs/fmnist-10pct/task-arithmetic/seed-0/run.json").read_text())
    with tempfile.TemporaryDirectory(prefix="lambda-replay-fm-") as tmp:
        tmp = Path(tmp)
        shutil.copytree(store, tmp / "store")  # a copy: nothing is written into the store given
        rec, sels, _, wall = _run_ta(host, "fmnist-10pct", 0, tmp / "store", tmp / "runs", strategy)
    out(f"fmnist-10pct trial 0, strategy {strategy}, 1 thread: wall {wall:.0f} s, select "
        f"{rec['timings']['select_s']:.0f} s for {rec['timings']['select_evals']} evaluations "
        f"(record: {old['timings']['select_s']:.0f} s for {old['timings']['select_evals']}, 2 threads); "
        f"trained now: {rec['trained_now'] or 'nothing'}")
    out(f"  artifact keys {'equal' if rec['artifacts'] == old['artifacts'] else 'DIFFER'}; the original's metrics "
        f"{'equal' if rec['original'] == old['original'] else 'DIFFER'} (the record's weights_sha256 is a file "
        "hash, not comparable with weights_digest)")
    best = old["info"]["best_member"]["index"]
    full = {p["lambda"]: p for p in old["selection"]["curve"]}  # the record's best member's full curve
    for sel, m in zip(sels, rec["info"]["member_scores"]):
        if m["index"] == best:
            same = [p["lambda"] for p in sel.curve if p["lambda"] in full and full[p["lambda"]] == p]
            out(f"  member {best} (the record's best): {len(same)}/{len(sel.curve)} evaluated points equal the "
                f"record's curve bit for bit")
    diffs = _members_cmp(rec["info"]["member_scores"], old["info"]["member_scores"])
    out(f"  members agreeing with the record (λ and score): {27 - len(diffs)}/27; TA's λ* {rec['lambda']:g} vs "
        f"{old['lambda']:g}, best member {rec['info']['best_member']['index']} vs {best}")
    want = {m["index"]: m for m in old["info"]["member_scores"]}
    for sel, m in zip(sels, rec["info"]["member_scores"]):
        w = want[m["index"]]
        if (m["lambda"], m["score"]) != (w["lambda"], w["score"]):
            at = [p for p in sel.curve if p["lambda"] == w["lambda"]]
            out(f"    member {m['index']}: λ {m['lambda']:g} score {m['score']:.4f} vs record λ {w['lambda']:g} "
                f"score {w['score']:.4f}; record's λ {'evaluated' if at else 'not evaluated'}"
                f"; evaluated: {_fmt_curve(sel.curve, '', False)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ta-digits", action="store_true", help="re-select Task Arithmetic on digits (trains; ~8 min)")
    ap.add_argument("--fmnist-store", type=Path, help="a store with fmnist-10pct trial 0's original and pool")
    ap.add_argument("--fmnist-strategy", default="halving")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import torch

    from unlearnbench import progress
    from unlearnbench.plugins import get_host

    torch.set_num_threads(1)
    progress.set_quiet(True)
    host = get_host()
    lines: list[str] = []

    def out(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    out(f"# benchmarks/lambda_replay.py, {datetime.datetime.now().isoformat(timespec='seconds')}, "
        f"torch {torch.__version__}, 1 thread")
    out("# command: OMP_NUM_THREADS=1 python " + " ".join([sys.argv[0]] + sys.argv[1:]))
    out("# strategies: grid = every λ (today); frontier = every λ up to the first infeasible one; "
        "halving = every 8th λ, then steps 4, 2, 1 around the choice (selection._halving)")
    out("# agreement = the same λ* and the same score (exact float equality)")
    out("")
    out("## 1. stored λ curves")
    stored_curves(host, out)
    if args.ta_digits:
        out("")
        out("## 2. Task Arithmetic re-selection on digits (fresh store per trial, 27 members)")
        ta_digits(host, out)
    if args.fmnist_store:
        out("")
        out("## 3. Task Arithmetic re-selection on fmnist-10pct trial 0")
        ta_fmnist(host, args.fmnist_store, args.fmnist_strategy, out)
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
