"""The GPU training path, checked on CPU (issue 20, acceptance 5): the device-side augmentations give
exactly the images the host ones gave, and the loop's device path trains the same bits."""
from __future__ import annotations

import hashlib

import pytest
import torch
from torch import nn

from unlearnbench.augment import AUGMENTS, runs_on_device, tensor_op
from unlearnbench.recipe import Recipe
from unlearnbench.training import train


def _batch(shape, seed=7):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=g).float().div_(255.0)


# sha256 (first 16 hex) of each output, and the generator's next draw after it, from the host
# augmentations as they were before the device path (main at 3801758): pure gathers of integer-valued
# pixels, so the same bits on every machine.
GOLDEN = [
    ("crop_flip", (37, 3, 32, 32), "5ea1bf6c1e9a8235", 423544681),
    ("crop_flip", (5, 3, 64, 64), "c30ecfb1a058c72d", 602671971),  # Tiny ImageNet's 64 px
    ("translate1", (41, 1, 8, 8), "4ffc27ddb749a304", 145110823),
    ("translate2", (29, 1, 28, 28), "81e8c49e0c37ab40", 120036567),
]


@pytest.mark.parametrize("name, shape, digest, after", GOLDEN)
def test_each_augmentation_gives_the_images_it_gave_before(name, shape, digest, after):
    g = torch.Generator().manual_seed(123)
    out = AUGMENTS[name](_batch(shape), g)
    assert hashlib.sha256(out.numpy().tobytes()).hexdigest()[:16] == digest
    assert torch.randint(0, 2 ** 31 - 1, (1,), generator=g).item() == after  # it drew what it drew, no more


def test_the_geometric_augmentations_run_on_the_device_and_randaugment_does_not():
    for name in ("crop_flip", "rrc_flip", "translate1", "translate2", "none"):
        assert runs_on_device(AUGMENTS[name]), name
    assert not runs_on_device(lambda xb, gen: xb)  # PIL, NumPy, or anything not marked: batches on the host


def test_randaugment_after_a_device_augmentation_keeps_the_batches_on_the_host(monkeypatch):
    import unlearnbench.augment as A

    monkeypatch.setattr(A, "rand_augment", lambda n, m: lambda xb, gen: xb)  # timm's PIL ops, without timm
    both = A.recipe_augmentation(Recipe(epochs=1, batch=2, lr=0.1, augment="crop_flip", randaug_n=1, randaug_m=1))
    assert not runs_on_device(both)
    assert runs_on_device(A.recipe_augmentation(Recipe(epochs=1, batch=2, lr=0.1, augment="crop_flip")))


def _conv(c=3, classes=4):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(c, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, classes))


@pytest.mark.parametrize("name, shape", [("crop_flip", (3, 12, 12)), ("translate1", (1, 8, 8)),
                                         ("translate2", (1, 10, 10)), ("rrc_flip", (3, 12, 12))])
def test_the_device_path_trains_on_exactly_the_batches_of_the_host_path(name, shape):
    """A tensor_op augmentation keeps the data where the model is; any other callable makes batches on
    the host. The same augmentation both ways: the same batches, the same weights, the same draws."""
    x, y = _batch((22, *shape)), torch.randint(0, 4, (22,), generator=torch.Generator().manual_seed(2))
    recipe = Recipe(epochs=2, batch=8, lr=0.05, schedule="constant")
    aug = AUGMENTS[name]
    host = lambda xb, gen: aug(xb, gen)  # noqa: E731  (not a tensor_op: the host path)
    assert runs_on_device(aug) and not runs_on_device(host)
    runs = []
    for a in (aug, host):
        seen = []

        def loss_fn(m, xb, yb):
            seen.append(xb.clone())
            return nn.functional.cross_entropy(m(xb), yb)

        g = torch.Generator().manual_seed(5)
        m = train(_conv(shape[0]), x, y, recipe, g, augment=a, loss_fn=loss_fn, show_progress=False)
        runs.append((seen, m.state_dict(), g.get_state()))
    (s1, w1, g1), (s2, w2, g2) = runs
    assert len(s1) == 6 and all(torch.equal(a, b) for a, b in zip(s1, s2))
    assert all(torch.equal(w1[k], w2[k]) for k in w1) and torch.equal(g1, g2)
    assert not torch.equal(s1[0], x[:8])  # augmented


def test_tensor_op_marks_a_scenarios_own_augmentation():
    @tensor_op
    def mine(xb, gen):
        return xb

    assert runs_on_device(mine) and mine.tensor_op is True
