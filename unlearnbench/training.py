"""The one training loop every stage and training-based method shares.

It owns epochs, data order (from the trial's ``order`` stream), the optimiser and its
schedule, BN mode, the device and the progress bar. A caller supplies only what differs:
the loss (``loss_fn``), per-batch labels, a hook after each step (a SalUn mask), a hook on the
gradients before each step (``before_step``: MSG's mask), which parameters to update, its own batch
order (``batches``: RL's sequential schedule), a second loader stepped alongside the first
(``paired``: NG+'s cycled D_f batches, PROTOCOL §7.4.1), or passes over other data run before the
main one within each epoch (``phases``: SCRUB's max-epochs on D_f, §7.4.2), all under the one optimiser.

On a GPU (issue 20): the data are copied to the device once per call and stay there; batches are
gathered there and augmented there when the augmentation is a ``tensor_op`` (crop + flip,
translations, random resized crops), drawing from the same generator in the same order, so the
host does a few integer draws per image and no pixel work. ``amp="bf16"`` (``-o amp=bf16``, opt-in;
fp32 is the default and what every reference ran) runs forward and loss under bf16 autocast, with
channels-last weights and inputs for conv nets on CUDA, where the tensor cores want that layout.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from . import progress
from .recipe import Recipe

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Paired:
    """A second loader that gives one batch per step of the main pass, for a loss of both
    (``loss_fn(model, xb, yb, xb2, yb2)``). Its rows are reshuffled from ``gen`` at the start of
    every epoch and cut into ``batch``-sized batches (the last one partial); when the main pass
    needs more steps than it has batches it restarts and repeats the batches of that epoch's
    first pass in the same order, augmentations included: ``zip(retain_loader,
    cycle(forget_loader))``, whose ``itertools.cycle`` caches the first pass [SCRUB, DU]
    (PROTOCOL §7.4.1). Its own generator shuffles and augments it, so the main pass draws
    exactly what it would draw without it."""

    x: Any
    y: Any
    batch: int
    gen: Any  # torch.Generator


@dataclass(frozen=True)
class Phase:
    """A pass over (x, y) run before the main pass in each of the first ``epochs`` epochs, with
    its own loss ``loss_fn(model, xb, yb)`` and batch size, stepping the same optimiser at the
    epoch's lr (SCRUB's max-epochs on D_f, PROTOCOL §7.4.2). ``shuffle``: a fresh permutation
    from the loop's generator each epoch (drawn before the main pass's), else the rows in order."""

    x: Any
    y: Any
    batch: int
    loss_fn: Callable
    epochs: int
    shuffle: bool = True


def lr_at(recipe: Recipe, step: int, total: int, steps_per_epoch: int, epoch: int | None = None) -> float:
    warm = recipe.warmup_steps or recipe.warmup_epochs * steps_per_epoch
    if warm and step < warm:  # linear warmup to lr, then the schedule over the remaining steps [NM]
        return recipe.lr * (step + 1) / warm
    if warm:
        step, total = step - warm, max(1, total - warm)
    if recipe.schedule == "constant":
        return recipe.lr
    if recipe.schedule == "cosine":  # to 0, stepped per batch [PROTOCOL §2.1, CPU recipes]
        return recipe.lr * 0.5 * (1.0 + math.cos(math.pi * step / total))
    if epoch is None:  # given when epochs differ in length (SCRUB's phases)
        epoch = step // max(1, steps_per_epoch)
    if recipe.schedule == "multistep":  # x0.1 at each milestone epoch [SAL]
        return recipe.lr * (0.1 ** sum(epoch >= m for m in recipe.milestones))
    if recipe.schedule == "triangular":  # per epoch, up to lr at epoch A and back down [DU kgltop2; PROTOCOL §7.4.4]
        e, n = epoch + 1, recipe.epochs  # e = 1…E; A = ⌊(E+1)/2⌋; E = 5: lr × (1/3, 2/3, 1, 2/3, 1/3)
        peak = (n + 1) // 2
        return recipe.lr * (e / peak if e <= peak else (n + 1 - e) / (n + 1 - peak))
    if recipe.schedule == "cosine_epoch":  # CosineAnnealingLR(T_max = E) stepped per epoch [DU kgltop5; §7.4.4]
        return recipe.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / recipe.epochs))
    raise ValueError(f"unknown lr schedule {recipe.schedule!r} (cosine, constant, multistep, triangular, "
                     "cosine_epoch)")


AMP = ("fp32", "bf16")  # -o amp=...: the training precision; fp32 is every reference's


def uses_channels_last(model: "torch.nn.Module", device: str, amp: str) -> bool:
    """Channels-last where it helps: bf16 on CUDA, for a conv net (two or more 2-d convolutions:
    ResNet, VGG, the CPU CNNs; not a ViT's one patch embedding). fp32 keeps the default layout, so
    fp32 GPU runs keep the kernels (and bits) of the committed H200 records."""
    from torch import nn

    if amp != "bf16" or not str(device).startswith("cuda"):
        return False
    return sum(isinstance(m, nn.Conv2d) for m in model.modules()) >= 2


def train(
    model: "torch.nn.Module",
    x: "torch.Tensor",
    y: "torch.Tensor",
    recipe: Recipe,
    gen: "torch.Generator",
    *,
    device: str = "cpu",
    desc: str = "train",
    loss_fn: Callable | None = None,
    after_step: Callable[[], None] | None = None,
    before_step: Callable[[], None] | None = None,
    params: Iterable | None = None,
    augment: Callable | None = None,
    on_epoch: Callable[[int], None] | None = None,
    batches: "Sequence[Sequence[torch.Tensor]] | None" = None,
    show_progress: bool = True,
    paired: Paired | None = None,
    phases: Sequence[Phase] = (),
    amp: str = "fp32",
    channels_last: bool | None = None,
) -> "torch.nn.Module":
    """Train ``model`` in place on (x, y) with ``recipe``; returns the model (last iterate).

    :param loss_fn: ``loss_fn(model, xb, yb) -> loss``; default cross-entropy with the recipe's
        label smoothing. Gradient ascent returns the negated loss, l1-sparse adds its penalty.
    :param after_step: called after every optimiser step (SalUn's hard mask restores θ_0 there).
    :param before_step: called after every backward pass, before clipping and the optimiser step,
        while ``.grad`` holds the loss gradient alone: MSG scales it there, so weight decay and
        momentum, which the step adds, act unmasked (PROTOCOL §7.4.4 step 4).
    :param params: the parameters to optimise (default: all).
    :param on_epoch: called with the epoch index before each epoch.
    :param augment: ``augment(xb, gen) -> xb`` per batch; default the one ``recipe.augment`` names.
    :param batches: the batch order, one sequence of index tensors (rows of x and y) per epoch,
        every epoch the same number of batches; default a fresh shuffle of all of (x, y) per
        epoch, cut into ``recipe.batch``-sized batches.
    :param amp: "fp32" (default) or "bf16": forward and loss under bf16 autocast, backward and the
        optimiser step on the fp32 weights (no loss scaling: bf16 has fp32's exponent range).
    :param channels_last: the conv weights and inputs in channels-last memory during training;
        None = ``uses_channels_last`` (bf16 conv nets on CUDA). The model is handed back contiguous.
    """
    import torch
    import torch.nn.functional as F

    if recipe.optimizer not in ("sgd", "adamw", "adam"):
        raise ValueError(f"optimizer {recipe.optimizer!r} is not supported (sgd, adamw, adam)")
    from .augment import recipe_augmentation, runs_on_device

    if amp not in AMP:
        raise ValueError(f"amp={amp!r} is not a training precision ({', '.join(AMP)})")
    if augment is None:  # the recipe names its augmentation (crop_flip for CIFAR-10, §2.1)
        augment = recipe_augmentation(recipe)
    model.to(device).train()
    cl = uses_channels_last(model, device, amp) if channels_last is None else channels_last
    if cl:  # before the optimiser exists, so its state takes the same layout; same Parameter objects
        model.to(memory_format=torch.channels_last)
    autocast = (torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if amp == "bf16"
                else nullcontext())

    def layout(xb):
        return xb.contiguous(memory_format=torch.channels_last) if cl and xb.dim() == 4 else xb
    # Frozen parameters (requires_grad False: CLIP attention and text leftovers) are never stepped,
    # so weight decay cannot move them either and they stay exact zeros in τ (PROTOCOL §3).
    trainable = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    if recipe.optimizer == "adamw":  # CLIP fine-tuning [P App. A]: betas (0.9, 0.999), eps 1e-8
        opt = torch.optim.AdamW(trainable, lr=recipe.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=recipe.wd)
    elif recipe.optimizer == "adam":  # Bad Teacher [BT]: torch's Adam defaults; wd (0 there) is L2, not decoupled
        opt = torch.optim.Adam(trainable, lr=recipe.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=recipe.wd)
    else:
        opt = torch.optim.SGD(trainable, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.wd)
    n = len(x)
    if batches is not None:
        if len(batches) != recipe.epochs or len({len(b) for b in batches}) > 1:
            raise ValueError(f"batches= gives {[len(b) for b in batches]} batches per epoch; the recipe has "
                             f"{recipe.epochs} epochs, and every epoch needs the same number (the schedule's length)")
        spe = len(batches[0]) if batches else 0
    else:
        spe = math.ceil(n / recipe.batch)
    total = recipe.epochs * spe
    phase_steps = [math.ceil(len(ph.x) / ph.batch) for ph in phases]
    total += sum(k * min(ph.epochs, recipe.epochs) for k, ph in zip(phase_steps, phases))
    if paired is not None and loss_fn is None:
        raise ValueError("paired= needs a loss_fn(model, xb, yb, xb2, yb2)")
    if loss_fn is None:
        def loss_fn(m, xb, yb):
            return F.cross_entropy(m(xb), yb, label_smoothing=recipe.label_smoothing)
    step = 0

    def do_step(loss_of: Callable[[], "torch.Tensor"], epoch: int) -> None:
        nonlocal step
        for group in opt.param_groups:
            group["lr"] = lr_at(recipe, step, total, spe, epoch if phases else None)
        with autocast:  # forward and loss; backward runs outside, as torch.autocast asks
            loss = loss_of()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if before_step is not None:  # on the loss gradient: weight decay and momentum act unmasked (MSG)
            before_step()
        if recipe.grad_clip:
            torch.nn.utils.clip_grad_norm_(trainable, recipe.grad_clip)
        opt.step()
        if after_step is not None:
            after_step()
        step += 1
        pbar.update(1)

    on_dev = runs_on_device(augment) and isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)
    x_dev = None
    with progress.bar(total if show_progress else 0, desc, unit="step") as pbar:
        for epoch in range(recipe.epochs):
            if on_epoch is not None:  # e.g. redraw random labels (RL) or decay a penalty (l1-sparse)
                on_epoch(epoch)
            for ph in phases:  # before the main pass, as SCRUB's max-epoch precedes its min-epoch
                if epoch >= ph.epochs:
                    continue
                rows = torch.randperm(len(ph.x), generator=gen) if ph.shuffle else torch.arange(len(ph.x))
                for i in range(0, len(rows), ph.batch):
                    pb = rows[i:i + ph.batch]
                    px, py = ph.x[pb], ph.y[pb]
                    if augment is not None:
                        px = augment(px, gen)
                    px, py = layout(px.to(device)), py.to(device)
                    do_step(lambda: ph.loss_fn(model, px, py), epoch)
            # On a GPU, batches are gathered where the model is: a host-to-device copy from
            # pageable memory each step waits for the step before, so CPU and GPU would take
            # turns. x goes once per call (``x_dev``, below), y once per epoch, after on_epoch (RL
            # relabels y in place). A tensor_op augmentation (crop + flip, translations, RRC) draws
            # from the CPU stream and moves the pixels on the device; any other (RandAugment's PIL)
            # or inputs that are not tensors make batches on the host. Same batches either way.
            if on_dev:
                if x_dev is None:
                    x_dev = x.to(device)
                xs, ys = x_dev, y.to(device)
            else:
                xs, ys = x, y
            if batches is None:
                order = torch.randperm(n, generator=gen)
                if on_dev:
                    order = order.to(device)
                epoch_batches = [order[b * recipe.batch:(b + 1) * recipe.batch] for b in range(spe)]
            else:
                epoch_batches = [i.to(device) for i in batches[epoch]] if on_dev else batches[epoch]
                if augment is not None:
                    # Drawn and unused: RL's sequential schedule once fed this loop through stand-in
                    # tensors of spe·batch rows, so the loop drew this permutation before augmenting
                    # from the same generator. Drawing it still keeps those runs' augmentations
                    # (GPU-scale recipes; digits and fmnist have none) bit for bit.
                    torch.randperm(spe * recipe.batch, generator=gen)
            if paired is not None:  # this epoch's first pass of the second loader, cached as cycle() does
                order2 = torch.randperm(len(paired.x), generator=paired.gen)
                cut2 = [order2[i:i + paired.batch] for i in range(0, len(order2), paired.batch)]
                cache2: dict[int, tuple] = {}
            for b, idx in enumerate(epoch_batches):
                xb, yb = xs[idx], ys[idx]
                if augment is not None:
                    xb = augment(xb, gen)
                xb, yb = layout(xb.to(device, non_blocking=True)), yb.to(device, non_blocking=True)
                extra: tuple = ()
                if paired is not None:
                    j = b % len(cut2)
                    if j not in cache2:
                        xb2, yb2 = paired.x[cut2[j]], paired.y[cut2[j]]
                        if augment is not None:
                            xb2 = augment(xb2, paired.gen)
                        cache2[j] = (layout(xb2.to(device)), yb2.to(device))
                    extra = cache2[j]
                do_step(lambda: loss_fn(model, xb, yb, *extra), epoch)
    if cl:  # the weights leave in the default layout: state dicts, digests and stores see no difference
        model.to(memory_format=torch.contiguous_format)
    model.eval()
    return model
