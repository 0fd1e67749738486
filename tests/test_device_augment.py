"""The GPU training path, checked on CPU (issue 20, acceptance 5): the device-side augmentations give
exactly the images the host ones gave, the loop's device path trains the same bits, ``-o amp=bf16``
is opt-in, recorded, keyed and hashed only when set, and channels-last is used where it helps."""
from __future__ import annotations

import hashlib

import pytest
import torch
from torch import nn

from unlearnbench.augment import AUGMENTS, runs_on_device, tensor_op
from unlearnbench.recipe import Recipe
from unlearnbench.training import train, uses_channels_last


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


def test_bf16_is_opt_in_and_trains_other_weights_in_fp32():
    x, y = _batch((16, 3, 8, 8)), torch.randint(0, 4, (16,), generator=torch.Generator().manual_seed(2))
    recipe = Recipe(epochs=1, batch=8, lr=0.1, schedule="constant")

    def run(**kw):
        m = train(_conv(), x, y, recipe, torch.Generator().manual_seed(0), show_progress=False, **kw)
        return {k: v.clone() for k, v in m.state_dict().items()}

    fp32, again, bf16 = run(), run(amp="fp32"), run(amp="bf16")
    assert all(torch.equal(fp32[k], again[k]) for k in fp32)  # fp32 is the default
    assert not torch.equal(fp32["0.weight"], bf16["0.weight"])  # autocast ran
    assert all(v.dtype == fp32[k].dtype for k, v in bf16.items())  # the weights stay fp32
    assert all(torch.equal(bf16[k], v) for k, v in run(amp="bf16").items())  # and reproduce
    with pytest.raises(ValueError, match="fp16"):
        run(amp="fp16")


def test_channels_last_only_where_it_helps_and_the_model_leaves_contiguous():
    from unlearnbench.models import build_model

    cnn, vit_like = build_model("cnn-s", 10, 1), nn.Sequential(nn.Conv2d(3, 8, 4, 4), nn.Flatten(), nn.Linear(8, 2))
    assert uses_channels_last(cnn, "cuda", "bf16") and uses_channels_last(cnn, "cuda:1", "bf16")
    assert not uses_channels_last(cnn, "cuda", "fp32")  # fp32 GPU runs keep the committed H200 records' kernels
    assert not uses_channels_last(cnn, "cpu", "bf16") and not uses_channels_last(vit_like, "cuda", "bf16")
    x, y = _batch((8, 3, 8, 8)), torch.randint(0, 4, (8,))
    seen = []

    def loss_fn(m, xb, yb):
        seen.append(xb.is_contiguous(memory_format=torch.channels_last))
        return nn.functional.cross_entropy(m(xb), yb)

    m = train(_conv(), x, y, Recipe(epochs=1, batch=4, lr=0.1), torch.Generator().manual_seed(0),
              channels_last=True, loss_fn=loss_fn, show_progress=False)
    assert seen == [True, True]
    assert all(v.is_contiguous() for v in m.state_dict().values())


def test_amp_is_recorded_hashed_only_when_set_and_keys_the_trained_artifacts(host, tmp_path, monkeypatch):
    import numpy as np

    from unlearnbench import RawData
    from unlearnbench.config import config_hash, resolve
    from unlearnbench.errors import ConfigError
    from unlearnbench.runner import build_task
    from unlearnbench.stages import Stages
    from unlearnbench.store import Store

    default, bf16 = resolve(host), resolve(host, overrides=["amp=bf16"])
    d = default.to_dict()
    assert d["amp"] == "fp32" and bf16.to_dict()["amp"] == "bf16"  # in every record's config
    assert default.hash == config_hash({k: v for k, v in d.items() if k != "amp"})  # as before the key existed
    assert bf16.hash != default.hash and bf16.variant == ["amp=bf16"] and bf16.run_name != default.run_name
    with pytest.raises(ConfigError, match="unknown amp .*'fp16'.*valid: bf16, fp32"):
        resolve(host, overrides=["amp=fp16"])

    raw = RawData(x=torch.rand(200, 1, 8, 8), y=torch.arange(200) % 10, train_pool=np.arange(200), test=None,
                  fingerprint="synthetic", num_classes=10, source="test")
    monkeypatch.setattr(type(default.scenario), "load_raw", lambda self, root: raw)  # not sklearn's digits: fast
    keys = []
    for res in (default, bf16):
        task = build_task(res, 0, None)
        keys.append(Stages(task, Store(tmp_path))._train_spec("train", "original"))
    assert "amp" not in keys[0] and keys[1]["amp"] == "bf16" and task.amp == "bf16"
    assert {k: v for k, v in keys[1].items() if k != "amp"} == keys[0]


def test_tensor_op_marks_a_scenarios_own_augmentation():
    @tensor_op
    def mine(xb, gen):
        return xb

    assert runs_on_device(mine) and mine.tensor_op is True
