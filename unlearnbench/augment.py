"""Train-time augmentations, named by recipes (``Recipe.augment``; PROTOCOL §2.1, §6.3).

An augmentation maps a host batch ``(N, C, H, W)`` in [0, 1] and the training generator to a
batch of the same shape. Its randomness comes from that generator only, so a trial's
training is replayed exactly: same order stream, same crops, same flips.

Names the protocol uses but the suite cannot run yet (``rrc_flip``: CUB and Swin-T;
``clip_rrc``, ``clip_randaug``: CLIP) raise a clear error instead of training without them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from .errors import ConfigError, unknown

if TYPE_CHECKING:
    import torch

Augment = Callable[["torch.Tensor", "torch.Generator"], "torch.Tensor"]

PLANNED = {
    "rrc_flip": "RandomResizedCrop 224 + HFlip (CUB-200, Swin-T)",
    "clip_rrc": "CLIP's RandomResizedCrop preprocessing",
    "clip_randaug": "CLIP preprocessing with RandAugment",
}


def crop_flip(xb: "torch.Tensor", gen: "torch.Generator", pad: int = 4) -> "torch.Tensor":
    """RandomCrop(size, padding=pad) with zero fill, then RandomHorizontalFlip(0.5), per image.

    torchvision's CIFAR transform pair [SAL], done for the whole batch in one gather: the
    offsets and flips are drawn from ``gen`` (offsets first, then flips) before any pixel moves.
    """
    import torch
    import torch.nn.functional as F

    n, c, h, w = xb.shape
    padded = F.pad(xb, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    rows = oy[:, None] + torch.arange(h)[None, :]  # (n, h)
    cols = torch.arange(w)[None, :].expand(n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + ox[:, None]  # a flip reverses the crop's columns
    return padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


AUGMENTS: dict[str, Augment | None] = {"none": None, "crop_flip": crop_flip}


def augmentation(name: str) -> Augment | None:
    """The callable for a recipe's ``augment`` name (None for "none")."""
    if name in AUGMENTS:
        return AUGMENTS[name]
    if name in PLANNED:
        raise ConfigError(f"augmentation {name!r} ({PLANNED[name]}) is specified in PROTOCOL but not implemented "
                          f"yet; the suite can train with: {', '.join(sorted(AUGMENTS))}")
    raise unknown("augmentation", name, list(AUGMENTS) + list(PLANNED))
