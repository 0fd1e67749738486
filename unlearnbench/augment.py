"""Train-time augmentations, named by recipes (``Recipe.augment``; PROTOCOL §2.1, §6.3).

An augmentation maps a host batch ``(N, C, H, W)`` in [0, 1] and the training generator to a
batch of the same shape. Its randomness comes from that generator only, so a trial's
training is replayed exactly: same order stream, same crops, same flips.

A recipe with ``randaug_n > 0`` adds timm's RandAugment (``rand-m{M}-n{N}-mstd0.5``) after its
named augmentation, per image; timm draws from Python's and NumPy's global generators, so each
image reseeds them from the training generator (and their state is restored afterwards): the
draws stay replayable and nothing else's randomness is disturbed.

Where the batch lives (issue 20, PROTOCOL §2.1, §6.3): the crop + flip, the translations and the
random resized crop are ``tensor_op``s. They draw their offsets, flips and crop boxes from the CPU
generator on the host, in the order they always did (a few integers per image), and then move the
pixels wherever the batch already is, with tensor ops. The training loop then keeps the data on
the device and never copies a batch from the host. The crop + flip and the translations are one
gather each, so on a GPU they give the same bits as on the host; on CPU every augmentation gives
exactly the images it gave before (tests/test_device_augment.py).
"""
from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Callable, Mapping

from .errors import ConfigError, unknown

if TYPE_CHECKING:
    import torch

Augment = Callable[["torch.Tensor", "torch.Generator"], "torch.Tensor"]


def tensor_op(fn):
    """Mark an augmentation as one that runs where its batch is (the training loop may then keep
    the data on the device): it draws only from the generator it is given, on the host, and touches
    pixels with tensor ops alone (no PIL, no NumPy)."""
    fn.tensor_op = True
    return fn


def runs_on_device(aug: Augment | None) -> bool:
    """Whether the loop may hand ``aug`` batches that live on the device (``tensor_op``)."""
    return aug is None or bool(getattr(aug, "tensor_op", False))


def _to(t: "torch.Tensor", device) -> "torch.Tensor":
    """A small host tensor of draws, on ``device``: from pinned memory on CUDA, so the copy is queued
    behind the running step instead of waiting for it; on CPU the tensor itself."""
    if device.type == "cpu":
        return t
    if device.type == "cuda":
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


@tensor_op
def crop_flip(xb: "torch.Tensor", gen: "torch.Generator", pad: int = 4) -> "torch.Tensor":
    """RandomCrop(size, padding=pad) with zero fill, then RandomHorizontalFlip(0.5), per image.

    torchvision's CIFAR transform pair [SAL], done for the whole batch in one gather: the
    offsets and flips are drawn from ``gen`` (offsets first, then flips) before any pixel moves.
    """
    import torch
    import torch.nn.functional as F

    n, c, h, w = xb.shape
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    dev = xb.device  # the draws are the host's (the generator's); the pixels move where the batch is
    if dev.type != "cpu":
        oy, ox, flip = _to(torch.stack([oy, ox, flip.long()]), dev).unbind(0)
    padded = F.pad(xb, (pad, pad, pad, pad))
    rows = oy[:, None] + torch.arange(h, device=dev)[None, :]  # (n, h)
    cols = torch.arange(w, device=dev)[None, :].expand(n, w)
    cols = torch.where(flip.bool()[:, None], cols.flip(1), cols) + ox[:, None]  # a flip reverses the crop's columns
    return padded[torch.arange(n, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


@tensor_op
def translate(xb: "torch.Tensor", gen: "torch.Generator", shift: int = 1) -> "torch.Tensor":
    """Each image moved by its own (dx, dy), each uniform in {-shift, ..., shift}, zero fill, no flip:
    the CPU pools' augmentation (PROTOCOL §6.3 v2; ``translate1`` for digits, ``translate2`` for fmnist).

    Image i becomes ``out[i, :, r, c] = xb[i, :, r - dy_i, c - dx_i]`` (0 where that falls outside):
    content moves right by dx and down by dy. The offsets are drawn from ``gen`` (all dy, then all dx)
    and applied in one gather over the zero-padded batch, as ``crop_flip`` does.
    """
    import torch
    import torch.nn.functional as F

    n, c, h, w = xb.shape
    dy = torch.randint(-shift, shift + 1, (n,), generator=gen)
    dx = torch.randint(-shift, shift + 1, (n,), generator=gen)
    dev = xb.device
    if dev.type != "cpu":
        dy, dx = _to(torch.stack([dy, dx]), dev).unbind(0)
    padded = F.pad(xb, (shift, shift, shift, shift))  # padded[r + s, c + s] = xb[r, c]
    rows = (shift - dy)[:, None] + torch.arange(h, device=dev)[None, :]  # (n, h): r - dy + s
    cols = (shift - dx)[:, None] + torch.arange(w, device=dev)[None, :]  # (n, w)
    return padded[torch.arange(n, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
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


def _float(xb: "torch.Tensor") -> "torch.Tensor":
    return xb if xb.is_floating_point() else xb.float().div(255.0)


def random_resized_crop(xb: "torch.Tensor", gen: "torch.Generator", scale, modes, flip: bool,
                        size: int | None = None) -> "torch.Tensor":
    """RandomResizedCrop per image, resized back to the input's size, or to ``size`` x ``size``
    (torchvision's ``RandomResizedCrop(size)`` on an image smaller than the network's input: CIFAR-10
    at 32 px for a 224-px Swin-T, PROTOCOL §2.1), then HFlip 0.5 when ``flip``. The crop box, the
    interpolation mode and the flip are drawn on the host from ``gen``; the crop is resized where the
    batch is (on a GPU, one antialiased resize per image, launched from here and run there; the host
    draws a few numbers per image and waits for none)."""
    import torch
    import torch.nn.functional as F

    xb = _float(xb)
    n, c, h, w = xb.shape
    oh, ow = (h, w) if size is None else (size, size)
    out = torch.empty_like(xb) if size is None else xb.new_empty((n, c, oh, ow))
    for i in range(n):
        top, left, ch, cw = rrc_params(h, w, gen, scale=scale)
        mode = modes[int(torch.randint(0, len(modes), (1,), generator=gen).item())] if len(modes) > 1 else modes[0]
        crop = xb[i:i + 1, :, top:top + ch, left:left + cw]
        img = F.interpolate(crop, size=(oh, ow), mode=mode, align_corners=False, antialias=True)[0]
        if mode == "bicubic":  # bicubic overshoots [0, 1]; bilinear weights are convex
            img = img.clamp_(0, 1)
        if flip and torch.rand(1, generator=gen).item() < 0.5:
            img = img.flip(-1)
        out[i] = img
    return out


@tensor_op
def rrc_flip(xb: "torch.Tensor", gen: "torch.Generator") -> "torch.Tensor":
    """RandomResizedCrop back to the input size (bilinear, antialiased), then RandomHorizontalFlip,
    per image: the CUB-200 train transform [PROTOCOL §2.1]. The scenario stores images at the
    network's input size, so the crop is taken from that stored image [OURS]."""
    return random_resized_crop(xb, gen, (0.08, 1.0), ("bilinear",), flip=True)


def _posterize_compat(img, bits_to_keep, **kw):
    """timm's Posterize draws 0 bits at low magnitudes. Pillow used to turn that into a black image
    (mask 0) and now raises; this keeps the old result, which [NM]'s runs got."""
    from timm.data.auto_augment import posterize

    if bits_to_keep < 1:
        return img.point(lambda _: 0)
    return posterize(img, bits_to_keep, **kw)


def rand_augment(n: int, m: int, mean=(0.48145466, 0.4578275, 0.40821073)) -> Augment:
    """timm's ``rand-m{m}-n{n}-mstd0.5`` on each image (PIL), seeded per image from ``gen``."""
    import random

    import numpy as np
    import torch

    try:
        from PIL import Image
        from timm.data.auto_augment import posterize as timm_posterize
        from timm.data.auto_augment import rand_augment_transform
    except ImportError:
        raise ConfigError("RandAugment needs timm and Pillow: pip install 'unlearnbench[clip]'") from None
    cache: dict[int, object] = {}

    def ra_for(size: int):
        if size not in cache:  # timm's defaults for its train transform: translate 45% of the side, fill = mean
            ra = rand_augment_transform(f"rand-m{m}-n{n}-mstd0.5", {
                "translate_const": int(size * 0.45), "img_mean": tuple(min(255, round(255 * c)) for c in mean)})
            for op in ra.ops:
                if op.aug_fn is timm_posterize:
                    op.aug_fn = _posterize_compat
            cache[size] = ra
        return cache[size]

    def apply(xb: "torch.Tensor", gen: "torch.Generator") -> "torch.Tensor":
        xb = _float(xb)
        if xb.shape[1] == 1:  # grey (MNIST) becomes RGB first, as [NM] converts it (PROTOCOL §6.1); timm fills
            xb = xb.expand(-1, 3, -1, -1)  # rotations with the RGB mean, which a one-band image cannot take
        ra = ra_for(min(xb.shape[-2:]))
        seeds = torch.randint(0, 2 ** 31 - 1, (len(xb),), generator=gen).tolist()
        py_state, np_state = random.getstate(), np.random.get_state()
        out = torch.empty_like(xb)
        try:
            for i, s in enumerate(seeds):
                random.seed(s)
                np.random.seed(s)
                arr = (xb[i].clamp(0, 1) * 255).round().to(torch.uint8)
                img = Image.fromarray(arr.permute(1, 2, 0).contiguous().numpy())
                res = torch.from_numpy(np.asarray(ra(img)).copy())
                out[i] = res.permute(2, 0, 1).float().div_(255.0)
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
        return out

    return apply


# The named augmentations every task has; a scenario adds its own (``Task.augmentations``).
# translateS: the CPU pools' ±S px translation (PROTOCOL §6.3 v2): the name is in each member's recipe,
# so in its store key.
AUGMENTS: dict[str, Augment | None] = {"none": None, "crop_flip": crop_flip, "rrc_flip": rrc_flip,
                                       "translate1": tensor_op(partial(translate, shift=1)),
                                       "translate2": tensor_op(partial(translate, shift=2))}


def recipe_augmentation(recipe, extra: Mapping[str, Augment | None] | None = None) -> Augment | None:
    """The recipe's named augmentation, followed by RandAugment when ``randaug_n > 0``; ``extra``
    holds the names a scenario adds (``Task.augmentations``)."""
    base = augmentation(recipe.augment, extra)
    if not recipe.randaug_n:
        return base
    ra = rand_augment(recipe.randaug_n, recipe.randaug_m)
    if base is None:
        return ra
    return lambda xb, gen: ra(base(xb, gen), gen)


def augmentation(name: str, extra: Mapping[str, Augment | None] | None = None) -> Augment | None:
    """The callable for a recipe's ``augment`` name (None for "none"): the suite's, or ``extra``'s."""
    table = {**AUGMENTS, **(extra or {})}
    if name in table:
        return table[name]
    raise unknown("augmentation", name, list(table))
