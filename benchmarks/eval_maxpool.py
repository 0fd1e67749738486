"""Does the channels-last max-pool (unlearnbench.models._maxpool) change a logit bit, and what
does it save? (fmnist cnn-bn and digits cnn-s, CPU inference)

    python benchmarks/eval_maxpool.py --store /tmp/st-cpu --data-root .fmnist [--time]

A profile of Task Arithmetic's λ selection on fmnist-class (1,107 evaluations, the slowest
cell of a CPU trial) put 36% of its samples in PyTorch's NCHW max-pool kernel. The fast path
may only stay if the logits are bit-identical for every stored model and thread count, so
recorded trials keep reproducing. Timing is meaningful only on an idle machine (--time).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from eval_batch import _timed  # run as a script, benchmarks/ is on sys.path


def stock(model):
    """The same network with torch's own nn.MaxPool2d in place of the fast one."""
    import copy

    from torch import nn

    m = copy.deepcopy(model)
    for name, mod in list(m.named_children()):
        if isinstance(mod, nn.MaxPool2d):
            setattr(m, name, nn.MaxPool2d(mod.kernel_size, mod.stride, mod.padding, mod.dilation,
                                          ceil_mode=mod.ceil_mode))
    assert type(m[3]) is nn.MaxPool2d or type(m[4]) is nn.MaxPool2d
    return m


def main() -> int:
    import torch
    from safetensors.torch import load_file

    from unlearnbench import metrics
    from unlearnbench.config import resolve
    from unlearnbench.plugins import get_host

    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--max-models", type=int, default=6)
    ap.add_argument("--time", action="store_true", help="also time both pools (idle machine only)")
    a = ap.parse_args()

    host = get_host()
    cases = []
    for scen in ("fmnist-class", "digits-10pct"):
        res = resolve(host, method="retrain", scenario=scen)
        task = res.scenario.build_task(res.cfg.scenario, 0, a.data_root if scen.startswith("fmnist") else None)
        x = torch.cat([task.tensors("forget")[0], task.tensors("val")[0]])
        cases.append((scen, task, x))
    weights = sorted(Path(a.store).rglob("*.safetensors"))
    checked = 0
    for scen, task, x in cases:
        model = task.new_model()
        n = 0
        for w in weights:
            state = load_file(str(w))
            if set(state) != set(model.state_dict()) or n >= a.max_models:
                continue
            if any(state[k].shape != v.shape for k, v in model.state_dict().items()):
                continue
            model.load_state_dict(state)
            ref = stock(model)
            for th in (int(t) for t in a.threads.split(",")):
                torch.set_num_threads(th)
                fast_lg, stock_lg = metrics.logits(model, x), metrics.logits(ref, x)
                same = torch.equal(fast_lg, stock_lg)
                line = f"{scen:12s} {w.parent.name[:10]}/{w.name[:10]} threads={th} bit-identical: {same}"
                if a.time and n == 0:
                    tf = min(_timed(metrics.logits, model, x) for _ in range(3))
                    ts = min(_timed(metrics.logits, ref, x) for _ in range(3))
                    line += f"  {len(x)} images: stock {ts:.3f} s, fast {tf:.3f} s, {ts / tf:.2f}x"
                print(line, flush=True)
                if not same:
                    print(f"  max |Δ| {(fast_lg - stock_lg).abs().max().item():.3g}")
                    return 1
            n += 1
            checked += 1
    print(f"{checked} stored models checked")
    return 0 if checked else 2


if __name__ == "__main__":
    raise SystemExit(main())
