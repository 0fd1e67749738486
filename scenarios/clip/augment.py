"""The CLIP pools' train-time geometry (PROTOCOL §6.1-6.2), registered on the CLIP tasks by name."""
from __future__ import annotations

from typing import TYPE_CHECKING

from unlearnbench import random_resized_crop, tensor_op

if TYPE_CHECKING:
    import torch


@tensor_op  # per-image resizes where the batch is (unlearnbench.augment)
def clip_rrc(xb: "torch.Tensor", gen: "torch.Generator") -> "torch.Tensor":
    """The TA config's train transform: RandomResizedCrop(scale 0.9–1, bicubic), no flip [NM], [TTA].
    The crop is resized back to the stored size; the CLIP model resizes to its input [OURS]."""
    return random_resized_crop(xb, gen, (0.9, 1.0), ("bicubic",), flip=False)


@tensor_op
def clip_randaug(xb: "torch.Tensor", gen: "torch.Generator") -> "torch.Tensor":
    """The RandAugment pools' geometry (PROTOCOL §6.1): RandomResizedCrop(scale 0.08–1, bilinear or
    bicubic at random), then HFlip 0.5; the recipe's RandAugment follows."""
    return random_resized_crop(xb, gen, (0.08, 1.0), ("bilinear", "bicubic"), flip=True)


AUGMENTATIONS = {"clip_rrc": clip_rrc, "clip_randaug": clip_randaug}
