"""Boundary Unlearning: Boundary Shrink and Boundary Expanding (Chen et al., CVPR 2023;
PROTOCOL §7 BS notes; [BU], [SAL] ports).

Boundary Shrink trains CE(f(x), y_nb) on the clean forget images, where y_nb is the label a
frozen copy θ_o of θ_0 gives one FGSM step away:
x_adv = Q(clip(x + ε·sign ∇_x CE(f(x; θ_o), y), 0, 1)), Q rounding to multiples of 1/255,
y_nb = argmax f(x_adv; θ_o). Where the attack fails, y_nb = y.

Boundary Expanding widens the last linear layer to C+1 outputs (shadow row: xavier-normal
weight, bias 0 [BU]), trains CE(f'(x_f), C), then prunes the shadow row: the C-way model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from unlearnbench import Choice, hookimpl, opt

from ._common import LrSearch, SearchGrid, Trained, last_linear, lr_search_opt, search_grid_opt

if TYPE_CHECKING:
    import torch


class BEVariant(Choice):
    pruned = "pruned"
    salun_port = "salun_port"


@dataclass
class BoundaryShrinkConfig:
    lr: float = opt(1e-5, "learning rate (constant)", "[BU]; PROTOCOL §7, §10.2 #30 (lab scripts: 1e-6 to 5e-6)")
    epochs: int = opt(10, "epochs over D_f", "[BU], [SAL]; PROTOCOL §7")
    eps: float = opt(0.1, "FGSM step in [0,1] pixel units; 0.25 reproduces [BU]'s effective step",
                     "[SAL] port; PROTOCOL §7 BS notes, §10.2 #30")
    lr_search: LrSearch = lr_search_opt()
    search_grid: SearchGrid = search_grid_opt()


@dataclass
class BoundaryExpandingConfig:
    lr: float = opt(1e-5, "learning rate (constant)", "[BU]; PROTOCOL §7")
    epochs: int = opt(10, "epochs over D_f", "[BU]; PROTOCOL §7")
    variant: BEVariant = opt(BEVariant.pruned, "pruned: xavier-normal shadow row, bias 0, pruned after training "
                             "[BU] | salun_port: default Linear init, no pruning [SAL] (evaluated C-way here; see run "
                             "info)", "PROTOCOL §7, §10.2 #31")
    lr_search: LrSearch = lr_search_opt()
    search_grid: SearchGrid = search_grid_opt()


def fgsm(frozen, x: "torch.Tensor", y: "torch.Tensor", eps: float) -> "torch.Tensor":
    """One quantised FGSM step against ``frozen`` (BS notes)."""
    import torch
    import torch.nn.functional as F

    with torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(frozen(xg), y), xg)
    return torch.round((x + eps * g.sign()).clamp(0, 1) * 255) / 255


def neighbour_labels(frozen, x, y, eps: float) -> "torch.Tensor":
    """y_nb = argmax f(x_adv; θ_o)."""
    import torch

    x_adv = fgsm(frozen, x, y, eps)
    with torch.no_grad():
        return frozen(x_adv).argmax(1)


def frozen_copy(ctx):
    model = ctx.new_model(ctx.original()).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class BoundaryShrink(Trained):
    name = "boundary-shrink"
    description = "BS: CE on D_f toward each sample's nearest-boundary label (one FGSM step on frozen θ_0)"
    reference_url = "https://arxiv.org/abs/2303.11570"
    uses = frozenset({"forget"})
    Config = BoundaryShrinkConfig
    variant_keys = ("eps",)
    positive = ("epochs", "eps")
    alternatives = (1e-6, 5e-6)  # the lab scripts' lrs (PROTOCOL §7, §7.3, §10.2 #30)

    def prepare(self, ctx):
        frozen = frozen_copy(ctx)
        x, y = ctx.data("forget")
        import torch

        dev, eps = next(frozen.parameters()).device, float(ctx.cfg.eps)
        y_nb = torch.cat([neighbour_labels(frozen, x[i:i + 512].to(dev), y[i:i + 512].to(dev), eps).cpu()
                          for i in range(0, len(x), 512)])
        ctx.info["attack_success"] = float((y_nb != y).float().mean())  # the share of D_f with y_nb != y
        return frozen

    def build(self, ctx, frozen, lr):
        import torch.nn.functional as F

        eps = float(ctx.cfg.eps)

        def loss_fn(m, xb, yb):  # y_nb per batch, so a train-time augmentation would be attacked too
            return F.cross_entropy(m(xb), neighbour_labels(frozen, xb, yb, eps))

        model = ctx.new_model(ctx.original())
        return self.train(ctx, model, *ctx.data("forget"), lr, loss_fn=loss_fn)


def widen(model, gen, variant: str):
    """Replace the last nn.Linear by a C+1-way copy; returns (C, name of the layer)."""
    import math

    import torch
    from torch import nn

    name, old = last_linear(model)
    c, n = old.out_features, old.in_features
    new = nn.Linear(n, c + 1, bias=old.bias is not None, device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        if variant == "pruned":  # [BU] models.init_params: xavier_normal_ weight, zero bias
            w = torch.empty(c + 1, n, dtype=old.weight.dtype)
            nn.init.xavier_normal_(w, generator=gen)
            new.weight[c] = w[c].to(new.weight.device)
            if new.bias is not None:
                new.bias[c] = 0.0
        else:  # [SAL] expand_model: nn.Linear's default init (kaiming-uniform a=√5, uniform bias)
            bound = 1 / math.sqrt(n)
            new.weight[c] = (torch.rand(n, generator=gen, dtype=old.weight.dtype) * 2 - 1).mul(bound).to(
                new.weight.device)
            if new.bias is not None:
                new.bias[c] = float(torch.rand(1, generator=gen) * 2 - 1) * bound
        new.weight[:c] = old.weight
        if new.bias is not None:
            new.bias[:c] = old.bias
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], new)
    return c, name


class BoundaryExpanding(Trained):
    name = "boundary-expanding"
    description = "BE: add a shadow class to the last layer, train D_f toward it, prune it"
    reference_url = "https://arxiv.org/abs/2303.11570"
    uses = frozenset({"forget"})
    Config = BoundaryExpandingConfig
    variant_keys = ("variant",)

    def variant(self, cfg) -> str:
        return str(cfg.variant)

    def build(self, ctx, prep, lr):
        import torch

        model = ctx.new_model(ctx.original())
        variant = str(ctx.cfg.variant)
        c, head = widen(model, ctx.rng("shadow"), variant)
        x, y = ctx.data("forget")
        out = self.train(ctx, model, x, torch.full_like(y, c), lr)

        def prune(state):  # prune the shadow row: the C-way model (every epoch's, under the v2 search)
            for k in (f"{head}.weight", f"{head}.bias"):
                if k in state:
                    state[k] = state[k][:c].clone()
            return state

        out = [prune(s) for s in out] if isinstance(out, list) else prune(out)
        if variant == "salun_port":
            # [SAL] evaluates the C+1-way model; the evaluator here takes C-way models only, so the row
            # is reported on D_f (which BE reads) and the run's metrics are C-way. Measured at the last
            # epoch, whichever epoch the v2 search returns.
            with torch.no_grad():
                dev = next(model.parameters()).device
                pred = torch.cat([model(x[i:i + 512].to(dev)).argmax(1).cpu() for i in range(0, len(x), 512)])
            ctx.info["evaluated"] = "C-way (shadow row dropped); [SAL] evaluates C+1-way"
            ctx.info.setdefault("c_plus_1_by_lr", {})[str(lr)] = {  # one entry per searched lr
                "acc_forget": 100.0 * float((pred == y).float().mean()),
                "shadow_share_forget": 100.0 * float((pred == c).float().mean())}
        else:
            ctx.info["evaluated"] = "C-way (pruned)"
        return out


@hookimpl
def register_methods(register):
    register(BoundaryShrink())
    register(BoundaryExpanding())
