"""What the exact pruning of the oracle rules saves (``selection._Pruner``), in one run, before and after.

    python benchmarks/prune_cost.py --store /work/st-v2 --out benchmarks/results/prune_cost.txt

For each (scenario, method) it runs trial 0 twice in this process, on the same store (its original, Retrain
and pool already there, so only selection and evaluation run): once with the oracle rules of
``selection.also`` measured whole at every point (their ``stages`` switched off: the code before the
pruning) and once pruned (the default). It reports, per run, the wall time of the selection stage
(``select_s`` or ``search_s``), the images put through the model, the SVC MIA fits, and whether the two
records agree on every rule's choice, score and final metrics (they must: the pruning is exact).

The counts are exact whatever else runs on the machine; the times are only comparable when nothing else
does (the header says how many cores were busy when it started).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import tempfile
import time
from pathlib import Path

CASES = [("digits-10pct", "task-arithmetic"), ("digits-class", "task-arithmetic"), ("digits-10pct", "negmerge"),
         ("digits-class", "finetune")]


def one(host, scenario: str, method: str, store, pruned: bool, threads: int) -> dict:
    from unlearnbench import metrics, rules
    from unlearnbench.config import resolve
    from unlearnbench.evaluate import Evaluator
    from unlearnbench.runner import run_trial

    fits = {"n": 0}
    real_mia, real_measure = metrics.mia_efficacy, Evaluator.measure
    forwarded = {"n": 0}

    def counting_mia(*a, **kw):
        fits["n"] += 1
        return real_mia(*a, **kw)

    def counting_measure(self, *a, **kw):
        before = self.forwarded
        try:
            return real_measure(self, *a, **kw)
        finally:
            forwarded["n"] += self.forwarded - before

    import unlearnbench.evaluate as ev

    saved = {c: c.stages for c in (rules.OracleAvgGap, rules.OracleSplitTest)}
    ev.mia_efficacy, Evaluator.measure = counting_mia, counting_measure
    if not pruned:
        for c in saved:
            c.stages = lambda self, cfg, task: None
    try:
        res = resolve(host, method=method, scenario=scenario, overrides=[f"threads={threads}"])
        with tempfile.TemporaryDirectory() as runs:
            t0 = time.perf_counter()
            rec = run_trial(res, 0, store=store, runs_dir=Path(runs), data_root=None)
            wall = time.perf_counter() - t0
    finally:
        ev.mia_efficacy, Evaluator.measure = real_mia, real_measure
        for c, f in saved.items():
            c.stages = f
    t = rec["timings"]
    stage = "select_s" if "select_s" in t else "search_s"
    return {"record": rec, "stage": stage, "stage_s": t[stage], "wall_s": wall, "images": forwarded["n"],
            "mia_fits": fits["n"]}


def same(a: dict, b: dict) -> bool:
    keys = ("lambda", "metrics", "gap", "by_rule", "rule_report", "weights_digest")
    return all(a.get(k) == b.get(k) for k in keys)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True, type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["UNLEARNBENCH_QUIET"] = "1"  # no progress bars in the table
    from unlearnbench.plugins import get_host
    from unlearnbench.store import Store

    host, store = get_host(), Store(args.store)
    lines = [f"# python benchmarks/prune_cost.py --store {args.store}",
             f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
             f"load average at start {os.getloadavg()[0]:.2f}, torch threads {args.threads}", "",
             "| scenario | method | stage | whole s | pruned s | speed-up | images whole | images pruned | "
             "MIA fits whole | MIA fits pruned | same record |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for scenario, method in CASES:
        whole = one(host, scenario, method, store, False, args.threads)
        pruned = one(host, scenario, method, store, True, args.threads)
        lines.append(f"| {scenario} | {method} | {whole['stage']} | {whole['stage_s']:.1f} | {pruned['stage_s']:.1f} | "
                     f"{whole['stage_s'] / pruned['stage_s']:.2f}x | {whole['images']:,} | {pruned['images']:,} | "
                     f"{whole['mia_fits']} | {pruned['mia_fits']} | {same(whole['record'], pruned['record'])} |")
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
