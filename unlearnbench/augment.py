"""Train-time augmentations, named by recipes (``Recipe.augment``; PROTOCOL §2.1, §6.3).

An augmentation maps a host batch ``(N, C, H, W)`` in [0, 1] and the training generator to a
batch of the same shape. Its randomness comes from that generator only, so a trial's
training is replayed exactly: same order stream, same crops, same flips.

Names the protocol uses but the suite cannot run yet (``clip_rrc``, ``clip_randaug``: CLIP)
raise a clear error instead of training without them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from .errors import ConfigError, unknown

if TYPE_CHECKING:
    import torch

Augment = Callable[["torch.Tensor", "torch.Generator"], "torch.Tensor"]

PLANNED = {
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


def rrc_params(h: int, w: int, gen: "torch.Generator", scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """(top, left, height, width) of one RandomResizedCrop, by torchvision's algorithm: up to 10
    draws of an area fraction and a log-uniform aspect ratio, else a centre crop at the nearest
    allowed ratio. Every draw comes from ``gen``."""
    import math

    import torch

    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * torch.empty(1).uniform_(scale[0], scale[1], generator=gen).item()
        aspect = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=gen).item())
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (1,), generator=gen).item())
            left = int(torch.randint(0, w - cw + 1, (1,), generator=gen).item())
            return top, left, ch, cw
    in_ratio = w / h
    if in_ratio < min(ratio):
        cw, ch = w, int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        ch, cw = h, int(round(h * max(ratio)))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def rrc_flip(xb: "torch.Tensor", gen: "torch.Generator") -> "torch.Tensor":
    """RandomResizedCrop back to the input size (bilinear, antialiased), then RandomHorizontalFlip,
    per image: the CUB-200 train transform [PROTOCOL §2.1]. The scenario stores images at the
    network's input size, so the crop is taken from that stored image [OURS]."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = xb.shape
    out = torch.empty_like(xb)
    for i in range(n):
        top, left, ch, cw = rrc_params(h, w, gen)
        crop = xb[i:i + 1, :, top:top + ch, left:left + cw]
        img = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0]
        if torch.rand(1, generator=gen).item() < 0.5:
            img = img.flip(-1)
        out[i] = img
    return out


AUGMENTS: dict[str, Augment | None] = {"none": None, "crop_flip": crop_flip, "rrc_flip": rrc_flip}


def augmentation(name: str) -> Augment | None:
    """The callable for a recipe's ``augment`` name (None for "none")."""
    if name in AUGMENTS:
        return AUGMENTS[name]
    if name in PLANNED:
        raise ConfigError(f"augmentation {name!r} ({PLANNED[name]}) is specified in PROTOCOL but not implemented "
                          f"yet; the suite can train with: {', '.join(sorted(AUGMENTS))}")
    raise unknown("augmentation", name, list(AUGMENTS) + list(PLANNED))
