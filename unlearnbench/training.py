"""The one training loop every stage and training-based method shares.

It owns epochs, data order (from the trial's ``order`` stream), the optimiser and its
schedule, BN mode, the device and the progress bar. A caller supplies only what differs:
the loss (``loss_fn``), per-batch labels, a hook after each step (a SalUn mask), a hook on the
gradients before each step (MSG's mask), which parameters to update, or its own batch order
(``batches``: RL's sequential schedule).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from . import progress
from .recipe import Recipe

if TYPE_CHECKING:
    import torch


def lr_at(recipe: Recipe, step: int, total: int, steps_per_epoch: int) -> float:
    warm = recipe.warmup_steps
    if warm and step < warm:  # linear warmup to lr, then the schedule over the remaining steps [NM]
        return recipe.lr * (step + 1) / warm
    if warm:
        step, total = step - warm, max(1, total - warm)
    if recipe.schedule == "constant":
        return recipe.lr
    if recipe.schedule == "cosine":  # to 0, stepped per batch [PROTOCOL §2.1, CPU recipes]
        return recipe.lr * 0.5 * (1.0 + math.cos(math.pi * step / total))
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
    """
    import torch
    import torch.nn.functional as F

    if recipe.optimizer not in ("sgd", "adamw", "adam"):
        raise ValueError(f"optimizer {recipe.optimizer!r} is not supported (sgd, adamw, adam)")
    if augment is None:  # the recipe names its augmentation (crop_flip for CIFAR-10, §2.1)
        from .augment import recipe_augmentation

        augment = recipe_augmentation(recipe)
    model.to(device).train()
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
    if loss_fn is None:
        def loss_fn(m, xb, yb):
            return F.cross_entropy(m(xb), yb, label_smoothing=recipe.label_smoothing)
    step = 0
    with progress.bar(total if show_progress else 0, desc, unit="step") as pbar:
        for epoch in range(recipe.epochs):
            if on_epoch is not None:  # e.g. redraw random labels (RL) or decay a penalty (l1-sparse)
                on_epoch(epoch)
            # On a GPU, batches are gathered where the model is: a host-to-device copy from
            # pageable memory each step waits for the step before, so CPU and GPU would take
            # turns. One copy per epoch, after on_epoch (RL relabels y in place). With a
            # train-time augmentation (drawn from the CPU stream) or inputs that are not tensors,
            # batches are made on the host. Same batches either way; on CPU nothing is copied.
            on_dev = augment is None and isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)
            xs, ys = (x.to(device), y.to(device)) if on_dev else (x, y)
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
            for idx in epoch_batches:
                xb, yb = xs[idx], ys[idx]
                if augment is not None:
                    xb = augment(xb, gen)
                xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
                for group in opt.param_groups:
                    group["lr"] = lr_at(recipe, step, total, spe)
                loss = loss_fn(model, xb, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if before_step is not None:
                    before_step()
                if recipe.grad_clip:
                    torch.nn.utils.clip_grad_norm_(trainable, recipe.grad_clip)
                opt.step()
                if after_step is not None:
                    after_step()
                step += 1
                pbar.update(1)
    model.eval()
    return model
