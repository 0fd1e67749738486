"""Several λ in one forward (torch.func.vmap over stacked weights) vs one model at a time (issue 15, acc. 4).

On fmnist's cnn-bn (eval mode, the suite's CPU batch of 512, 11,400 inputs: the size of D_f + D_val),
for K λs: are the logits bit-identical to ``metrics.logits`` on each θ_0 − λτ, and is it faster?
θ_0 and τ are random draws of the architecture (the cost and the kernels do not depend on the values).

    OMP_NUM_THREADS=1 python benchmarks/lambda_vmap.py --out benchmarks/results/lambda_vmap.txt
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=11_400)
    ap.add_argument("--ks", default="2,4,8")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import torch
    from torch.func import functional_call, stack_module_state, vmap

    from unlearnbench.metrics import EVAL_BATCH, logits
    from unlearnbench.models import build_model

    torch.set_num_threads(1)
    lines: list[str] = []

    def out(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    out(f"# benchmarks/lambda_vmap.py, {datetime.datetime.now().isoformat(timespec='seconds')}, torch "
        f"{torch.__version__}, 1 thread (the machine's 2 cores were shared with other jobs: times are indicative)")
    out("# command: OMP_NUM_THREADS=1 python " + " ".join([sys.argv[0]] + sys.argv[1:]))
    g = torch.Generator().manual_seed(15)
    base = build_model("cnn-bn", 10)
    for m in base.modules():  # BN statistics that are not the identity, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    theta0 = {k: v.clone() for k, v in base.state_dict().items()}
    params = {k for k, _ in base.named_parameters()}
    tau = {k: torch.randn(v.shape, generator=g) * v.std().clamp(min=1e-3) * 0.05 for k, v in theta0.items()
           if k in params}
    x = torch.rand(args.n, 1, 28, 28, generator=g)
    b = EVAL_BATCH["cpu"]

    def model_at(lam: float):
        m = build_model("cnn-bn", 10)
        m.load_state_dict({k: (torch.add(v, tau[k], alpha=-lam) if k in tau else v) for k, v in theta0.items()})
        return m.eval()

    def one_at_a_time(lams):
        return [logits(model_at(lam), x) for lam in lams]

    def stacked(lams):
        models = [model_at(lam) for lam in lams]
        p, bufs = stack_module_state(models)
        meta = models[0]
        for i, m in enumerate(meta):  # the suite's channels-last max pool cannot run under vmap; a max
            if isinstance(m, torch.nn.MaxPool2d):  # is exact, so the plain one gives the same values
                meta[i] = torch.nn.MaxPool2d(m.kernel_size, m.stride, m.padding)

        def f(pp, bb, xb):
            return functional_call(meta, (pp, bb), (xb,))

        outs = []
        with torch.inference_mode():
            for i in range(0, len(x), b):
                outs.append(vmap(f, in_dims=(0, 0, None))(p, bufs, x[i:i + b]))
        return list(torch.cat(outs, dim=1).unbind(0))

    out(f"inputs {args.n}, batch {b}; time = best of {args.repeats}, the two ways interleaved")
    out(f"{'K':>3s} {'one at a time s':>16s} {'stacked s':>10s} {'speed-up':>9s}  bit-identical logits  same argmax")
    for k in map(int, args.ks.split(",")):
        lams = [round(0.05 * (3 + i), 2) for i in range(k)]
        t_one, t_st = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            a = one_at_a_time(lams)
            t_one.append(time.perf_counter() - t)
            t = time.perf_counter()
            s = stacked(lams)
            t_st.append(time.perf_counter() - t)
        same = [torch.equal(u, v) for u, v in zip(a, s)]
        arg = [torch.equal(u.argmax(1), v.argmax(1)) for u, v in zip(a, s)]
        maxdiff = max(float((u - v).abs().max()) for u, v in zip(a, s))
        out(f"{k:3d} {min(t_one):16.2f} {min(t_st):10.2f} {min(t_one) / min(t_st):8.2f}x  "
            f"{sum(same)}/{k} (max |diff| {maxdiff:.2e})  {sum(arg)}/{k}")
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
