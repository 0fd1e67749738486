"""Fine-tune (FT) and ℓ1-sparse: continue training θ_0 on D_r alone (PROTOCOL §7, [SAL]).

ℓ1-sparse [SAL ``FT_l1``] adds α_t·‖θ‖₁, the unnormalised sum over every parameter, with
α_t = α(1 − t/T) for epoch t = 0…T−1: it decays from α to α/T and never reaches 0.
"""
from __future__ import annotations

from dataclasses import dataclass

from unlearnbench import hookimpl, opt

from ._common import LrSearch, SearchGrid, Trained, lr_search_opt, search_grid_opt


@dataclass
class FinetuneConfig:
    lr: float = opt(0.01, "learning rate (constant)", "[SAL] SPA README; PROTOCOL §7")
    epochs: int = opt(10, "epochs over D_r", "[SAL] SPA README; PROTOCOL §7")
    lr_search: LrSearch = lr_search_opt()
    search_grid: SearchGrid = search_grid_opt()


@dataclass
class L1SparseConfig:
    lr: float = opt(0.01, "learning rate (constant)", "[SAL] FT_l1; PROTOCOL §7")
    epochs: int = opt(10, "epochs over D_r", "[SAL] FT_l1; PROTOCOL §7")
    alpha: float = opt(1e-4, "ℓ1 coefficient α at epoch 0; α_t = α(1 − t/T)", "lab scripts; PROTOCOL §10.2 #35")
    lr_search: LrSearch = lr_search_opt()
    search_grid: SearchGrid = search_grid_opt()


class Finetune(Trained):
    name = "finetune"
    description = "FT: cross-entropy on D_r from θ_0, 10 epochs, lr 0.01"
    reference_url = "https://github.com/OPTML-Group/Unlearn-Saliency"
    uses = frozenset({"retain"})
    Config = FinetuneConfig

    def build(self, ctx, prep, lr):
        model = ctx.new_model(ctx.original())
        return self.train(ctx, model, *ctx.data("retain"), lr)


def l1_alpha(alpha: float, epoch: int, epochs: int) -> float:
    """α_t = α(1 − t/T) for epoch t = 0…T−1 [SAL FT_l1]."""
    return alpha * (1 - epoch / epochs)


class L1Sparse(Trained):
    name = "l1-sparse"
    description = "ℓ1-sparse: CE on D_r + α_t·‖θ‖₁ over all parameters, α_t decaying from α to α/T"
    reference_url = "https://arxiv.org/abs/2304.04934"
    uses = frozenset({"retain"})
    Config = L1SparseConfig
    variant_keys = ("alpha",)
    positive = ("epochs", "alpha")

    def build(self, ctx, prep, lr):
        import torch.nn.functional as F

        alpha, epochs = float(ctx.cfg.alpha), int(ctx.cfg.epochs)
        used: list[float] = []  # the coefficient of each epoch, as applied (recorded)

        def on_epoch(t):
            used.append(l1_alpha(alpha, t, epochs))

        def loss_fn(m, xb, yb):
            l1 = sum(p.abs().sum() for p in m.parameters())
            return F.cross_entropy(m(xb), yb) + used[-1] * l1

        model = ctx.new_model(ctx.original())
        # the full-T schedule even when the search returns an earlier epoch's iterate (§7.3 step 2)
        out = self.train(ctx, model, *ctx.data("retain"), lr, loss_fn=loss_fn, on_epoch=on_epoch)
        ctx.info["alpha_schedule"] = used
        return out


@hookimpl
def register_methods(register):
    register(Finetune())
    register(L1Sparse())
