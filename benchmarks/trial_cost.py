"""What one fmnist-10pct trial costs, stage by stage, before and after issue 15 (acceptance 4-6).

    python benchmarks/trial_cost.py --store /work/st-fmnist --out benchmarks/results/trial_cost.txt

``--store`` holds trial 0's original and Retrain (and the pool, for the λ-sweep stages); anything it
lacks is trained first, untimed. Every stage runs as its own ``unlearnbench run`` process, one at a
time on an otherwise idle machine, and its time is the ``timings`` field that run wrote:

- one merge's λ sweep (NegMerge, ``select_s``): ``selection.strategy=grid`` (before), ``frontier`` and
  ``halving`` (after; both options, the default stays ``grid``: benchmarks/results/lambda_replay.txt);
- Task Arithmetic's selection (``select_s``): the grid on the first 9 members, scaled by 27/9 (before),
  ``frontier`` on the same 9 (scaled) and ``halving`` on all 27 (after); each member's λ and score are
  compared with the grid's on the same stored pool;
- the 27-member pool (``pool_s``), in a fresh store holding only θ_0: ``local`` with 2 threads (before),
  ``processes`` with 2 workers x 1 thread, and ``ray`` the same (after);
- one retain baseline's lr search (fine-tuning, ``search_s``, 5 lrs x 10 epochs): the same three;
- the final evaluation (``eval_s``), unchanged.

The projected trial replaces each stage of the recorded 116-min trial
(benchmarks/results/fmnist_cpu_stages.json) by its measured ratio.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCEN = "fmnist-10pct"
PROC = ["executor=processes", "executor.workers=2", "executor.threads_per_worker=1"]
RAY = ["executor=ray", "executor.workers=2", "executor.threads_per_worker=1"]


def cli() -> list[str]:
    exe = Path(sys.executable).with_name("unlearnbench")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "unlearnbench.cli"]


def run(method: str, store: Path, overrides: list[str], tag: str, work: Path) -> dict:
    """One stage's run, or its record from an earlier invocation with the same --work (resumable: a
    stage already measured is read back, never timed again)."""
    runs = work / f"runs-{tag}"
    done = list(runs.rglob("run.json")) if runs.exists() else []
    if done:
        (p,) = done
        return json.loads(p.read_text())
    cmd = cli() + ["run", "--method", method, "--scenario", SCEN, "--seeds", "0", "--store", str(store),
                   "--runs-dir", str(runs), "--quiet", "-o", "threads=2"]
    for o in overrides:
        cmd += ["-o", o]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "UNLEARNBENCH_QUIET": "1"})
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    (rec,) = [json.loads(p.read_text()) for p in runs.rglob("run.json")]
    rec["_wall"] = wall
    return rec


def shared_only(src: Path, dest: Path) -> Path:
    """A fresh store holding src's init, original, Retrain, manifest and metrics, not its pool."""
    for kind in ("init", "original", "retrain", "manifest", "metrics"):
        if (src / kind).exists():
            shutil.copytree(src / kind, dest / kind, ignore=shutil.ignore_patterns("*.lock"))
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True, type=Path)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "trial_cost.txt")
    ap.add_argument("--stages", default="sweep,ta,pool,search", help="which stages to time (comma list)")
    ap.add_argument("--work", type=Path, help="keep each stage's run here and reuse it when the script runs again "
                    "(resume an interrupted measurement; default: a temporary folder, removed)")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray side")
    ap.add_argument("--ray-search", action="store_true", help="time the search on Ray too (the pool always is)")
    args = ap.parse_args()
    stages = set(args.stages.split(","))
    lines: list[str] = [f"# python benchmarks/trial_cost.py {' '.join(sys.argv[1:])}",
                        f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
                        f"{os.cpu_count()} cores, one stage at a time (nothing else running)"]

    def say(msg: str = "") -> None:
        print(msg, flush=True)
        lines.append(msg)

    work = args.work or Path(tempfile.mkdtemp(prefix="trial-cost-"))
    work.mkdir(parents=True, exist_ok=True)
    ratios: dict[str, float] = {}
    rows: list[tuple[str, str, float, str, float]] = []
    try:
        warm = run("retrain", args.store, [], "warm", work)  # trains what is missing (untimed)
        say(f"store {args.store}: original {warm['weights_digest']['original'][:12]}, "
            f"trained now: {warm['trained_now'] or 'nothing'}")
        if "sweep" in stages:
            before = run("negmerge", args.store, ["selection.strategy=grid"], "sweep-grid", work)
            b = before["timings"]["select_s"]
            for strat in ("frontier", "halving"):
                after = run("negmerge", args.store, [f"selection.strategy={strat}"], f"sweep-{strat}", work)
                a = after["timings"]["select_s"]
                same = before["weights_digest"]["unlearned"] == after["weights_digest"]["unlearned"]
                rows.append(("NegMerge λ sweep", f"grid, {before['timings']['select_evals']} evals", b,
                             f"{strat}, {after['timings']['select_evals']} evals", a))
                ratios["sweep" if strat == "frontier" else "sweep_halving"] = b / a
                say(f"λ sweep {strat}: λ* {after['lambda']} (grid {before['lambda']}), same unlearned weights: {same}")
        if "ta" in stages:
            grid9 = run("task-arithmetic", args.store, ["selection.strategy=grid", "pool.size=9"], "ta-grid9", work)
            front9 = run("task-arithmetic", args.store, ["selection.strategy=frontier", "pool.size=9"], "ta-front9", work)
            half = run("task-arithmetic", args.store, ["selection.strategy=halving"], "ta-halving", work)
            b = grid9["timings"]["select_s"] * 27 / 9
            ref = [(m["lambda"], m["score"]) for m in grid9["info"]["member_scores"]]
            for tag, rec, scale in (("frontier", front9, 3), ("halving", half, 1)):
                got = [(m["lambda"], m["score"]) for m in rec["info"]["member_scores"][:9]]
                agree = sum(g == r for g, r in zip(got, ref))
                a = rec["timings"]["select_s"] * scale
                rows.append(("Task Arithmetic selection, 27 members", f"grid ({grid9['timings']['select_evals']} evals "
                             "on 9 members, x 27/9)", b, f"{tag} ({rec['timings']['select_evals']} evals"
                             f"{' on 9 members, x 27/9' if scale == 3 else ''})", a))
                say(f"TA {tag}: members 0-8 with the grid's λ and score: {agree} of 9")
                ratios["ta" if tag == "frontier" else "ta_halving"] = b / a
            say(f"TA halving: best member {half['info']['best_member']['index']} at λ {half['lambda']}")
        for stage, method, key in (("pool", "negmerge", "pool_s"), ("search", "finetune", "search_s")):
            if stage not in stages:
                continue
            got = {}
            sides = [("local", []), ("processes", PROC)]
            if not args.no_ray and (stage == "pool" or args.ray_search):
                sides.append(("ray", RAY))
            for tag, over in sides:
                store = work / f"store-{stage}-{tag}"
                shutil.rmtree(store, ignore_errors=True)  # fresh: what an interrupted attempt trained is not reused
                shared_only(args.store, store)
                rec = run(method, store, over, f"{stage}-{tag}", work)
                got[tag] = rec
                shutil.rmtree(store, ignore_errors=True)
            b = got["local"]["timings"][key]
            for tag in got:
                if tag != "local":
                    same = got[tag]["weights_digest"]["unlearned"] == got["local"]["weights_digest"]["unlearned"]
                    say(f"{stage} {tag}: unlearned weights equal to local's with 2 threads: {same} (expected only "
                        "with the same per-job threads: 1 vs 2 here)")
            label = "27-member pool" if stage == "pool" else "finetune lr search (5 x 10 epochs)"
            rows.append((label, "local, 2 threads", b, "processes, 2 x 1 thread", got["processes"]["timings"][key]))
            ratios[stage] = b / got["processes"]["timings"][key]
            if "ray" in got:
                rows.append((label, "local, 2 threads", b, "ray, 2 x 1 thread", got["ray"]["timings"][key]))
                say(f"{stage}: ray / processes = {got['ray']['timings'][key] / got['processes']['timings'][key]:.3f}")
            say(f"final evaluation ({method}): {got['local']['timings']['eval_s']:.1f} s")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    say()
    say("| stage | before | s | after | s | speed-up |")
    say("|---|---|---|---|---|---|")
    for name, bd, b, ad, a in rows:
        say(f"| {name} | {bd} | {b:,.1f} | {ad} | {a:,.1f} | {b / a:.2f}x |")
    # the recorded trial: every fmnist-10pct seed-0 record on the board (benchmarks/results/
    # fmnist_cpu_stage_timings.txt tabulates the same records: 116 min)
    recs = [json.loads(p.read_text()) for p in sorted((HERE / "results" / "protocol-v1" / "runs" / SCEN).glob("*/seed-0/run.json"))]
    total = sum(r["timings"]["total_s"] for r in recs)
    say()
    say(f"projected whole trial ({len(recs)} recorded runs, {total / 60:.1f} min; each stage scaled by its measured "
        "ratio, unmeasured stages as recorded):")
    for label, sweep_r, ta_r in (("frontier (agrees on every replayed curve)", ratios.get("sweep"), ratios.get("ta")),
                                 ("halving (an option: disagrees on 19 of 210 replayed curves)", ratios.get("sweep_halving"),
                                  ratios.get("ta_halving"))):
        saved = 0.0
        for r in recs:
            t = r["timings"]
            sel = ta_r if r["method"] == "task-arithmetic" else sweep_r
            if sel and t.get("select_s"):
                saved += t["select_s"] * (1 - 1 / sel)
            if ratios.get("search") and t.get("search_s"):
                saved += t["search_s"] * (1 - 1 / ratios["search"])
            if ratios.get("pool") and t.get("pool_trained"):
                saved += t.get("pool_s", 0.0) * (1 - 1 / ratios["pool"])
        say(f"  λ strategy {label}, pool on processes: {(total - saved) / 60:.1f} min ({total / (total - saved):.2f}x)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
