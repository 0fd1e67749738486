"""Random Labeling (RL) and SalUn, with their forget-only forms (PROTOCOL §7, §7.1).

RL trains CE(f(x_f), y') + CE(f(x_r), y_r): y' is redrawn every epoch, uniformly from the
classes other than y (``label_sampling=not_true``; the code's ``uniform_all`` may draw y),
and D_f and D_r are shuffled together into mixed batches (``schedule=mixed``; HEAD's
``sequential`` runs all forget batches, then all retain batches, every epoch).

SalUn is RL on the weights a saliency mask selects: m_j = 1 for the ⌊r·d⌋ largest |g_j|,
g the exact mean CE gradient over D_f at θ_0 in eval mode, global over every parameter
(not buffers), ties to the lower flat index. ``mask_mode=hard``: masked weights stay exactly
θ_0; ``leaky``: only their gradients are masked (weight decay and momentum still move them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from unlearnbench import Choice, hookimpl, opt

from ._common import LrSearch, SearchGrid, Trained, lr_search_opt, random_labels, search_grid_opt

if TYPE_CHECKING:
    import torch


class Labels(Choice):
    not_true = "not_true"
    uniform_all = "uniform_all"


class Schedule(Choice):
    mixed = "mixed"
    sequential = "sequential"


class MaskMode(Choice):
    hard = "hard"
    leaky = "leaky"


def _labels_opt():
    return opt(Labels.not_true, "random labels: not_true (y' != y, the paper's equation) | uniform_all (the "
               "code's; y' may equal y)", "PROTOCOL §7 RL notes, §10.2 #28")


def _schedule_opt():
    return opt(Schedule.mixed, "mixed (D_f and D_r shuffled into mixed batches, SAL-era) | sequential (HEAD: all "
               "forget batches, then all retain batches)", "PROTOCOL §7 RL notes, §10.2 #28")


@dataclass
class RLConfig:
    lr: float = opt(0.01, "learning rate (constant)", "[OURS] PROTOCOL §7, §10.2 #28 (upstream: [1e-4, 1e-1])")
    epochs: int = opt(10, "epochs over D_f ∪ D_r", "[SAL] PROTOCOL §7")
    label_sampling: Labels = _labels_opt()
    schedule: Schedule = _schedule_opt()
    lr_search: LrSearch = lr_search_opt()
    search_grid: SearchGrid = search_grid_opt()


@dataclass
class RLForgetConfig:
    lr: float = opt(0.01, "learning rate (constant)", "[OURS] PROTOCOL §7, §10.2 #29")
    epochs: int = opt(10, "epochs over D_f", "[OURS] PROTOCOL §7, §10.2 #29")
    label_sampling: Labels = _labels_opt()
    lr_search: LrSearch = lr_search_opt()
    search_grid: SearchGrid = search_grid_opt()


def _mask_mode_opt():
    return opt(MaskMode.hard, "hard: masked weights stay exactly θ_0 (gradient, wd and momentum) [SAL #33] | leaky: "
               "only gradients are masked (published numbers)", "PROTOCOL §7.1, §10.2 #32")


def _mask_ratio_opt():
    return opt(0.5, "fraction of the weights SalUn updates (the top |g| saliency)", "[SAL] with_0.5.pt; PROTOCOL §7.1")


@dataclass
class SalUnConfig:
    lr: float = opt(0.013, "learning rate (constant)", "[SAL] README; PROTOCOL §10.2 #33")
    epochs: int = opt(10, "epochs over D_f ∪ D_r", "[SAL] README; PROTOCOL §7")
    label_sampling: Labels = _labels_opt()
    schedule: Schedule = _schedule_opt()
    mask_mode: MaskMode = _mask_mode_opt()
    mask_ratio: float = _mask_ratio_opt()
    lr_search: LrSearch = lr_search_opt()
    search_grid: SearchGrid = search_grid_opt()


@dataclass
class SalUnForgetConfig:
    lr: float = opt(0.013, "learning rate (constant)", "[OURS] PROTOCOL §7, §10.2 #29")
    epochs: int = opt(10, "epochs over D_f", "[OURS] PROTOCOL §7, §10.2 #29")
    label_sampling: Labels = _labels_opt()
    mask_mode: MaskMode = _mask_mode_opt()
    mask_ratio: float = _mask_ratio_opt()
    lr_search: LrSearch = lr_search_opt()
    search_grid: SearchGrid = search_grid_opt()


def sequential_batches(sizes: list[int], batch: int, epochs: int, gen: "torch.Generator") -> list[list["torch.Tensor"]]:
    """HEAD's order, for the loop's ``batches=``: every epoch all batches of the first set, then
    all of the second, each set shuffled on its own (drawn from ``gen`` in that order, epoch by
    epoch). Indices address the sets concatenated in the order of ``sizes``."""
    import torch

    out = []
    for _ in range(epochs):
        epoch, at = [], 0
        for n in sizes:
            order = torch.randperm(n, generator=gen) + at
            epoch += [order[i:i + batch] for i in range(0, n, batch)]
            at += n
        out.append(epoch)
    return out


def saliency_mask(model, x, y, ratio: float, chunk: int = 512) -> dict[str, "torch.Tensor"]:
    """PROTOCOL §7.1: bool mask per parameter name; True = the weight is updated."""
    import torch
    import torch.nn.functional as F

    model.eval()
    names, params = zip(*model.named_parameters())
    dev = params[0].device
    grads = [torch.zeros_like(p) for p in params]
    for i in range(0, len(x), chunk):  # the exact full-set mean, accumulated in chunks
        xb, yb = x[i:i + chunk].to(dev), y[i:i + chunk].to(dev)
        loss = F.cross_entropy(model(xb), yb, reduction="sum") / len(x)
        for g, gi in zip(grads, torch.autograd.grad(loss, params)):
            g.add_(gi)
    flat = torch.cat([g.abs().flatten() for g in grads])
    k = int(math.floor(ratio * flat.numel()))
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[torch.sort(flat, descending=True, stable=True).indices[:k]] = True  # ties: lower flat index first
    out, at = {}, 0
    for n, p in zip(names, params):
        out[n] = keep[at:at + p.numel()].view_as(p)
        at += p.numel()
    return out


def apply_mask(model, mask: dict, mode: str):
    """Mask the gradients (both modes) and return the after-step hook that, in hard mode,
    restores θ_0 on masked coordinates. SGD acts coordinate-wise, so restoring after every step
    keeps masked weights exactly θ_0 and leaves the other weights' trajectory as if their
    momentum were zeroed too (the loop's optimiser state is not reachable from the hook)."""
    import torch

    triples = []
    for n, p in model.named_parameters():
        m = mask[n].to(p.device)
        p.register_hook(lambda g, m=m.to(p.dtype): g * m)
        triples.append((p, m, p.detach().clone()))

    def restore():
        with torch.no_grad():
            for p, m, p0 in triples:
                p.copy_(torch.where(m, p, p0))

    return restore if mode == "hard" else None


class RandomLabel(Trained):
    name = "random-label"
    description = "RL: D_f with random labels y' != y (redrawn each epoch) mixed with D_r, CE, 10 epochs"
    reference_url = "https://arxiv.org/abs/2310.12508"
    uses = frozenset({"forget", "retain"})
    Config = RLConfig
    variant_keys = ("label_sampling", "schedule")
    forget_only = False

    def build(self, ctx, prep, lr):
        model = ctx.new_model(ctx.original())
        after_step = apply_mask(model, prep, ctx.cfg.mask_mode) if prep is not None else None
        xf, yf = ctx.data("forget")
        gen = ctx.rng("labels")
        yf_rand = yf.clone()
        same = [0]

        def draw(t):
            yf_rand.copy_(random_labels(yf, ctx.num_classes, gen, ctx.cfg.label_sampling))
            same[0] += int((yf_rand == yf).sum())

        batches = None
        if self.forget_only:
            x, y, on_epoch = xf, yf_rand, draw
        else:
            import torch

            xr, yr = ctx.data("retain")
            nf = len(xf)
            x, y = torch.cat([xf, xr]), torch.cat([yf_rand, yr])  # D_f rows first

            def on_epoch(t):
                draw(t)
                y[:nf] = yf_rand

            if ctx.cfg.schedule == "sequential":
                batches = sequential_batches([nf, len(xr)], ctx.recipe.batch, int(ctx.cfg.epochs),
                                             ctx.rng("sequential"))

        out = self.train(ctx, model, x, y, lr, on_epoch=on_epoch, after_step=after_step, batches=batches)
        ctx.info["labels_equal_true"] = same[0]  # draws with y' = y over all epochs (0 under not_true)
        return out


class RandomLabelForget(RandomLabel):
    name = "random-label-forget"
    description = "RL-forget: CE on D_f with random labels y' != y only (the paper's forget block)"
    uses = frozenset({"forget"})
    Config = RLForgetConfig
    variant_keys = ("label_sampling",)
    forget_only = True


class SalUn(RandomLabel):
    name = "salun"
    description = "SalUn: RL on the top-50% saliency weights (|grad of CE on D_f| at θ_0), the rest frozen"
    uses = frozenset({"forget", "retain"})
    Config = SalUnConfig
    variant_keys = ("mask_mode", "mask_ratio", "label_sampling", "schedule")
    fractions = ("mask_ratio",)
    alternatives = (0.1,)  # the pre-Apr-2024 [SAL] README's lr (PROTOCOL §7, §7.3); SalUn-forget inherits it

    def prepare(self, ctx):
        model = ctx.new_model(ctx.original())
        mask = saliency_mask(model, *ctx.data("forget"), float(ctx.cfg.mask_ratio))
        kept = sum(int(m.sum()) for m in mask.values())
        ctx.info["mask"] = {"kept": kept, "d": sum(m.numel() for m in mask.values())}
        return mask


class SalUnForget(SalUn):
    name = "salun-forget"
    description = "SalUn-forget: RL-forget on the top-50% saliency weights (the paper's forget block)"
    uses = frozenset({"forget"})
    Config = SalUnForgetConfig
    variant_keys = ("mask_mode", "mask_ratio", "label_sampling")
    forget_only = True


@hookimpl
def register_methods(register):
    for m in (RandomLabel(), RandomLabelForget(), SalUn(), SalUnForget()):
        register(m)
