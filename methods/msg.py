"""Masked Small Gradients (MSG) and Convolution Transpose (CT): the NeurIPS 2023 challenge solutions
that [DU] re-implements as ``kgltop2`` and ``kgltop5`` and finds consistently best (PROTOCOL §7.4.4).

MSG, steps 1–6 of §7.4.4:

1. Gradient, at θ_0 with BN in eval mode and the eval transform [OURS]: draw R′ ⊂ D_r with
   |R′| = |D_f| (``unlearn`` stream) and sum batch means over shuffled batches of 64,
   g = Σ_{b ⊂ R′} ∇CE_mean(b) − Σ_{b ⊂ D_f} ∇CE_mean(b).
2. Select, per conv layer ℓ (n_ℓ weights): S_ℓ = the round(p·n_ℓ) positions with the smallest
   |g|, p = 0.3; ties go to the lower flat index [OURS].
3. Re-initialise: a fresh Kaiming-normal tensor (fan_out, ReLU gain: std √(2/fan_out)) is copied
   into W_ℓ at S_ℓ only. Conv biases keep θ_0's values [OURS] (``conv_bias=reinit``: the [DU]
   port's fresh default-init biases).
4. Mask: while fine-tuning, the loss gradient of W_ℓ is ×1 on S_ℓ and ×0.1 elsewhere; weight
   decay and momentum act unmasked; BN, linear layers and biases get full gradients.
5. Fine-tune: CE on D_r, train mode, SGD lr 1e-3, momentum 0.9, wd 5e-4, batch 64 (the CPU
   scenarios: the scenario's batch), E = 5, lr per epoch η·e/A for e ≤ A, else
   η·(E + 1 − e)/(E + 1 − A), A = ⌊(E+1)/2⌋.
6. The last iterate (under the §7.3 v2 search, the chosen epoch of the full-E schedule).

``layers=conv+linear`` (EXTENSION, not paper-comparable) applies steps 2–4 to linear weights too.

CT: W[o, i, h, w] ← W[o, i, w, h] for every conv kernel, then CE on D_r with SGD 1e-3, momentum
0.9, wd 5e-4, batch 64 (CPU: the scenario's), E = 3, cosine annealing per epoch (T_max = E).
It reads D_r only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from unlearnbench import Choice, ConfigError, Recipe, hookimpl, opt

from ._common import (LrSearch, method_recipe, SearchGrid, Trained, lr_search_opt, search_grid_opt, state_of, table_batch,
                      unlearn_gen)

if TYPE_CHECKING:
    import torch

BATCH = 64  # [DU] kgltop2, kgltop5; the CPU scenarios use their own (PROTOCOL §7.4)
GRAD_BATCH = 64  # the batches g is summed over (§7.4.4 step 1), on every scenario


class ConvBias(Choice):
    keep = "keep"
    reinit = "reinit"


# "conv+linear" is no identifier, so this Choice is made by Enum's functional API: Layers["conv+linear"]
Layers = Choice("Layers", [("conv", "conv"), ("conv+linear", "conv+linear")], module=__name__)


def _augment_opt() -> Any:
    return opt(True, "the scenario's training augmentation on D_r | false: eval-transform images, as [DU] trains",
               "PROTOCOL §7.4")


@dataclass
class MSGConfig:
    lr: float = opt(1e-3, "peak lr η of the per-epoch triangular schedule (SGD, momentum 0.9, wd 5e-4)",
                    "[DU] kgltop2; PROTOCOL §7.4.4")
    epochs: int = opt(5, "fine-tuning epochs E over D_r; the triangle spans all E", "[DU] kgltop2; PROTOCOL §7.4.4")
    fraction: float = opt(0.3, "p: each layer re-initialises its round(p·n) smallest-|g| weights",
                          "[DU] kgltop2; PROTOCOL §7.4.4")
    grad_scale: float = opt(0.1, "factor on the loss gradient of the selected layers' other weights",
                            "[DU] kgltop2; PROTOCOL §7.4.4")
    conv_bias: ConvBias = opt(ConvBias.keep, "keep: θ_0's conv biases [OURS] | reinit: fresh default-init biases, "
                              "as the [DU] port's new conv layers", "PROTOCOL §7.4.4, §10.2 #54")
    layers: Layers = opt(Layers["conv"], "conv: every conv weight [DU] | conv+linear: EXTENSION, linear weights "
                         "too (Kaiming fan_out); not paper-comparable", "[DU] kgltop2; [OURS] PROTOCOL §7.4.4")
    augment: bool = _augment_opt()
    lr_search: LrSearch = lr_search_opt()
    search_grid: SearchGrid = search_grid_opt()


@dataclass
class CTConfig:
    lr: float = opt(1e-3, "initial lr of the per-epoch cosine schedule, T_max = E (SGD, momentum 0.9, wd 5e-4)",
                    "[DU] kgltop5; PROTOCOL §7.4.4")
    epochs: int = opt(3, "fine-tuning epochs E over D_r; the cosine spans all E", "[DU] kgltop5; PROTOCOL §7.4.4")
    augment: bool = _augment_opt()
    lr_search: LrSearch = lr_search_opt()
    search_grid: SearchGrid = search_grid_opt()


def selected_layers(model, layers: str = "conv") -> list[tuple[str, Any]]:
    """(name, module) of the layers MSG edits, in ``model.modules()`` order: every Conv2d, and
    with ``conv+linear`` every Linear too."""
    from torch import nn

    kinds = (nn.Conv2d, nn.Linear) if str(layers) == "conv+linear" else (nn.Conv2d,)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, kinds)]


def msg_gradient(model, weights: list["torch.Tensor"], xf, yf, xr, yr, gen: "torch.Generator",
                 batch: int = GRAD_BATCH) -> list["torch.Tensor"]:
    """Step 1: g = Σ_{b ⊂ R′} ∇CE_mean(b) − Σ_{b ⊂ D_f} ∇CE_mean(b) for each of ``weights``, with
    R′ a random |D_f|-subset of (xr, yr) and both sets in shuffled batches, all drawn from
    ``gen``; BN in eval mode (the caller's inputs are eval-transform images)."""
    import torch
    import torch.nn.functional as F

    model.eval()
    dev = weights[0].device
    sub = torch.randperm(len(xr), generator=gen)[:len(xf)]
    g = [torch.zeros_like(w) for w in weights]
    for x, y, sign in ((xr[sub], yr[sub], 1.0), (xf, yf, -1.0)):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            loss = F.cross_entropy(model(x[idx].to(dev)), y[idx].to(dev))
            for acc, gi in zip(g, torch.autograd.grad(loss, weights)):
                acc.add_(gi, alpha=sign)
    return g


def smallest(g: "torch.Tensor", fraction: float) -> "torch.Tensor":
    """Step 2: a bool mask of the round(p·n) positions of smallest |g|, ties to the lower flat index
    (a stable sort). Python's round: half to even, which only an exact .5 would notice."""
    import torch

    k = round(fraction * g.numel())
    mask = torch.zeros(g.numel(), dtype=torch.bool, device=g.device)
    mask[torch.sort(g.abs().flatten(), stable=True).indices[:k]] = True
    return mask.view_as(g)


def reinit_selected(layer, mask: "torch.Tensor", gen: "torch.Generator", bias: bool) -> None:
    """Step 3: Kaiming-normal (fan_out, ReLU) values copied into ``layer.weight`` at ``mask`` only;
    with ``bias``, the bias redrawn as a fresh layer's (uniform ±1/√fan_in, PyTorch's default)."""
    import math

    import torch

    with torch.no_grad():
        w = layer.weight
        fresh = torch.nn.init.kaiming_normal_(torch.empty(w.shape), mode="fan_out", nonlinearity="relu",
                                              generator=gen).to(w.device, w.dtype)
        w.copy_(torch.where(mask, fresh, w))
        if bias and layer.bias is not None:
            bound = 1 / math.sqrt(w[0].numel()) if w[0].numel() else 0.0
            b = torch.empty(layer.bias.shape).uniform_(-bound, bound, generator=gen)
            layer.bias.copy_(b.to(layer.bias.device, layer.bias.dtype))


def gradient_mask(weights: list["torch.Tensor"], masks: list["torch.Tensor"], scale: float):
    """Step 4, the loop's ``before_step``: each selected weight's loss gradient ×1 on its mask and
    ×``scale`` elsewhere. It runs before the optimiser step, which adds weight decay and momentum,
    so those act unmasked; every other parameter keeps its full gradient."""
    import torch

    factors = [(w, torch.where(m, 1.0, scale).to(w.device, w.dtype)) for w, m in zip(weights, masks)]

    def before_step() -> None:
        for w, f in factors:
            if w.grad is not None:
                w.grad.mul_(f)

    return before_step


def transpose_kernels(model) -> int:
    """CT: W[o, i, h, w] ← W[o, i, w, h] for every Conv2d (1×1 kernels are unchanged); returns how
    many kernels were transposed. A non-square kernel has no transpose of its own shape."""
    import torch
    from torch import nn

    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    for n, m in convs:
        if m.weight.shape[2] != m.weight.shape[3]:
            raise ConfigError(f"conv-transpose: layer {n!r} has a {tuple(m.weight.shape[2:])} kernel; CT transposes "
                              "square kernels only (PROTOCOL §7.4.4)")
        with torch.no_grad():
            m.weight.copy_(m.weight.transpose(2, 3).clone())
    return len(convs)


class _PerEpochSchedule(Trained):
    """A §7.4.4 fine-tune: CE on D_r, SGD momentum 0.9, wd 5e-4, an lr set per epoch over all E."""

    uses = frozenset({"retain"})
    schedule = ""

    def recipe_for(self, ctx, lr: float, epochs: int) -> Recipe:
        return method_recipe(ctx, lr, epochs, table_batch(ctx, BATCH), bool(ctx.cfg.augment), schedule=self.schedule)

    def record_recipe(self, ctx, chosen: dict) -> None:
        """The full-E recipe, since the schedule spans all E; under the v2 search ``info.epoch`` is
        the epoch its iterate was taken after (§7.3 step 2)."""
        epoch = chosen.get("epoch")
        ctx.info["recipe"] = None if epoch == 0 else self.recipe_for(ctx, chosen["lr"], ctx.cfg.epochs).spec()


class MaskedSmallGradients(_PerEpochSchedule):
    name = "msg"
    title = "MSG"
    description = ("MSG: re-init the 30% smallest-|grad| weights of each conv layer, ×0.1 gradients on the rest, "
                   "CE on D_r, 5 epochs, triangular lr [DU kgltop2]")
    reference_url = "https://arxiv.org/abs/2410.01276"
    uses = frozenset({"forget", "retain"})
    Config = MSGConfig
    variant_keys = ("conv_bias", "layers", "fraction", "grad_scale", "augment")
    schedule = "triangular"
    positive = ("epochs", "grad_scale")
    fractions = ("fraction",)

    def prepare(self, ctx) -> Any:
        """Steps 1–3, once for every lr: θ_0 with S_ℓ re-initialised, and the masks S_ℓ."""
        from torch import nn

        model = ctx.new_model(ctx.original())
        chosen = selected_layers(model, ctx.cfg.layers)
        if not chosen:
            raise ConfigError(f"msg: the {ctx.cfg.layers} layers of this model are none; MSG edits conv weights "
                              "(PROTOCOL §7.4.4)")
        weights = [m.weight for _, m in chosen]
        g = msg_gradient(model, weights, *ctx.data("forget"), *ctx.data("retain"), unlearn_gen(ctx, "gradient"))
        masks = [smallest(gi, float(ctx.cfg.fraction)) for gi in g]
        gen = unlearn_gen(ctx, "reinit")
        reinit_bias = ctx.cfg.conv_bias == ConvBias.reinit
        for (_, layer), m in zip(chosen, masks):  # in module order, one draw after another from gen
            reinit_selected(layer, m, gen, bias=reinit_bias and isinstance(layer, nn.Conv2d))
        ctx.info["reinit"] = {n: [int(m.sum()), m.numel()] for (n, _), m in zip(chosen, masks)}
        return state_of(model), {f"{n}.weight": m.cpu() for (n, _), m in zip(chosen, masks)}

    def build(self, ctx, prep, lr):
        state, masks = prep
        model = ctx.new_model(state)
        params = dict(model.named_parameters())
        hook = gradient_mask([params[k] for k in masks], list(masks.values()), float(ctx.cfg.grad_scale))
        return self.train(ctx, model, *ctx.data("retain"), lr, stream="unlearn", before_step=hook)


class ConvTranspose(_PerEpochSchedule):
    name = "conv-transpose"
    title = "CT"
    description = ("CT: transpose every conv kernel spatially, then CE on D_r, 3 epochs, cosine lr per epoch "
                   "[DU kgltop5]")
    reference_url = "https://arxiv.org/abs/2410.01276"
    Config = CTConfig
    variant_keys = ("augment",)
    schedule = "cosine_epoch"

    def prepare(self, ctx) -> Any:
        model = ctx.new_model(ctx.original())
        ctx.info["transposed"] = transpose_kernels(model)
        return state_of(model)

    def build(self, ctx, prep, lr):
        return self.train(ctx, ctx.new_model(prep), *ctx.data("retain"), lr, stream="unlearn")


@hookimpl
def register_methods(register):
    register(MaskedSmallGradients())
    register(ConvTranspose())
