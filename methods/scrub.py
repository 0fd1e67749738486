"""SCRUB and SCRUB+R: a student that moves away from the frozen teacher θ_0 on D_f and stays
close to it on D_r (PROTOCOL §7.4.2; [SCRUB-P], [SCRUB] ``MIA_experiments``).

Distance: d(x; S) = τ²·KL(p_τ(z_T(x)) ‖ p_τ(z_S(x))), teacher first, as ``DistillKL`` computes
it with ``F.kl_div(log_softmax(z_S/τ), softmax(z_T/τ))``; summed over the batch, ×τ², ÷|B|.

Loop, for e = 1…E at lr_e = η·ρ^{#{δ ∈ Δ : e > δ}}, one optimiser for all of it:
1. e ≤ msteps: a max-epoch, one pass over shuffled D_f, each step on −d (batch B_f);
2. always a min-epoch, one pass over D_r, each step on α·d + γ·CE (batch B_r);
3. checkpoint c_e (c_0 = θ_0). The student is in train mode in both phases.

``scrub`` returns c_E; ``scrub-r`` (SCRUB+R) rewinds to c_{i*}, i* = argmin_i |Err(D_f; c_i) − e*|
over i = 0…E, e* = Err(D_val^f; c_E), ties to the smaller i, and i* = 0 returns θ_0 [OURS].

Defaults, the "unlearnbench" column of §7.4.2: α = 0.5, γ = 1, τ = 4, E = 5, msteps = 3, SGD
5e-4 momentum 0.9 wd 5e-4, Δ = {3, 5, 9}, ρ = 0.1, B_r/B_f = 32/16 (CPU scenarios: the scenario's
batch and half of it). ``variant=du`` is [DU] ``scrubv2`` (§10.2 #50): τ = 2, B_f = 2·B_r, Δ =
{⌊0.5E⌋, ⌊0.8E⌋, ⌊0.9E⌋}, D_f in a fixed order. Under the §7.3 v2 search an "epoch" of iterate
selection is one max+min pair, and the decay points are the full schedule's. Randomness (data
order, augmentations) comes from the ``unlearn`` stream (§7.4 "Randomness", run r = 0).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Callable

from unlearnbench import Choice, ConfigError, Phase, hookimpl, opt

from ._common import LrSearch, SearchGrid, Trained, lr_search_opt, method_recipe, search_grid_opt, state_of
from .neggrad_plus import augment_opt

if TYPE_CHECKING:
    import torch


class Variant(Choice):
    scrub = "scrub"  # [SCRUB] MIA_experiments
    du = "du"  # [DU] scrubv2


def _scrub_decay(epochs: int) -> tuple[int, ...]:
    return (3, 5, 9)  # whatever E [SCRUB]


def _du_decay(epochs: int) -> tuple[int, ...]:
    # {⌊0.5E⌋, ⌊0.8E⌋, ⌊0.9E⌋}: {2, 4, 4} at E = 5, so 5e-4, 5e-5, then 5e-7 in epoch 5 [DU]
    return (int(0.5 * epochs), int(0.8 * epochs), int(0.9 * epochs))


@dataclass(frozen=True)
class VariantSpec:
    tau: float
    gpu_batches: tuple[int, int]  # (B_r, B_f) on the GPU scenarios
    forget_factor: float  # B_f = factor·B_r on the CPU scenarios
    shuffle_forget: bool
    decay: Callable[[int], tuple[int, ...]]  # the decay points Δ for E epochs (ρ = 0.1: the multistep factor)


VARIANTS = {
    # [OURS] CPU: B_f half the scenario's batch, the source's 32/16 ratio (§7.4.2 notes)
    Variant.scrub: VariantSpec(tau=4.0, gpu_batches=(32, 16), forget_factor=0.5, shuffle_forget=True,
                               decay=_scrub_decay),
    Variant.du: VariantSpec(tau=2.0, gpu_batches=(32, 64), forget_factor=2.0, shuffle_forget=False, decay=_du_decay),
}


@dataclass
class ScrubConfig:
    lr: float = opt(5e-4, "learning rate η; ×ρ = 0.1 after each decay point (Δ = {3, 5, 9})",
                    "[SCRUB] MIA_experiments; PROTOCOL §7.4.2, §10.2 #50")
    epochs: int = opt(5, "E: epochs, each a max-epoch on D_f (the first msteps) and then a min-epoch on D_r",
                      "[SCRUB] MIA_experiments; PROTOCOL §7.4.2")
    msteps: int = opt(3, "epochs that begin with a max-epoch on D_f", "[SCRUB] MIA_experiments; PROTOCOL §7.4.2")
    alpha: float = opt(0.5, "α: weight of the distance d on D_r in the min-step", "[SCRUB]; PROTOCOL §7.4.2")
    gamma: float = opt(1.0, "γ: weight of CE on D_r in the min-step", "[SCRUB]; PROTOCOL §7.4.2")
    variant: Variant = opt(Variant.scrub, "scrub: τ = 4, B_f = B_r/2, Δ = {3, 5, 9}, D_f shuffled [SCRUB] | du: "
                           "τ = 2, B_f = 2·B_r, Δ = {⌊0.5E⌋, ⌊0.8E⌋, ⌊0.9E⌋}, D_f in a fixed order [DU] scrubv2",
                           "PROTOCOL §7.4.2, §10.2 #50")
    augment: bool = augment_opt("[OURS] §7.4 common settings; [SCRUB], [DU]: false")
    lr_search: LrSearch = lr_search_opt()
    search_grid: SearchGrid = search_grid_opt()


def distance(z_student: "torch.Tensor", z_teacher: "torch.Tensor", tau: float) -> "torch.Tensor":
    """(1/|B|)·Σ_x τ²·KL(p_τ(z_T(x)) ‖ p_τ(z_S(x))): the teacher's distribution first. PyTorch's
    ``kl_div(log q, p)`` is KL(p ‖ q), so the student's log-probabilities go first [SCRUB DistillKL]."""
    import torch.nn.functional as F

    log_s = F.log_softmax(z_student / tau, dim=1)
    p_t = F.softmax(z_teacher / tau, dim=1)
    return F.kl_div(log_s, p_t, reduction="sum") * tau ** 2 / len(z_student)


def scrub_losses(teacher, tau: float, alpha: float, gamma: float):
    """(max-step loss on a D_f batch, min-step loss on a D_r batch), the loop's ``loss_fn`` form."""
    import torch
    import torch.nn.functional as F

    def teach(xb):
        with torch.no_grad():
            return teacher(xb)

    def max_loss(m, xb, yb):  # L_max = −d: move away from the teacher on D_f
        return -distance(m(xb), teach(xb), tau)

    def min_loss(m, xb, yb):  # L_min = α·d + γ·CE: stay with the teacher, and correct, on D_r
        z = m(xb)
        return alpha * distance(z, teach(xb), tau) + gamma * F.cross_entropy(z, yb)

    return max_loss, min_loss


def errors(model, x: "torch.Tensor", y: "torch.Tensor", device: str, chunk: int = 512) -> Fraction:
    """Err(D; θ) as an exact fraction of D (eval mode, the eval transform): ties compare exactly."""
    import torch

    model.eval()
    wrong = 0
    with torch.no_grad():
        for i in range(0, len(x), chunk):
            wrong += int((model(x[i:i + chunk].to(device)).argmax(1).cpu() != y[i:i + chunk]).sum())
    return Fraction(wrong, len(x))


def rewind_index(err_forget: list[Fraction], target: Fraction) -> int:
    """i* = argmin_i |Err(D_f; c_i) − e*| over i = 0…E, ties to the smaller i (§7.4.2)."""
    gaps = [abs(e - target) for e in err_forget]
    return gaps.index(min(gaps))


class Scrub(Trained):
    name = "scrub"
    description = ("SCRUB: max-epochs of −τ²KL(teacher‖student) on D_f, min-epochs of α·τ²KL + γ·CE on D_r, "
                   "E = 5, msteps = 3, SGD 5e-4")
    reference_url = "https://github.com/meghdadk/SCRUB"
    uses = frozenset({"forget", "retain"})
    Config = ScrubConfig
    variant_keys = ("variant", "alpha", "gamma", "msteps", "augment")
    rewind = False

    def check_config(self, cfg) -> None:
        super().check_config(cfg)
        if cfg.msteps < 0:  # msteps >= E: every epoch begins with a max-epoch (e ≤ msteps, §7.4.2)
            raise ConfigError(f"method.msteps of {self.name!r} must be >= 0, not {cfg.msteps}")
        for k in ("alpha", "gamma"):
            if cfg[k] < 0:
                raise ConfigError(f"method.{k} of {self.name!r} must be >= 0, not {cfg[k]}")

    def spec(self, ctx) -> VariantSpec:
        return VARIANTS[Variant.of(ctx.cfg.variant, "method.variant")]

    def batches(self, ctx) -> tuple[int, int]:
        """(B_r, B_f): the table's on the GPU scenarios; on the CPU ones the scenario's batch and B_f
        in the variant's ratio to it (§7.4.2)."""
        spec = self.spec(ctx)
        if not ctx.search_by_default:
            return spec.gpu_batches
        b = int(ctx.recipe.batch)
        return b, max(1, int(b * spec.forget_factor))

    def recipe_for(self, ctx, lr, epochs):
        # the decay points of the full schedule (cfg.epochs), also for an earlier epoch's iterate
        # chosen by the §7.3 search: lr_e depends on e alone, so that iterate is the one the full run passes
        spec = self.spec(ctx)
        return method_recipe(ctx, lr, epochs, self.batches(ctx)[0], bool(ctx.cfg.augment), schedule="multistep",
                             milestones=spec.decay(int(ctx.cfg.epochs)))

    def build(self, ctx, prep, lr):
        spec = self.spec(ctx)
        model = ctx.new_model(ctx.original())
        teacher = ctx.new_model(ctx.original()).eval()  # frozen, eval mode (§7.4 common settings)
        for p in teacher.parameters():
            p.requires_grad_(False)
        max_loss, min_loss = scrub_losses(teacher, spec.tau, float(ctx.cfg.alpha), float(ctx.cfg.gamma))
        xf, yf = ctx.data("forget")
        b_f = self.batches(ctx)[1]
        ctx.info["forget_batch"] = b_f  # B_f (the recipe's batch is B_r)
        phases = [Phase(xf, yf, b_f, max_loss, epochs=int(ctx.cfg.msteps), shuffle=spec.shuffle_forget)]
        checkpoints = [ctx.original()]  # c_0 = θ_0 (kept for the rewind only)

        def on_epoch(t):
            if t and self.rewind:  # before epoch t (0-based): c_t, after the min-epoch of epoch t
                checkpoints.append(state_of(model))

        # under the §7.3 v2 search: c_1…c_E, each after a whole max+min epoch pair
        out = self.train(ctx, model, *ctx.data("retain"), lr, loss_fn=min_loss, phases=phases, on_epoch=on_epoch,
                         stream="unlearn")
        if not self.rewind:
            return out
        checkpoints.append(state_of(model))  # c_E
        return self.rewound(ctx, lr, checkpoints)

    def rewound(self, ctx, lr: float, checkpoints: list[dict]) -> dict:
        """SCRUB+R (§7.4.2): c_{i*}, the checkpoint whose Err(D_f) is closest to the last iterate's
        forget-validation error; c_0 = θ_0 is a candidate."""
        import torch

        xf, yf = ctx.data("forget")
        xv, yv = ctx.data("val")
        keep = torch.isin(yv, torch.unique(yf))  # D_val^f: the val rows of D_f's labels
        xv, yv = xv[keep], yv[keep]
        model = ctx.new_model()
        err_f = []
        for c in checkpoints:
            model.load_state_dict(c)
            err_f.append(errors(model, xf, yf, ctx.device))
        target = errors(model, xv, yv, ctx.device)  # model holds c_E, the last iterate
        i = rewind_index(err_f, target)
        ctx.info.setdefault("rewind", {})[f"{lr:g}"] = {
            "epoch": i, "err_val_forget_last": float(100 * target), "err_forget": [float(100 * e) for e in err_f]}
        return checkpoints[i]


class ScrubR(Scrub):
    name = "scrub-r"
    description = ("SCRUB+R: SCRUB, then rewind to the epoch checkpoint (θ_0 included) whose Err(D_f) is closest "
                   "to the last iterate's Err on D_val's forget classes")
    uses = frozenset({"forget", "retain", "val"})
    rewind = True


@hookimpl
def register_methods(register):
    register(Scrub())
    register(ScrubR())
