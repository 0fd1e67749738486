"""Train-time augmentations (unlearnbench.augment): the CPU pools' translation (PROTOCOL §6.3 v2).
crop_flip and the CIFAR-10 recipe are tests/scenarios/test_cifar10.py's."""
from __future__ import annotations

import pytest
import torch

from unlearnbench.augment import augmentation, translate


def _shifted(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """img (C, H, W) moved down by dy and right by dx, zeros in: the reference, by slicing."""
    out = torch.zeros_like(img)
    h, w = img.shape[-2:]
    out[:, max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)] = \
        img[:, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    return out


@pytest.mark.parametrize("shift", [1, 2])
def test_translate_moves_each_image_by_its_own_offset_with_zeros_in(shift):
    x = torch.rand(64, 2, 8, 9) + 0.5  # no zero pixels: every zero in the output is fill
    g = torch.Generator().manual_seed(3)
    replay = torch.Generator().manual_seed(3)
    out = translate(x, g, shift)
    dy = torch.randint(-shift, shift + 1, (64,), generator=replay)  # drawn as translate draws: dy, then dx
    dx = torch.randint(-shift, shift + 1, (64,), generator=replay)
    assert out.shape == x.shape and out.dtype == x.dtype
    for i in range(64):
        assert torch.equal(out[i], _shifted(x[i], int(dy[i]), int(dx[i]))), (i, int(dy[i]), int(dx[i]))
    assert set(dy.tolist()) == set(range(-shift, shift + 1)) == set(dx.tolist())  # every offset occurs
    assert torch.equal(translate(x, torch.Generator().manual_seed(3), shift), out)  # same generator, same batch
    assert not torch.equal(translate(x, torch.Generator().manual_seed(4), shift), out)
    assert torch.equal(g.get_state(), replay.get_state())  # it drew exactly the offsets, nothing else


def test_translate_by_zero_is_the_identity():
    x = torch.rand(5, 1, 8, 8)
    assert torch.equal(translate(x, torch.Generator().manual_seed(0), 0), x)


def test_the_cpu_pools_augmentations_are_named():
    x = torch.rand(4, 1, 8, 8)
    for name, s in (("translate1", 1), ("translate2", 2)):
        a = augmentation(name)(x, torch.Generator().manual_seed(1))
        assert torch.equal(a, translate(x, torch.Generator().manual_seed(1), s))
