"""NegGrad+ (NG+): descend the CE of D_r while ascending the CE of D_f (PROTOCOL §7.4.1;
[SCRUB-P], [DU] ``NegGradPlus``).

Pairing: an epoch is one pass of a shuffled D_r loader; step t pairs its batch with the next
batch of a D_f loader that is reshuffled every epoch and, when it runs out, repeats that
epoch's first pass: ``zip(retain_loader, cycle(forget_loader))`` [SCRUB, DU].

Loss at step t:  β·CE(B_r) − (1 − β)·CE(B_f) + β·(λ/2)·‖θ − θ_0‖²  (batch means; the last term
is a proximal penalty towards θ_0 over the parameters, not weight decay).

Defaults, the "unlearnbench" column of §7.4.1: β = 0.95, 10 epochs, SGD lr 0.01 momentum 0.9
wd 0, λ = 0, batch 256 on both loaders (CPU scenarios: the scenario's batch, §7.3), BN in train
mode (§7; ``bn_mode=eval`` is [DU]'s and the [SCRUB] small-scale notebook's). Randomness (both
loaders' order, augmentations) comes from the ``unlearn`` stream (§7.4 "Randomness", run r = 0).
"""
from __future__ import annotations

from dataclasses import dataclass

from unlearnbench import Choice, ConfigError, Paired, hookimpl, opt

from ._common import (LrSearch, SearchGrid, Trained, lr_search_opt, method_recipe, search_grid_opt, table_batch,
                      unlearn_gen)

GPU_BATCH = 256  # [DU] B_r = B_f = 256; on the CPU scenarios both are the scenario's batch (§7.4.1)


class BNMode(Choice):
    train = "train"
    eval = "eval"


def augment_opt(source: str):
    return opt(True, "true: the scenario's training augmentation (§7) | false: eval-transform images, as the "
               "sources train", source)


def bn_mode_opt(source: str):
    return opt(BNMode.train, "train: BN statistics update while training (§7) | eval: the whole model in eval mode "
               "while training, BN frozen", source)


@dataclass
class NegGradPlusConfig:
    lr: float = opt(0.01, "learning rate (constant)", "[DU] NegGradPlus; PROTOCOL §7.4.1, §10.2 #48")
    epochs: int = opt(10, "epochs, each one pass over D_r", "[DU]; [SCRUB] small-scale; PROTOCOL §7.4.1")
    beta: float = opt(0.95, "β: weight of CE on D_r; the forget term weighs 1 − β (β = 1 is FT on D_r)",
                      "[SCRUB] small-scale, [DU] search start; PROTOCOL §7.4.1, §10.2 #48")
    prox: float = opt(0.0, "λ of the proximal penalty β·(λ/2)·‖θ − θ_0‖² (not weight decay); [SCRUB] small-scale "
                      "uses 0.1", "[DU] λ = 0; PROTOCOL §7.4.1")
    bn_mode: BNMode = bn_mode_opt("[OURS] §7; [DU], [SCRUB] small-scale: eval; PROTOCOL §7.4.1, §10.2 #49")
    augment: bool = augment_opt("[OURS] §7.4 common settings; [SCRUB], [DU]: false")
    lr_search: LrSearch = lr_search_opt()
    search_grid: SearchGrid = search_grid_opt()


def ngplus_loss(beta: float, prox: float = 0.0, theta0: list | None = None):
    """L_t(θ) of §7.4.1 as the loop's paired ``loss_fn``. At β = 1 the forget term is dropped, not
    multiplied by 0: its forward pass would still move BN running statistics, and NG+ at β = 1
    is FT on D_r."""
    import torch.nn.functional as F

    def loss_fn(m, xr, yr, xf, yf):
        loss = beta * F.cross_entropy(m(xr), yr)
        if beta != 1:
            loss = loss - (1 - beta) * F.cross_entropy(m(xf), yf)
        if prox:
            loss = loss + beta * (prox / 2) * sum(((p - p0) ** 2).sum() for p, p0 in zip(m.parameters(), theta0))
        return loss

    return loss_fn


class NegGradPlus(Trained):
    name = "neggrad-plus"
    description = "NG+: β·CE(D_r batch) − (1−β)·CE(cycled D_f batch), β = 0.95, 10 epochs, SGD 0.01 m 0.9 wd 0"
    reference_url = "https://github.com/xcadet/deepunlearn"
    uses = frozenset({"forget", "retain"})
    Config = NegGradPlusConfig
    variant_keys = ("beta", "prox", "bn_mode", "augment")

    def check_config(self, cfg) -> None:
        super().check_config(cfg)
        if not 0 <= cfg.beta <= 1:
            raise ConfigError(f"method.beta of {self.name!r} must be in [0, 1], not {cfg.beta}")
        if cfg.prox < 0:
            raise ConfigError(f"method.prox of {self.name!r} must be >= 0, not {cfg.prox}")

    def recipe_for(self, ctx, lr, epochs):
        return method_recipe(ctx, lr, epochs, table_batch(ctx, GPU_BATCH), bool(ctx.cfg.augment), wd=0.0)

    def build(self, ctx, prep, lr):
        model = ctx.new_model(ctx.original())
        xf, yf = ctx.data("forget")
        # B_f = B_r (§7.4.1); the D_f loader has its own sub-stream of `unlearn`, so the D_r order
        # is the one FT with this recipe and stream would draw (the β = 1 identity)
        gen = unlearn_gen(ctx, "forget")
        paired = Paired(xf, yf, table_batch(ctx, GPU_BATCH), gen)
        theta0 = [p.detach().clone() for p in model.parameters()] if ctx.cfg.prox else None
        loss_fn = ngplus_loss(float(ctx.cfg.beta), float(ctx.cfg.prox), theta0)

        def on_epoch(t):
            if ctx.cfg.bn_mode == BNMode.eval:  # the loop puts the model in train mode once, before epoch 0
                model.eval()

        return self.train(ctx, model, *ctx.data("retain"), lr, loss_fn=loss_fn, paired=paired, on_epoch=on_epoch,
                          stream="unlearn")


@hookimpl
def register_methods(register):
    register(NegGradPlus())
