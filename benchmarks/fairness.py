"""Issue 16 acceptance 7, "fairness, measured": from a folder of protocol-2 records, per board:

- the share of searched records whose choice still sits at a grid end after the v2 search's extensions
  (``grid_edge``; goal <= 10 %), and which;
- the records whose search found no feasible setting (``none_feasible``: they returned θ_0);
- for each training-based baseline, whether its chosen model moves away from the original beyond seed
  noise: the per-seed change of Acc D_f and of Avg. Gap (unlearned − original), each by the boards'
  2-SE rule (mean beyond 2 standard errors of the per-seed changes).

    python benchmarks/fairness.py leaderboards/runs > benchmarks/results/fairness_v2.txt
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from datetime import date
from pathlib import Path

Z = 2.0


def beyond(diffs: list[float]) -> str:
    if len(diffs) < 2:
        return "n/a"
    m, se = statistics.mean(diffs), statistics.stdev(diffs) / math.sqrt(len(diffs))
    word = "moves" if abs(m) > Z * se else "within noise"
    return f"{word} ({m:+.2f} ± {se:.2f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path)
    args = ap.parse_args()
    recs = [json.loads(p.read_text()) for p in sorted(args.runs.rglob("run.json"))]
    recs = [r for r in recs if int(r.get("protocol", 1)) >= 2 and not r.get("variant")]
    print(f"# fairness of the v2 searches, {date.today()}; from {args.runs} ({len(recs)} default-config records)")
    print(f"# command: python benchmarks/fairness.py {args.runs}")
    for scen in sorted({r["scenario"] for r in recs}):
        rs = [r for r in recs if r["scenario"] == scen]
        searched = [r for r in rs if ((r.get("selection") or {}).get("params") or {}).get("search") == "v2"]
        edge = [r for r in searched if r["selection"].get("grid_edge")]
        nf = [r for r in searched if r["selection"]["params"].get("none_feasible")]
        ext = [r for r in searched if r["selection"]["params"].get("grid_extended")]
        print(f"\n## {scen}")
        share = 100 * len(edge) / len(searched) if searched else float("nan")
        print(f"searched records: {len(searched)}; at a grid end after extension: {len(edge)} ({share:.0f} %; "
              f"goal <= 10 %); extended: {len(ext)}; none_feasible (returned θ_0): {len(nf)}")
        for r in edge:
            p = r["selection"]["params"]
            print(f"  edge: {r['method']} seed {r['trial']}: chosen {p['chosen']}, extensions {p.get('extensions')}")
        for r in nf:
            print(f"  none_feasible: {r['method']} seed {r['trial']}")
        print("baseline: Acc D_f change / Avg. Gap change vs the original at the chosen setting (per-seed mean ± SE)")
        for meth in sorted({r["method"] for r in searched}):
            mr = sorted((r for r in searched if r["method"] == meth), key=lambda r: r["trial"])
            df = [r["metrics"]["acc_forget"] - r["original"]["acc_forget"] for r in mr]
            gap = []
            for r in mr:
                if r.get("retrain") and r.get("gap"):
                    o = sum(abs(r["original"][k] - r["retrain"][k]) for k in ("acc_retain", "acc_forget", "acc_test",
                                                                                "mia")) / 4
                    gap.append(r["gap"]["avg_gap"] - o)
            same = sum(r["weights_digest"]["unlearned"] == r["weights_digest"].get("original") for r in mr)
            print(f"  {meth:22s} Acc D_f: {beyond(df):28s} Avg. Gap: {beyond(gap):28s} "
                  f"returned θ_0 bit for bit in {same} of {len(mr)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
