"""Influence Unlearning (IU): one weight edit θ ← θ_0 + α·k (PROTOCOL §7.2; [SAL] ``wfisher``).

All at θ_0 in eval mode, on the eval transform, over every parameter flattened:

    v = (1/N)·[Σ_{D_f} ∇ℓ − (n_f/n_r)·Σ_{D_r} ∇ℓ],  N = n_f + n_r

``variant=faithful`` (default) copies the reference recursion: k ← v, o ← g_0 (the first
D_r sample in manifest order), then for D_r samples 1…1001 (N_F = 1000), t = oᵀg,
k ← k − (kᵀg)/(N_F + t)·o, o ← o − t/(N_F + t)·o. o stays parallel to g_0, so k = v − c·g_0:
not an inverse-Fisher product (the documented degeneracy; the published IU numbers).

``variant=iu_fisher`` (EXTENSION): k = (F̂ + δI)⁻¹v, F̂ = (1/n)Σ g_i g_iᵀ the empirical Fisher
of a random 1,000-sample subset of D_r, solved by conjugate gradient with matrix-free
products (g_iᵀu by double backward, then ∇Σ_i (g_iᵀu)·ℓ_i).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from unlearnbench import Choice, hookimpl, opt

from ._common import Baseline, LrSearch, SearchGrid, scaled_grid, search_v2

if TYPE_CHECKING:
    import torch

N_F = 1000  # hard-coded in the reference recursion and the iu_fisher subset size
# The v2 α grid at the default α = 0.2 (PROTOCOL §7.3 step 1): the code default and the paper's range
# [1, 20]; for another α the same multiples of it.
IU_ALPHAS = (0.02, 0.06, 0.2, 0.6, 1.0, 2.0, 3.0, 6.0, 10.0, 20.0)
IU_DEFAULT_ALPHA = 0.2


class IUVariant(Choice):
    faithful = "faithful"
    iu_fisher = "iu_fisher"


@dataclass
class InfluenceConfig:
    alpha: float = opt(0.2, "step α of θ ← θ_0 + α·k", "[SAL] code default (paper range [1, 20]); PROTOCOL §7")
    variant: IUVariant = opt(IUVariant.faithful, "faithful: the reference's degenerate recursion, k = v − c·g_0 "
                             "(published numbers) | iu_fisher: EXTENSION, k = (F̂ + δI)^-1 v by conjugate gradient",
                             "PROTOCOL §7.2, §10.2 #34")
    delta: float = opt(0.1, "iu_fisher damping δ (searched with α where the search runs)",
                       "[OURS] PROTOCOL §7.2: no source fixes it")
    cg_iters: int = opt(100, "iu_fisher: most conjugate-gradient iterations", "[OURS]")
    cg_tol: float = opt(1e-5, "iu_fisher: stop at this relative residual", "[OURS]")
    lr_search: LrSearch = opt(LrSearch.auto, "select α (and δ for iu_fisher, from {δ/10, δ, 10δ}) by the run's "
                              "rule over the method.search_grid grid: auto = on the CPU classifier scenarios only, "
                              "on, off", "[OURS] PROTOCOL §7.2, §7.3")
    search_grid: SearchGrid = opt(SearchGrid.v2, "v2: α in {0.02, 0.06, 0.2, 0.6, 1, 2, 3, 6, 10, 20} (× α/0.2), θ_0 "
                                  "as the null point, edge extension | v1: {α/10, α/3, α, 3α, 10α} (protocol 1)",
                                  "[OURS] PROTOCOL §7.3, §10.2 #36")


def _grad(model, x, y, chunk: int = 256) -> "torch.Tensor":
    """Σ_i ∇ℓ(x_i, y_i), flattened over every parameter (model in eval mode)."""
    import torch
    import torch.nn.functional as F

    params = list(model.parameters())
    dev = params[0].device
    out = torch.zeros(sum(p.numel() for p in params), device=dev, dtype=params[0].dtype)
    for i in range(0, len(x), chunk):
        loss = F.cross_entropy(model(x[i:i + chunk].to(dev)), y[i:i + chunk].to(dev), reduction="sum")
        out += torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])
    return out


def influence_v(model, xf, yf, xr, yr) -> "torch.Tensor":
    nf, nr = len(xf), len(xr)
    return (_grad(model, xf, yf) - (nf / nr) * _grad(model, xr, yr)) / (nf + nr)


def faithful_k(model, xr, yr, v) -> "torch.Tensor":
    """The reference recursion, sample by sample in manifest order (samples 0…1001)."""
    k, o = v.clone(), None
    for i in range(min(len(xr), N_F + 2)):
        g = _grad(model, xr[i:i + 1], yr[i:i + 1])
        if o is None:
            o = g  # g_0
            continue
        t = o @ g
        k -= (k @ g) / (N_F + t) * o
        o = o - t / (N_F + t) * o
    return k


def fisher_k(model, xs, ys, v, delta: float, iters: int, tol: float, chunk: int = 250):
    """Solve (F̂ + δI)k = v by conjugate gradient; returns (k, iterations, relative residual)."""
    import torch
    import torch.nn.functional as F

    params = list(model.parameters())
    dev = params[0].device
    n = len(xs)

    def fvp(u):
        out = delta * u
        for i in range(0, n, chunk):
            xb, yb = xs[i:i + chunk].to(dev), ys[i:i + chunk].to(dev)
            w = torch.ones(len(xb), device=dev, requires_grad=True)
            losses = F.cross_entropy(model(xb), yb, reduction="none")
            g = torch.cat([t.flatten() for t in torch.autograd.grad((w * losses).sum(), params, create_graph=True)])
            dots = torch.autograd.grad(g @ u, w, retain_graph=True)[0].detach()  # g_iᵀu
            gu = torch.autograd.grad((dots * losses).sum(), params)  # Σ_i (g_iᵀu) g_i
            out = out + torch.cat([t.flatten() for t in gu]) / n
        return out

    k = torch.zeros_like(v)
    r = v.clone()
    p = r.clone()
    rr, vv = r @ r, v @ v
    it = 0
    while it < iters and (rr / vv).sqrt() > tol:
        ap = fvp(p)
        a = rr / (p @ ap)
        k += a * p
        r -= a * ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
        it += 1
    return k, it, float((rr / vv).sqrt())


class Influence(Baseline):
    name = "influence"
    description = "IU: one-shot θ_0 + α·k from D_f and D_r gradients (faithful reference recursion)"
    reference_url = "https://github.com/OPTML-Group/Unlearn-Saliency"
    uses = frozenset({"forget", "retain"})
    Config = InfluenceConfig
    step_key = "alpha"
    positive = ("delta", "cg_iters", "cg_tol")

    def variant(self, cfg) -> str:
        return "faithful" if cfg.variant == "faithful" else f"iu_fisher, delta={cfg.delta}"

    def step_grid(self, ctx):
        if not search_v2(ctx):
            return scaled_grid(ctx.cfg.alpha)
        scale = float(ctx.cfg.alpha) / IU_DEFAULT_ALPHA
        return sorted({float(f"{a * scale:.6g}") for a in IU_ALPHAS})

    def candidates(self, ctx):
        alphas = self.step_grid(ctx)
        if ctx.cfg.variant == "faithful":
            return [{"alpha": a} for a in alphas]
        return [{"alpha": a, "delta": d} for d in scaled_grid(ctx.cfg.delta)[::2] for a in alphas]  # δ/10, δ, 10δ

    def prepare(self, ctx):
        model = ctx.new_model(ctx.original()).eval()
        xf, yf = ctx.data("forget")
        xr, yr = ctx.data("retain")
        with ctx.timer("influence_v_s"):
            v = influence_v(model, xf, yf, xr, yr)
        prep = {"model": model, "v": v, "k": {}}
        if ctx.cfg.variant == "faithful":
            with ctx.timer("influence_k_s"):
                prep["k"][None] = faithful_k(model, xr, yr, v)
        else:
            import torch

            pick = torch.randperm(len(xr), generator=ctx.rng("fisher"))[:N_F]
            prep["fisher"] = xr[pick.sort().values], yr[pick.sort().values]
        return prep

    def build(self, ctx, prep, alpha, delta=None):
        import torch

        cfg = ctx.cfg
        key = None
        if cfg.variant == "iu_fisher":
            key = float(cfg.delta if delta is None else delta)
            if key not in prep["k"]:
                with ctx.timer("influence_k_s"):
                    k, it, res = fisher_k(prep["model"], *prep["fisher"], prep["v"], key, int(cfg.cg_iters),
                                          float(cfg.cg_tol))
                prep["k"][key] = k
                ctx.info.setdefault("cg", {})[str(key)] = {"iterations": it, "residual": res}
        k = prep["k"][key]
        if not torch.isfinite(k).all():
            raise ValueError(f"IU ({ctx.info['variant']}) produced a non-finite direction k")
        state = ctx.original()  # buffers stay θ_0's
        at = 0
        for name, p in prep["model"].named_parameters():
            state[name] = state[name] + alpha * k[at:at + p.numel()].view_as(p).cpu()
            at += p.numel()
        return state


@hookimpl
def register_methods(register):
    register(Influence())
