"""Gradient Ascent (GA): ascend the cross-entropy on D_f from θ_0 (PROTOCOL §7; [SAL] ``GA``).

5 epochs, lr 1e-4, weight decay still on, no clipping. The authors suggest 5e-4 to 1e-3
if the forget accuracy does not drop (SAL #8); on the CPU scenarios the rule picks the lr.
"""
from __future__ import annotations

from dataclasses import dataclass

from unlearnbench import hookimpl, opt

from ._common import LrSearch, SearchGrid, Trained, lr_search_opt, search_grid_opt


@dataclass
class GradientAscentConfig:
    lr: float = opt(1e-4, "learning rate (constant)", "[SAL] SPA README, SAL #8; PROTOCOL §7")
    epochs: int = opt(5, "epochs over D_f", "[SAL] SPA README; PROTOCOL §7")
    lr_search: LrSearch = lr_search_opt()
    search_grid: SearchGrid = search_grid_opt()


def negated_ce(m, xb, yb):
    import torch.nn.functional as F

    return -F.cross_entropy(m(xb), yb)


class GradientAscent(Trained):
    name = "gradient-ascent"
    description = "GA: gradient ascent on the CE of D_f, 5 epochs, lr 1e-4"
    reference_url = "https://github.com/OPTML-Group/Unlearn-Saliency"
    uses = frozenset({"forget"})
    Config = GradientAscentConfig
    alternatives = (5e-4, 1e-3)  # "5e-4 to 1e-3 if forget accuracy does not drop" (SAL #8; PROTOCOL §7.3)

    def build(self, ctx, prep, lr):
        model = ctx.new_model(ctx.original())
        return self.train(ctx, model, *ctx.data("forget"), lr, loss_fn=negated_ce)


@hookimpl
def register_methods(register):
    register(GradientAscent())
