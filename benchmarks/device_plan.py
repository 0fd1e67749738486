"""Plan the second phase of benchmarks/device_sweep.sh for one (scenario, seed).

Phase 1 trained this machine's original and Retrain (records in NEW). If their metrics equal
those of the committed records in OLD bit for bit, this machine reproduces the committed trial,
and only the methods OLD lacks need to run. Otherwise the trial must be rerun whole here, so
that every row of it unlearns the same original (what `unlearnbench leaderboard` checks).

Prints one line per group of methods (comma-separated), balanced by rough H200 costs, for
parallel `unlearnbench sweep` processes; the decision goes to stderr.

    python benchmarks/device_plan.py --new runs-gpu --old leaderboards/runs -s fmnist-10pct --seed 0 --groups 3
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Rough wall seconds of one fmnist trial's method on the H200 (session-1 device logs; the
# retain-set baselines train 5 candidate lrs). Only used to balance groups.
COST = {"task-arithmetic": 80, "finetune": 45, "l1-sparse": 45, "random-label": 45, "salun": 50,
        "influence": 25, "ties": 23, "uniform": 21, "boundary-shrink": 21, "salun-forget": 20}
DEFAULT_COST = 16


def recorded(runs: Path, scenario: str, seed: int) -> set[str]:
    out = set()
    for rec in (runs / scenario).glob(f"*/seed-{seed}/run.json"):
        if "@" not in rec.parent.parent.name:  # default configuration only, as the leaderboard
            out.add(json.loads(rec.read_text())["method"])
    return out


def trial_signature(runs: Path, scenario: str, seed: int) -> tuple | None:
    rec = runs / scenario / "retrain" / f"seed-{seed}" / "run.json"
    if not rec.exists():
        return None
    r = json.loads(rec.read_text())
    return json.dumps(r["original"], sort_keys=True), json.dumps(r["retrain"], sort_keys=True)


def plan(new: Path, old: Path, scenario: str, seed: int, every: list[str]) -> tuple[str, list[str]]:
    mine = trial_signature(new, scenario, seed)
    if mine is None:
        raise SystemExit(f"no Retrain record for {scenario} seed {seed} in {new}: phase 1 did not finish")
    same = mine == trial_signature(old, scenario, seed)
    done = recorded(new, scenario, seed) | (recorded(old, scenario, seed) if same else set())
    return ("reproduces" if same else "differs from"), [m for m in every if m not in done]


def balance(methods: list[str], groups: int) -> list[list[str]]:
    """Longest job first onto the least-loaded group."""
    bins: list[tuple[float, list[str]]] = [(0.0, []) for _ in range(groups)]
    for m in sorted(methods, key=lambda m: -COST.get(m, DEFAULT_COST)):
        i = min(range(groups), key=lambda j: bins[j][0])
        bins[i] = (bins[i][0] + COST.get(m, DEFAULT_COST), bins[i][1] + [m])
    return [b for _, b in bins if b]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--new", type=Path, required=True)
    ap.add_argument("--old", type=Path, required=True)
    ap.add_argument("-s", "--scenario", required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--groups", type=int, default=3)
    a = ap.parse_args()
    from unlearnbench.plugins import get_host

    every = get_host().methods.names()
    verdict, todo = plan(a.new, a.old, a.scenario, a.seed, every)
    print(f"{a.scenario} seed {a.seed}: this machine {verdict} the committed trial; "
          f"{len(todo)} method(s) to run", file=sys.stderr)
    for group in balance(todo, a.groups):
        print(",".join(group))


if __name__ == "__main__":
    main()
