"""Many small models trained at once, as one stacked model (issue 20, acceptance 7).

``train_many`` trains M models of one architecture on the same (x, y), each with its own recipe and
its own generator, as ``training.train`` would train each alone: every member's parameters are
stacked along a new leading dimension and the M forwards run as one, through
``torch.func.functional_call`` under ``torch.func.vmap`` (a conv becomes one grouped conv, a linear
one batched matmul). On a device that one small model leaves idle (a GPU) that is one step for M
models. On one CPU thread a digits step is already mostly kernel time (a profile of 9 members: backward,
conv and max-pool take ~90% either way), so there the gain is small; benchmarks/batched_train.py
prints both wall times.

What stays each member's own, so that it draws exactly the random numbers it draws alone:

- its generator: each epoch's permutation of the rows, then each batch's augmentation, in the order
  ``train`` draws them (the members' streams never touch each other's);
- its lr schedule (``training.lr_at`` on its own epochs), weight decay, momentum and label smoothing;
- its epoch count: members are trained together while they have epochs left; one that is done
  leaves the stack at the end of its last epoch (the others go on with fewer members).

What is not the same: the floating-point order. A grouped conv or a batched matmul sums in another
order than the one-model kernels, and the update is a tensor expression per step rather than
torch.optim.SGD's per-parameter kernels, so a stacked member equals its one-at-a-time twin up to
float reordering, not bit for bit: a few ulps after a few steps, growing over a long fine-tune as any
perturbation of that size grows (a 20-epoch digits member ends as far from its twin as one trained alone
from θ_0 perturbed by 1e-7 does; tests/test_stacked.py measures max |Δθ| / max |θ|). That is why a
stacked member is stored under its own key (``Stages``, ``executor.stack``): the one-at-a-time
members the records were made from are never mixed with, or replaced by, stacked ones.

Only what a pool member's training uses is supported: SGD (momentum, weight decay), every lr
schedule and warmup, label smoothing, gradient-norm clipping, any augmentation; the same batch size
and rows for every member; no hooks (``loss_fn``, ``before_step``, ``phases``, ...: a method's own
loop trains alone). ``stackable`` says whether a recipe can be stacked at all, ``stack_key`` which
recipes can share one stack. The
forward must draw no random numbers (no dropout): vmap refuses randomness by default, so a model
that draws any fails loudly rather than drawing shared numbers.
"""
from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Callable, Sequence

from . import progress
from .recipe import Recipe
from .training import lr_at

if TYPE_CHECKING:
    import torch


def stack_key(recipe: Recipe) -> tuple:
    """Members whose recipes have the same key can be trained in one stacked model: one batch size
    (every step cuts the same number of rows for each member) and SGD (the only update written
    here). Everything else (epochs, schedule, lr, wd, momentum, label smoothing, augmentation, clip)
    may differ from member to member."""
    return (recipe.optimizer, int(recipe.batch))


def stackable(recipe: Recipe) -> bool:
    """Whether ``recipe`` can be trained by ``train_many`` at all (SGD only, for now)."""
    return recipe.optimizer == "sgd"


def _plain_pools(module: "torch.nn.Module") -> "torch.nn.Module":
    """``module`` (a copy) with every max-pool a stock ``nn.MaxPool2d``: the suite's channels-last one
    (``models._maxpool``) converts the memory format in inference, which vmap cannot do. A max is
    exact and training runs the stock path anyway, so the values are the same."""
    from torch import nn

    for name, child in list(module.named_children()):
        if isinstance(child, nn.MaxPool2d) and type(child) is not nn.MaxPool2d:
            setattr(module, name, nn.MaxPool2d(child.kernel_size, child.stride, child.padding, child.dilation,
                                               child.return_indices, child.ceil_mode))
        else:
            _plain_pools(child)
    return module


def train_many(
    models: Sequence["torch.nn.Module"],
    x: "torch.Tensor",
    y: "torch.Tensor",
    recipes: Sequence[Recipe],
    gens: Sequence["torch.Generator"],
    *,
    augments: Sequence[Callable | None] | None = None,
    device: str = "cpu",
    desc: str = "train (stacked)",
    show_progress: bool = True,
) -> list["torch.nn.Module"]:
    """Train each ``models[i]`` in place on (x, y) with ``recipes[i]`` and ``gens[i]``, all at once;
    returns the models (last iterates, eval mode), each as ``training.train(models[i], x, y,
    recipes[i], gens[i], augment=augments[i])`` would leave it, up to float reordering.

    :param augments: each member's ``augment(xb, gen)``; default the one its recipe names.
    """
    import torch
    import torch.nn.functional as F
    from torch.func import functional_call, vmap

    m = len(models)
    if not (len(recipes) == len(gens) == m) or (augments is not None and len(augments) != m):
        raise ValueError(f"train_many: {m} models, {len(recipes)} recipes, {len(gens)} generators"
                         + (f", {len(augments)} augmentations" if augments is not None else "") + "; give one each")
    if m == 0:
        return []
    if len({stack_key(r) for r in recipes}) > 1 or not stackable(recipes[0]):
        raise ValueError("train_many: every recipe must be SGD with one batch size "
                         f"(got {sorted({stack_key(r) for r in recipes})}); train the others apart")
    if augments is None:
        from .augment import recipe_augmentation

        augments = [recipe_augmentation(r) for r in recipes]
    for mod in models:
        mod.to(device).train()
    template = _plain_pools(copy.deepcopy(models[0]))
    names = [k for k, _ in models[0].named_parameters()]
    grad_of = {k: p.requires_grad for k, p in models[0].named_parameters()}
    bnames = [k for k, _ in models[0].named_buffers()]
    params = {k: torch.stack([dict(mod.named_parameters())[k].detach() for mod in models])
              .requires_grad_(grad_of[k]) for k in names}
    buffers = {k: torch.stack([dict(mod.named_buffers())[k] for mod in models]) for k in bnames}
    moms: dict[str, "torch.Tensor"] = {}

    n = len(x)
    batch = int(recipes[0].batch)
    spe = math.ceil(n / batch)
    totals = [int(r.epochs) * spe for r in recipes]
    live = list(range(m))  # members still training, in stack order
    on_dev = all(a is None for a in augments) and isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)
    xs, ys = (x.to(device), y.to(device)) if on_dev else (x, y)

    trainable = [k for k in names if grad_of[k]]
    dev = next(iter(params.values())).device

    def per_member(values: list[float]) -> "torch.Tensor":
        return torch.tensor(values, device=dev)

    def column(v: "torch.Tensor", like: "torch.Tensor") -> "torch.Tensor":
        """A per-member value, broadcast over one stacked tensor's member dimension."""
        return v.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def forward(p, b, xb):
        return functional_call(template, (p, b), (xb,))

    def retire(done: list[int]) -> None:
        """Write the members at stack positions ``done`` back into their models, and drop them."""
        nonlocal params, buffers, moms, live
        with torch.no_grad():
            for pos in done:
                mod = models[live[pos]]
                for k, p in mod.named_parameters():
                    p.copy_(params[k][pos])
                for k, b in mod.named_buffers():
                    b.copy_(buffers[k][pos])
        keep = [pos for pos in range(len(live)) if pos not in done]
        if not keep:
            live = []
            return
        sel = torch.tensor(keep, device=dev)
        params = {k: v.detach().index_select(0, sel).requires_grad_(grad_of[k]) for k, v in params.items()}
        buffers = {k: v.index_select(0, sel) for k, v in buffers.items()}
        moms = {k: v.index_select(0, sel) for k, v in moms.items()}
        live = [live[pos] for pos in keep]

    step = 0
    with progress.bar(max(totals) if show_progress else 0, desc, unit="step") as pbar:
        for epoch in range(max(int(r.epochs) for r in recipes)):
            done = [pos for pos, i in enumerate(live) if int(recipes[i].epochs) <= epoch]
            if done:
                retire(done)
            rs = [recipes[i] for i in live]  # what stays fixed while the stack does
            wds, mus = per_member([float(r.wd) for r in rs]), per_member([float(r.momentum) for r in rs])
            clip = [float(r.grad_clip) for r in rs]
            orders = []
            for i in live:  # each member's own permutation, drawn where train draws it
                o = torch.randperm(n, generator=gens[i])
                orders.append(o.to(device) if on_dev else o)
            for b in range(spe):
                xbs, ybs = [], []
                for pos, i in enumerate(live):
                    idx = orders[pos][b * batch:(b + 1) * batch]
                    xb, yb = xs[idx], ys[idx]
                    if augments[i] is not None:
                        xb = augments[i](xb, gens[i])
                    xbs.append(xb.to(device))
                    ybs.append(yb.to(device))
                out = vmap(forward, in_dims=(0, 0, 0))(params, buffers, torch.stack(xbs))
                # one loss per member, each the mean over its own batch: the sum's gradient with respect
                # to member i's weights is exactly its own loss's
                loss = sum(F.cross_entropy(out[pos], ybs[pos], label_smoothing=recipes[i].label_smoothing)
                           for pos, i in enumerate(live))
                grads = torch.autograd.grad(loss, [params[k] for k in trainable])
                lrs = per_member([lr_at(r, step, totals[i], spe) for r, i in zip(rs, live)])
                with torch.no_grad():
                    if any(clip):  # clip_grad_norm_ per member: its norm over all its trainable parameters
                        norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads]).norm(dim=0)
                        coef = (per_member([c or math.inf for c in clip]) / (norms + 1e-6)).clamp(max=1.0)
                        grads = tuple(g * column(coef, g) for g in grads)
                    for k, g in zip(trainable, grads):  # torch.optim.SGD, one column per member
                        p = params[k]
                        d = g + column(wds, p) * p
                        if k in moms:
                            moms[k].mul_(column(mus, p)).add_(d)
                        else:  # the first step: the buffer is the step's gradient (torch's clone)
                            moms[k] = d.clone()
                        p.sub_(column(lrs, p) * moms[k])
                step += 1
                pbar.update(1)
    retire(list(range(len(live))))
    for mod in models:
        mod.eval()
    return list(models)
