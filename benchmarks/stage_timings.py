"""Per-stage wall time of one trial for every method, from recorded runs (issue 5, acceptance 7).

    unlearnbench sweep --methods retrain,finetune,...,greedy --scenarios fmnist-10pct --seeds 0 \
        --runs-dir benchmarks/results/fmnist-cpu-runs --data-root .fmnist
    python benchmarks/stage_timings.py benchmarks/results/fmnist-cpu-runs

Nothing is timed here: every number is a ``timings`` field the runner wrote into run.json. The
shared stages (original, retrain, the fine-tune pool) are trained once per trial by whichever
run needed them first and come from the store afterwards; they are listed once, with the run
that paid for them. Per method: the lr search (baselines, §7.3), the unlearning itself
(training or merging) outside the search, the λ selection (merges) and the final evaluation.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SHARED = (("original_s", "original (train θ_0 on D_train)"), ("retrain_s", "retrain (oracle, on D_r)"),
          ("pool_s", "fine-tune pool (every member on D_f)"))
PAID = {"original_s": "original", "retrain_s": "retrain"}  # trained_now names what a run trained


def paid(r: dict, key: str) -> bool:
    """Did this run train the shared stage ``key`` (rather than read it from the store)?"""
    t = r["timings"]
    if key not in t:
        return False
    return bool(t.get("pool_trained")) if key == "pool_s" else PAID[key] in (r.get("trained_now") or [])
# unlearn_s (runner) holds the search: a searched baseline keeps the model the search trained
PER_METHOD = (("search_s", "lr search (trains every candidate lr)"), ("unlearn_only_s", "unlearning outside a search"),
              ("select_s", "λ selection"), ("eval_s", "evaluation"))


def stage_time(r: dict, key: str) -> tuple[float, str]:
    """The recorded time of a shared stage this run trained. Records written before the runner
    fix of retrain_s (a method's ctx.retrain() read overwrote the stage's training time) hold
    ~0 there: the stage is then the run's total minus its other recorded stages, marked derived."""
    t = r["timings"]
    if key == "retrain_s" and t[key] < 0.01:
        rest = sum(t.get(k, 0.0) for k in ("data_s", "init_s", "original_s", "unlearn_s", "eval_s"))
        return t["total_s"] - rest, " (derived: total − other stages)"
    return t[key], ""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs_dir")
    ap.add_argument("--scenario", default="fmnist-10pct")
    ap.add_argument("--trial", type=int, default=0)
    a = ap.parse_args()
    recs = []
    for p in sorted(Path(a.runs_dir).rglob("run.json")):
        r = json.loads(p.read_text())
        if r["scenario"] == a.scenario and r["trial"] == a.trial:
            recs.append(r)
    if not recs:
        print(f"no records of {a.scenario} trial {a.trial} under {a.runs_dir}", file=sys.stderr)
        return 1
    prov = recs[0].get("provenance") or {}
    print(f"{a.scenario}, trial {a.trial}: {len(recs)} runs; {prov.get('cpu') or prov.get('gpu')}, "
          f"{prov.get('cores_available')} cores, {prov.get('threads')} threads, device {prov.get('device')}, "
          f"torch {prov.get('torch')}\n")
    print("Shared stages (trained once per trial, then read from the store):\n")
    print("| stage | wall s | paid by |\n|---|---|---|")
    for key, label in SHARED:
        payers = [(r["method"], *stage_time(r, key)) for r in recs if paid(r, key)]
        for who, s, how in payers[:1]:
            print(f"| {label} | {s:.1f}{how} | {who} |")
        if not payers:
            print(f"| {label} | – | not trained in these runs |")
    print("\nPer method (shared stages excluded; wall s):\n")
    cols = [label for _, label in PER_METHOD]
    print("| method | " + " | ".join(cols) + " | total | slowest stage |\n|---|" + "---|" * (len(cols) + 2))
    rows = []
    for r in sorted(recs, key=lambda r: r["method"]):
        t = dict(r["timings"])
        t["unlearn_only_s"] = t.get("unlearn_s", 0.0) - t.get("search_s", 0.0)
        shared = sum(stage_time(r, k)[0] for k, _ in SHARED if paid(r, k))
        own = {label: t.get(k) for k, label in PER_METHOD}
        total = t["total_s"] - shared
        slow = max(((lab, v) for lab, v in own.items() if v), key=lambda x: x[1], default=("–", 0))[0]
        rows.append((r["method"], own, total, slow))
    for name, own, total, slow in sorted(rows, key=lambda x: -x[2]):
        print(f"| {name} | " + " | ".join("–" if own[c] is None else f"{own[c]:.1f}" for c in cols)
              + f" | {total:.1f} | {slow} |")
    per = sum(x[2] for x in rows)
    shared_total = sum(next((stage_time(r, k)[0] for r in recs if paid(r, k)), 0.0) for k, _ in SHARED)
    print(f"\nall {len(rows)} methods: {per:.0f} s of their own stages + {shared_total:.0f} s shared "
          f"= {(per + shared_total) / 60:.1f} min for one trial")
    return 0


if __name__ == "__main__":
    sys.exit(main())
