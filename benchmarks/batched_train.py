"""One at a time vs one stacked model (issue 20, acceptance 7): wall time of training many small models.

Two workloads of digits-10pct trial 0, each trained both ways in one run, the same functions the suite
runs (``stages.train_member`` / ``stages.train_members``, ``training.train`` / ``stacked.train_many``):

- ``pool``: the 27 members of digits' default pool (PROTOCOL §6.3: 20/30/40 epochs x wd x ls, batch 32,
  translate1) fine-tuned on D_f, stacked as ``-o executor.stack=N`` stacks them (most epochs together,
  up to N per stack); θ_0 is the trial's θ_init (the cost does not depend on the values, and no
  original has to be trained first);
- ``originals``: K digits originals (the task's recipe on D_train) from K inits and K order seeds, as
  the issue-18 ensembles train them.

Each line gives both wall times, their ratio (one at a time / stacked: > 1 means stacking is faster)
and max |Δθ| / max |θ| between the two ways (for the pool also of τ = θ − θ_0: float reordering only;
tests/test_stacked.py bounds both).
Time it on an otherwise idle machine; at a tiny size (``--tiny``) it only checks that it runs.

    OMP_NUM_THREADS=1 python benchmarks/batched_train.py [--device cuda] [--stack 27] [--out FILE]
    OMP_NUM_THREADS=1 python benchmarks/batched_train.py --tiny     # seconds: 3 members, 2 originals, 1 epoch
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path


def rel_diff(a: dict, b: dict) -> float:
    keys = [k for k in a if a[k].is_floating_point()]
    return max(float((a[k] - b[k]).abs().max()) for k in keys) / max(float(a[k].abs().max()) for k in keys)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--members", type=int, default=27, help="pool members (the first N in canonical order)")
    ap.add_argument("--stack", type=int, default=0, help="members per stack (0 = all at once)")
    ap.add_argument("--originals", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=0, help="cap every recipe's epochs (0 = as recorded)")
    ap.add_argument("--tiny", action="store_true", help="--members 3 --originals 2 --epochs 1: that it runs")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.tiny:
        args.members, args.originals, args.epochs = 3, 2, 1

    import torch

    from unlearnbench.config import resolve
    from unlearnbench.plugins import get_host
    from unlearnbench.runner import build_task
    from unlearnbench.seeding import deterministic_kernels, stream_seed
    from unlearnbench.stacked import stack_key, train_many
    from unlearnbench.stages import Stages, train_member, train_members
    from unlearnbench.store import Store
    from unlearnbench.training import train

    torch.set_num_threads(args.threads)
    deterministic_kernels(args.device)
    lines: list[str] = []

    def out(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def cap(r):
        return r.with_(epochs=min(r.epochs, args.epochs)) if args.epochs else r

    out(f"# benchmarks/batched_train.py, {datetime.datetime.now().isoformat(timespec='seconds')}, torch "
        f"{torch.__version__}, device {args.device}, {args.threads} thread(s)")
    out("# command: OMP_NUM_THREADS=1 python " + " ".join([sys.argv[0]] + sys.argv[1:]))
    res = resolve(get_host(), scenario="digits-10pct", overrides=["seeds=[0]"], device_here=False)
    task = build_task(res, 0, None)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        stages = Stages(task, Store(Path(tmp) / "store"), args.device)
        theta0 = stages.init_weights()
    keys = stages.param_keys
    out(f"{'workload':<28s} {'one at a time s':>16s} {'stacked s':>10s} {'ratio':>7s}  max|Δθ|/max|θ|")

    # -- the pool: as Stages trains it, one member per job or stacks of up to --stack -------------------
    recipes = [cap(r) for r in stages.pool_grid("default").members(0)[:args.members]]
    seeds = [stream_seed(0, "pool", r.spec()) for r in recipes]
    # warm-up, untimed: the first training of a process pays one-time costs (kernel set-up, seconds on CPU)
    # that neither way should be charged with
    warm = [recipes[0].with_(epochs=1)] * 2
    train_member(task, theta0, warm[0], 0, keys, args.device, "warm-up")
    train_members(task, theta0, warm, [0, 1], keys, args.device, "warm-up")
    t = time.perf_counter()
    alone = [train_member(task, theta0, r, s, keys, args.device, "member") for r, s in zip(recipes, seeds)]
    sync()
    t_alone = time.perf_counter() - t
    n = args.stack or len(recipes)
    order = sorted(range(len(recipes)), key=lambda i: (stack_key(recipes[i]), -recipes[i].epochs, i))
    chunks = [order[j:j + n] for j in range(0, len(order), n)]
    t = time.perf_counter()
    stacked: dict[int, dict] = {}
    for c in chunks:
        for i, th in zip(c, train_members(task, theta0, [recipes[i] for i in c], [seeds[i] for i in c], keys,
                                          args.device, "stack")):
            stacked[i] = th
    sync()
    t_stack = time.perf_counter() - t
    diff = max(rel_diff(alone[i], stacked[i]) for i in range(len(recipes)))
    tau = max(rel_diff({k: alone[i][k] - theta0[k] for k in keys}, {k: stacked[i][k] - theta0[k] for k in keys})
              for i in range(len(recipes)))
    what = f"pool {len(recipes)} (stacks of {n})"
    out(f"{what:<28s} {t_alone:16.2f} {t_stack:10.2f} {t_alone / t_stack:6.2f}x  {diff:.2e} (of τ: {tau:.2e})")
    if not args.originals:
        return finish(args, lines)

    # -- K originals: the task's recipe on D_train, K inits and K order streams --------------------------
    recipe = cap(task.recipe)
    x, y = task.tensors("train")
    inits = []
    for k in range(args.originals):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1000 + k)
            inits.append(task.new_model().state_dict())

    def fresh():
        ms = []
        for s in inits:
            m = task.new_model()
            m.load_state_dict(s)
            ms.append(m)
        return ms

    aug = task.augment_for(recipe)
    a_models, b_models = fresh(), fresh()
    t = time.perf_counter()
    for k, m in enumerate(a_models):
        train(m, x, y, recipe, torch.Generator().manual_seed(k), device=args.device, augment=aug, show_progress=False)
    sync()
    t_alone = time.perf_counter() - t
    t = time.perf_counter()
    gens = [torch.Generator().manual_seed(k) for k in range(len(b_models))]
    train_many(b_models, x, y, [recipe] * len(b_models), gens, augments=[aug] * len(b_models), device=args.device,
               show_progress=False)
    sync()
    t_stack = time.perf_counter() - t
    diff = max(rel_diff(a.state_dict(), b.state_dict()) for a, b in zip(a_models, b_models))
    what = f"originals {len(inits)} ({recipe.epochs} epochs)"
    out(f"{what:<28s} {t_alone:16.2f} {t_stack:10.2f} {t_alone / t_stack:6.2f}x  {diff:.2e}")
    finish(args, lines)


def finish(args, lines: list[str]) -> None:
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
