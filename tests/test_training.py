"""The shared training loop (DESIGN: training): a seed fixes the weights bit for bit, the lr
schedules of PROTOCOL §2.1, and what a caller may hook in."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from unlearnbench.recipe import Recipe
from unlearnbench.training import lr_at, train


def tiny(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def data(n=20):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


RECIPE = Recipe(epochs=3, batch=8, lr=0.1, schedule="cosine")


def trained(seed, global_seed=None):
    x, y = data()
    model = tiny()
    if global_seed is not None:
        torch.manual_seed(global_seed)
    model = train(model, x, y, RECIPE, torch.Generator().manual_seed(seed), show_progress=False)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_a_seed_fixes_the_weights_bit_for_bit():
    a, b, c = trained(0), trained(0), trained(1)
    assert all(torch.equal(a[k], b[k]) for k in a)  # BN statistics and num_batches_tracked included
    assert int(a["1.num_batches_tracked"]) == 3 * math.ceil(20 / 8)
    assert not torch.equal(a["0.weight"], c["0.weight"])  # another data order, other weights
    assert not torch.equal(a["0.weight"], tiny().state_dict()["0.weight"])  # it trained


def test_the_global_rng_plays_no_part():
    """Everything random in the loop comes from the generator it is given (the trial's stream)."""
    a, b = trained(0, global_seed=123), trained(0, global_seed=456)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_lr_schedules():
    cos = Recipe(epochs=2, batch=1, lr=0.4, schedule="cosine")
    assert [lr_at(cos, s, 10, 5) for s in (0, 5)] == [0.4, pytest.approx(0.2)]  # to 0, per batch
    assert lr_at(cos, 10, 10, 5) == pytest.approx(0.0, abs=1e-12)
    multi = Recipe(epochs=4, batch=1, lr=0.1, schedule="multistep", milestones=(1, 3))
    assert [lr_at(multi, s, 40, 10) for s in (9, 10, 29, 30)] == [0.1, pytest.approx(0.01), pytest.approx(0.01),
                                                                  pytest.approx(0.001)]  # x0.1 per milestone
    warm = Recipe(epochs=1, batch=1, lr=1.0, schedule="cosine", warmup_steps=4)
    assert [lr_at(warm, s, 14, 14) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]  # linear warmup
    assert lr_at(warm, 9, 14, 14) == pytest.approx(0.5)  # then the cosine over the 10 steps left
    assert lr_at(Recipe(epochs=1, batch=1, lr=0.3, schedule="constant"), 7, 10, 5) == 0.3
    with pytest.raises(ValueError, match="unknown lr schedule"):
        lr_at(Recipe(epochs=1, batch=1, lr=0.3, schedule="step"), 0, 10, 5)


def test_hooks_and_frozen_parameters():
    x, y = data()
    model = tiny()
    model[0].weight.requires_grad_(False)  # frozen: not stepped, so weight decay cannot move it either
    frozen = model[0].weight.detach().clone()
    epochs, steps = [], []
    train(model, x, y, Recipe(epochs=2, batch=8, lr=0.1, wd=0.1), torch.Generator().manual_seed(0),
          on_epoch=epochs.append, after_step=lambda: steps.append(1), show_progress=False)
    assert epochs == [0, 1] and len(steps) == 2 * 3
    assert torch.equal(model[0].weight, frozen) and not model.training  # eval mode on return
    with pytest.raises(ValueError, match="optimizer 'lbfgs' is not supported"):
        train(tiny(), x, y, Recipe(epochs=1, batch=8, lr=0.1, optimizer="lbfgs"), torch.Generator())
