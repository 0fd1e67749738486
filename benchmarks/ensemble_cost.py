"""What one ensemble member of each kind and each ensemble metric costs (issue 18 acceptance 3 and 6).

Run it alone on the machine (PROTOCOL §10.1: another job on the cores changes every number):

    python benchmarks/ensemble_cost.py --scenario digits-10pct --methods finetune,negmerge \\
        --runs-dir leaderboards/runs --out benchmarks/results/ensemble_cost_digits.txt

Members are timed through the job functions the builder sends to its executor (``ensemble.members``), in
this process, on ``--threads`` threads, and nothing is written to a store: an original O_i, an oracle R_i
(R′ costs the same), a LiRA half-size original θ_k, and one replayed run of each method from O_0 (run 1, so
a merge fine-tunes its fresh pool) and from θ_k. The metrics run on synthetic margins of the scenario's split
sizes at the preset's N (they depend on sizes only): KLOM per split, the challenge metric per forget example
(its per-example cost is what §8.7.2 reports), U-LiRA over K×M runs on D_pool. The table ends with the
serial cost of the whole preset per scenario and per method, from those unit costs.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path


def _time(fn, repeats: int) -> tuple[float, float]:
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.mean(ts), (statistics.stdev(ts) if len(ts) > 1 else 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="digits-10pct")
    ap.add_argument("--methods", default="", help="run folders with a trial-0 record under --runs-dir")
    ap.add_argument("--runs-dir", default="leaderboards/runs")
    ap.add_argument("--store", default=None, help="where the trial's original and Retrain are (default store)")
    ap.add_argument("--preset", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--challenge-examples", type=int, default=20, help="forget examples timed for the per-example cost")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    import numpy as np
    import torch

    from unlearnbench.config import resolve
    from unlearnbench.ensemble import challenge, klom, members, ulira
    from unlearnbench.ensemble.build import sizes_for, subject, trial0_record
    from unlearnbench.plugins import get_host
    from unlearnbench.provenance import provenance
    from unlearnbench.runner import build_task
    from unlearnbench.stages import Stages
    from unlearnbench.store import Store

    torch.set_num_threads(a.threads)
    host = get_host()
    names = [n.strip() for n in a.methods.split(",") if n.strip()]
    subjects = [subject(host, *trial0_record(Path(a.runs_dir), a.scenario, n), []) for n in names]
    res = subjects[0].res if subjects else resolve(host, scenario=a.scenario, method="retrain")
    sizes = sizes_for(res.scenario, a.preset)
    task = build_task(res, 0, a.data_root)
    stages = Stages(task, Store(a.store))
    theta0 = stages.original()
    rows: list[tuple[str, float, float, str]] = []

    def member(label, fn, note=""):
        m, s = _time(fn, a.repeats)
        rows.append((label, m, s, note))
        print(f"{label}: {m:.2f} s", flush=True)
        return m

    tr, rt = task.indices("train"), task.indices("retain")
    init, order = members.model_seeds(0, "original", 1)
    c_orig = member("original O_i (D_train)", lambda: members.train_model_member(task, tr, init, order, True, "cpu", "O"))
    c_orac = member("oracle R_i / R′_i (D_r)", lambda: members.train_model_member(task, rt, init, order, False, "cpu", "R"))
    halves, forgets = members.lira_splits(np.asarray(tr), task.data.y.numpy(), 0, max(sizes.lira_k, 1),
                                          max(sizes.lira_m, 1), task.manifest.get("forget_class"))
    c_half = member("LiRA half original θ_k", lambda: members.train_model_member(task, halves[0], init, order, True,
                                                                                "cpu", "θ"))
    theta_k = members.train_model_member(task, halves[0], init, order, True, "cpu", "θ")["state"]
    per_method = {}
    for s in subjects:
        c_run = member(f"run of {s.name} from O_0 (run 1)", lambda s=s: members.run_members(
            task, [(s.name, s.res, s.replay)], theta0, stages.keys["original"], 1, "cpu"))
        h, f = halves[0].tolist(), forgets[0][0].tolist()
        c_lira = member(f"LiRA run of {s.name} from θ_0", lambda s=s: members.run_members(
            task, [(s.name, s.res, s.replay)], theta_k, "theta", ["lira", 0, 0], "cpu",
            {"train": h, "forget": f, "retain": sorted(set(h) - set(f))}))
        per_method[s.name] = (c_run, c_lira)

    g = np.random.default_rng(0)
    sz = task.manifest["sizes"]
    n_f = sz["forget"]
    for split in ("retain", "forget", "test"):
        u, o = g.normal(0, 1, (sizes.klom or 64, sz[split])), g.normal(0, 1, (sizes.klom or 64, sz[split]))
        member(f"metric KLOM on {split} (N={u.shape[0]}, {sz[split]} examples)", lambda u=u, o=o: klom.klom(u, o))
    n = sizes.challenge or 64
    k = min(a.challenge_examples, n_f)
    u, v = g.normal(0, 1, (n, k)), g.normal(0.3, 1, (n, k))
    c_ex = member(f"metric challenge, {k} forget examples (N={n})", lambda: challenge.epsilons(u, v))
    rows.append((f"  challenge per example (N={n})", c_ex / k, 0.0, f"× |D_f| = {n_f}: {c_ex / k * n_f:.1f} s"))
    K, M = sizes.lira_k or 16, sizes.lira_m or 10
    pool = len(tr)
    in_half = np.stack([g.random(pool) < 0.5 for _ in range(K)])
    half = np.repeat(np.arange(K), M)
    forget = np.stack([in_half[h] & (g.random(pool) < 0.1) for h in half])
    phi = g.normal(0, 1, (K * M, pool))
    member(f"metric U-LiRA (K×M={K}×{M}, {pool} examples)", lambda: ulira.ulira(phi, half, in_half, forget,
                                                                                 variance=sizes.variance))

    n_o, n_r = max(sizes.klom, 1) - 1, max(sizes.oracles - 1, 0) + sizes.oracles
    one_off = n_o * c_orig + n_r * c_orac + sizes.lira_k * c_half
    lines = [f"# ensemble member and metric costs: {a.scenario}, preset {a.preset} -> {sizes}",
             f"# {provenance('cpu', a.threads)}", "",
             f"{'what':<60} {'mean s':>10} {'std s':>8}  note", "-" * 100]
    lines += [f"{lab:<60} {m:>10.3f} {s:>8.3f}  {note}" for lab, m, s, note in rows]
    lines += ["", f"one-off models (serial): {n_o} originals + {n_r} oracles + {sizes.lira_k} half originals = "
              f"{one_off / 60:.1f} min"]
    for name, (c_run, c_lira) in per_method.items():
        runs = (sizes.klom + max(sizes.challenge - (1 if sizes.klom else 0), 0))
        total = runs * c_run + sizes.lira_k * sizes.lira_m * c_lira
        lines.append(f"{name} (serial): {runs} runs + {sizes.lira_k * sizes.lira_m} LiRA runs = {total / 60:.1f} min")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
