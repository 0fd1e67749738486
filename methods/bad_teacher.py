"""Bad Teacher: distil from a competent and an incompetent teacher (Chundawat et al., AAAI 2023;
PROTOCOL §7.4.3, [BT] notebook).

Models: the competent teacher T_c = θ_0 and the incompetent teacher T_d, a fresh random init of
the **same architecture** drawn from the ``unlearn`` stream, both frozen in eval mode; the
student S starts from θ_0 in train mode.

Data: U = D_f ∪ R, R a random ⌊ρ_r·|D_r|⌋ of D_r (``unlearn`` stream), ρ_r = 0.3. Each sample
carries l = 1 if it comes from D_f, else 0; U is shuffled into mixed batches.

Loss, with p_τ = softmax(z/τ) and τ = 1:

    t(x) = l·p_τ(z_{T_d}(x)) + (1 − l)·p_τ(z_{T_c}(x)),   s(x) = p_τ(z_S(x))
    L = (1/(|B|·C)) Σ_{x∈B} Σ_c t_c(x)·[log t_c(x) − log s_c(x)]

KL(t ‖ s) per sample divided by C: PyTorch's ``kl_div`` with its default reduction 'mean'
averages over all |B|·C elements. No τ² factor. Adam 1e-4, 1 epoch, batch 256 (the CPU
scenarios: the scenario's batch).

``variant=du`` is [DU]'s ``BadTeacher``, i.e. the [BT] function's signature defaults: 10 epochs,
Adam 0.01, all of D_r (ρ_r = 1). [SCRUB]'s port (``variant=scrub_port`` in §7.4.3) is not
implemented: its loss weights are [unverified], its lr schedule reads SCRUB's fields and its
batch is not stated, so §7.4.3 does not define it fully.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from unlearnbench import Choice, ConfigError, Recipe, hookimpl, opt

from ._common import (LrSearch, SearchGrid, Trained, lr_search_opt, search_grid_opt, state_of, table_batch,
                      unlearn_gen)

if TYPE_CHECKING:
    import torch


class BTVariant(Choice):
    notebook = "notebook"
    du = "du"


# the values an option left at 0 stands for, per variant (PROTOCOL §7.4.3 table, §10.2 #52)
VARIANT_VALUES = {
    BTVariant.notebook: {"lr": 1e-4, "epochs": 1, "retain_fraction": 0.3},  # [BT] notebook
    BTVariant.du: {"lr": 0.01, "epochs": 10, "retain_fraction": 1.0},  # [DU] BadTeacher = [BT] signature defaults
}
BATCH = 256  # [BT] notebook; the CPU scenarios use their own (PROTOCOL §7.4)


@dataclass
class BadTeacherConfig:
    variant: BTVariant = opt(BTVariant.notebook, "notebook: the [BT] notebook's recipe, 1 epoch, Adam 1e-4, a random "
                             "30% of D_r | du: [DU]'s BadTeacher (the [BT] signature defaults), 10 epochs, Adam 0.01, "
                             "all of D_r", "[BT] notebook; [DU]; PROTOCOL §7.4.3, §10.2 #52")
    lr: float = opt(0.0, "Adam learning rate; 0 = the variant's (notebook 1e-4, du 0.01)",
                    "[BT] notebook; PROTOCOL §7.4.3")
    epochs: int = opt(0, "epochs over U = D_f ∪ R; 0 = the variant's (notebook 1, du 10)",
                      "[BT] notebook; PROTOCOL §7.4.3")
    retain_fraction: float = opt(0.0, "ρ_r: R is a random ⌊ρ_r·|D_r|⌋ of D_r (unlearn stream); 0 = the"
                                 " variant's (notebook 0.3, du 1)", "[BT] notebook; PROTOCOL §7.4.3")
    tau: float = opt(1.0, "temperature τ of the teachers' and the student's softmax (no τ² factor)",
                     "[BT] notebook; PROTOCOL §7.4.3")
    augment: bool = opt(True, "the scenario's training augmentation on U | false: eval-transform images, as "
                        "[BT] and [DU] train", "PROTOCOL §7.4")
    lr_search: LrSearch = lr_search_opt()
    search_grid: SearchGrid = search_grid_opt()


def retain_subset(gen: "torch.Generator", n_retain: int, fraction: float) -> "torch.Tensor":
    """R: the rows of a random ⌊ρ_r·|D_r|⌋ of D_r, drawn from ``gen`` (the ``unlearn`` stream),
    in ascending order (U is shuffled anyway)."""
    import math

    import torch

    k = int(math.floor(fraction * n_retain))
    return torch.randperm(n_retain, generator=gen)[:k].sort().values


def incompetent_teacher(ctx) -> "torch.nn.Module":
    """T_d: the scenario's architecture, freshly initialised from the ``unlearn`` stream (the global
    RNG is seeded inside a fork, so nothing outside sees it), frozen in eval mode (§7.4.3)."""
    import torch

    gen = unlearn_gen(ctx, "incompetent_teacher")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(gen.initial_seed())
        model = ctx.new_model()
    return frozen(model)


def frozen(model) -> "torch.nn.Module":
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def teacher_targets(competent, incompetent, xb: "torch.Tensor", from_forget: "torch.Tensor",
                    tau: float) -> "torch.Tensor":
    """t(x) = l·p_τ(z_{T_d}(x)) + (1 − l)·p_τ(z_{T_c}(x)): the incompetent teacher's softmax on
    D_f samples (l = 1), the competent teacher's on D_r samples (l = 0)."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        good = F.softmax(competent(xb) / tau, dim=1)
        bad = F.softmax(incompetent(xb) / tau, dim=1)
    return torch.where(from_forget.bool().unsqueeze(1), bad, good)


def kl_mean(student_logits: "torch.Tensor", target: "torch.Tensor", tau: float) -> "torch.Tensor":
    """(1/(|B|·C)) Σ t·(log t − log s): ``F.kl_div(log s, t)`` with its default 'mean' reduction
    (0·log 0 = 0, as kl_div's xlogy), written out because kl_div warns that 'mean' is not the KL."""
    import torch
    import torch.nn.functional as F

    log_s = F.log_softmax(student_logits / tau, dim=1)
    return (torch.special.xlogy(target, target) - target * log_s).sum() / target.numel()


class BadTeacher(Trained):
    name = "bad-teacher"
    title = "Bad Teacher"
    description = ("Bad Teacher: distil θ_0 on a random 30% of D_r and a random-init teacher on D_f, "
                   "KL(t‖s)/C, Adam 1e-4, 1 epoch [BT]")
    reference_url = "https://arxiv.org/abs/2205.08096"
    uses = frozenset({"forget", "retain"})
    Config = BadTeacherConfig
    variant_keys = ("variant", "tau", "augment")

    def setting(self, cfg, key: str) -> Any:
        if key in VARIANT_VALUES[BTVariant.notebook] and not cfg[key]:  # 0: the variant's value
            return VARIANT_VALUES[BTVariant.of(cfg.variant, "method.variant")][key]
        return cfg[key]

    def check_config(self, cfg) -> None:
        super().check_config(cfg)  # lr and epochs > 0, once the variant has filled them in
        rho = self.setting(cfg, "retain_fraction")
        if not 0 < rho <= 1:
            raise ConfigError(f"method.retain_fraction of {self.name!r} must be in (0, 1] (0: the variant's), "
                              f"not {rho}")
        if not cfg.tau > 0:
            raise ConfigError(f"method.tau of {self.name!r} must be > 0, not {cfg.tau}")

    def recipe_for(self, ctx, lr: float, epochs: int) -> Recipe:
        """Adam (not AdamW), wd 0, constant lr (PROTOCOL §7.4.3)."""
        return Recipe(epochs=int(epochs), batch=table_batch(ctx, BATCH), lr=float(lr), momentum=0.0, wd=0.0,
                      schedule="constant", optimizer="adam",
                      augment=ctx.recipe.augment if ctx.cfg.augment else "none")

    def prepare(self, ctx) -> Any:
        """What every lr shares: R's rows and T_d's weights (both from the ``unlearn`` stream)."""
        n_retain = len(ctx.data("retain")[0])
        fraction = float(self.setting(ctx.cfg, "retain_fraction"))
        rows = retain_subset(unlearn_gen(ctx, "retain_subset"), n_retain, fraction)
        ctx.info["retain_subset"] = {"size": len(rows), "of": n_retain}
        return rows, state_of(incompetent_teacher(ctx))

    def build(self, ctx, prep, lr):
        import torch

        rows, bad_state = prep
        xf, _ = ctx.data("forget")
        xr, _ = ctx.data("retain")
        x = torch.cat([xf, xr[rows]])  # U = D_f ∪ R; the loop shuffles it into mixed batches
        from_forget = torch.cat([torch.ones(len(xf), dtype=torch.long), torch.zeros(len(rows), dtype=torch.long)])
        competent = frozen(ctx.new_model(ctx.original()))
        incompetent = frozen(ctx.new_model(bad_state))
        tau = float(ctx.cfg.tau)

        def loss_fn(m, xb, lb):  # the loop's labels are l: 1 on D_f rows, 0 on R rows
            return kl_mean(m(xb), teacher_targets(competent, incompetent, xb, lb, tau), tau)

        model = ctx.new_model(ctx.original())
        return self.train(ctx, model, x, from_forget, lr, loss_fn=loss_fn, stream="unlearn")


@hookimpl
def register_methods(register):
    register(BadTeacher())
