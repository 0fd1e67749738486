"""Does the evaluation batch size change a logit bit, and what does it cost? (fmnist cnn-bn, CPU)

    python benchmarks/eval_batch.py --store /tmp/st-cpu --data-root .fmnist [--time]

Every selection point of a merge reads D_f and D_val (12,000 images on fmnist), so the
evaluator's forward pass is ~40% of a CPU trial. A faster batch size may only be adopted if
the logits are bit-identical for the thread counts records use; otherwise recorded trials
would stop reproducing. Timing is meaningful only on an idle machine (--time).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> int:
    import torch
    from safetensors.torch import load_file

    from unlearnbench import metrics
    from unlearnbench.config import resolve
    from unlearnbench.plugins import get_host

    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--batches", default="2048,1024,512,256,128")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--time", action="store_true", help="also time each batch size (idle machine only)")
    a = ap.parse_args()

    res = resolve(get_host(), method="retrain", scenario="fmnist-10pct")
    task = res.scenario.build_task(res.cfg.scenario, 0, a.data_root)
    x = torch.cat([task.tensors("forget")[0], task.tensors("val")[0]])
    weights = sorted(Path(a.store, "original").rglob("*.safetensors"))
    if not weights:
        raise SystemExit(f"no stored original under {a.store}/original")
    model = task.new_model()
    model.load_state_dict(load_file(str(weights[0])))
    print(f"{len(x)} images (D_f + D_val of fmnist-10pct trial 0), weights {weights[0].name[:12]}")

    base = None
    for th in (int(t) for t in a.threads.split(",")):
        torch.set_num_threads(th)
        for b in (int(s) for s in a.batches.split(",")):
            metrics.EVAL_BATCH["cpu"] = b
            lg = metrics.logits(model, x)
            base = lg if base is None else base
            same = torch.equal(lg, base)
            line = f"threads={th} batch={b:5d} bit-identical to first: {same}"
            if not same:
                line += f" (max |Δ| {(lg - base).abs().max().item():.3g}, argmax flips {(lg.argmax(1) != base.argmax(1)).sum().item()})"
            if a.time:
                best = min(_timed(metrics.logits, model, x) for _ in range(3))
                line += f"  {best:.3f} s ({len(x) / best:,.0f} img/s)"
            print(line, flush=True)
    return 0


def _timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


if __name__ == "__main__":
    raise SystemExit(main())
