"""CIFAR-10 (PROTOCOL §1.1, §2.1) on small files written in both native formats, the CIFAR
ResNet-18, and the crop-and-flip augmentation its recipe names."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from unlearnbench.errors import ConfigError, DataNotFound

from helpers import scen_cfg, write_tar, write_tree
from unlearnbench.scenarios import cifar10

BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
REAL = cifar10.DEFINITION


@pytest.fixture(autouse=True)
def small_sets(monkeypatch):
    """This module's files are small: the loader checks them without CIFAR-10's counts
    (test_cifar10_real_definition_refuses_a_small_set shows the real check)."""
    monkeypatch.setattr(cifar10, "DEFINITION", REAL.small())


def fake_cifar(per_batch=20, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for b in BATCHES:
        n = n_test if b == "test_batch" else per_batch
        out.append((b, rng.integers(0, 256, (n, 3072), dtype=np.uint8), (np.arange(n) % 10).tolist()))
    return out


def batch_bytes(fmt, x, labels):
    if fmt == "bin":
        return np.concatenate([np.asarray(labels, dtype=np.uint8)[:, None], x], axis=1).tobytes()
    # as the CIFAR page releases them: a protocol-2 pickled dict (written by Python 2 with str keys)
    return pickle.dumps({"batch_label": "fake", "labels": labels, "data": x,
                         "filenames": [f"img{i}.png" for i in range(len(labels))]}, protocol=2)


def write_cifar(root, fmt="py", archive=False, data=None):
    data = data or fake_cifar()
    folder = f"cifar-10-batches-{fmt}"
    suffix = ".bin" if fmt == "bin" else ""
    files = {f"{folder}/{b}{suffix}": batch_bytes(fmt, x, y) for b, x, y in data}
    if archive:
        name = "cifar-10-python.tar.gz" if fmt == "py" else "cifar-10-binary.tar.gz"
        return write_tar(root / name, files)
    write_tree(root, files)
    return root / folder


@pytest.mark.parametrize("fmt,archive", [("py", False), ("bin", False), ("py", True), ("bin", True)])
def test_cifar10_loader_native_formats(host, tmp_path, fmt, archive):
    data = fake_cifar()
    write_cifar(tmp_path, fmt, archive, data)
    scen, cfg = scen_cfg(host, "cifar10-10pct")
    t = scen.build_task(cfg, 0, str(tmp_path))
    assert t.data.x.shape == (120, 3, 32, 32) and t.data.x.dtype == torch.float32
    s = t.manifest["sizes"]
    assert (s["train"], s["val"], s["test"], s["forget"]) == (90, 10, 20, 9)  # 10% val, official test, ⌊0.1·90⌋
    assert min(t.manifest["splits"]["test"]) == 100  # test indices are the official test batch
    # CIFAR stores each image as R, G, B planes, row-major: pixel (c, i, j) is byte c·1024 + 32·i + j
    x1 = data[1][1]  # data_batch_2
    assert float(t.data.x[20, 2, 5, 7]) == pytest.approx(x1[0, 2 * 1024 + 5 * 32 + 7] / 255.0)
    assert t.data.y[20:40].tolist() == data[1][2]


def test_cifar10_formats_share_fingerprint_and_manifest(host, tmp_path):
    """The python and the binary release of the same images are one data set: same manifest hash,
    so models stored from one are reused with the other."""
    hashes = []
    for fmt, archive in (("py", False), ("bin", True)):
        root = tmp_path / f"{fmt}{archive}"
        root.mkdir()
        write_cifar(root, fmt, archive)
        scen, cfg = scen_cfg(host, "cifar10-class")
        hashes.append(scen.build_task(cfg, 1, str(root)).manifest_hash)
    assert hashes[0] == hashes[1]


def test_cifar10_scenarios_forget_sets(host, tmp_path):
    write_cifar(tmp_path, "py")
    scen, cfg = scen_cfg(host, "cifar10-50pct")
    assert cfg.forget_pct == 50.0
    assert scen.build_task(cfg, 0, str(tmp_path)).manifest["sizes"]["forget"] == 45  # ⌊0.5·90⌋
    scen, cfg = scen_cfg(host, "cifar10-class")
    t = scen.build_task(cfg, 0, str(tmp_path))
    y, sp = t.data.y.numpy(), t.manifest["splits"]
    assert set(y[sp["forget"]]) == {0} and len(sp["forget"]) == int((y[sp["train"]] == 0).sum())
    assert 0 not in set(y[sp["test"]]) and set(y[sp["test_forget_class"]]) == {0}
    assert scen.build_task(cfg, 0, str(tmp_path)).manifest["sizes"]["train"] == 90


def test_cifar10_missing_says_where(host, tmp_path):
    scen, cfg = scen_cfg(host, "cifar10-10pct")
    with pytest.raises(DataNotFound, match="cifar-10-python.tar.gz.*--data-root"):
        scen.build_task(cfg, 0, str(tmp_path))


def test_cifar10_truncated_binary_detected(host, tmp_path):
    d = write_cifar(tmp_path, "bin")
    p = d / "data_batch_3.bin"
    p.write_bytes(p.read_bytes()[:-100])
    scen, cfg = scen_cfg(host, "cifar10-10pct")
    with pytest.raises(DataNotFound, match="data_batch_3.bin is truncated"):
        scen.build_task(cfg, 0, str(tmp_path))


class _Payload:
    """A pickle that, if loaded by plain pickle, would create ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_cifar10_pickle_cannot_run_code(host, tmp_path):
    d = write_cifar(tmp_path, "py")
    marker = tmp_path / "pwned"
    (d / "data_batch_1").write_bytes(pickle.dumps({"data": _Payload(marker), "labels": [0]}, protocol=2))
    scen, cfg = scen_cfg(host, "cifar10-10pct")
    with pytest.raises(DataNotFound, match="not part of a CIFAR batch"):
        scen.build_task(cfg, 0, str(tmp_path))
    assert not marker.exists()


def test_cifar10_incomplete_archive_detected(host, tmp_path):
    arch = write_cifar(tmp_path, "py", archive=True)
    raw = arch.read_bytes()
    arch.write_bytes(raw[: len(raw) // 2])
    scen, cfg = scen_cfg(host, "cifar10-10pct")
    with pytest.raises(DataNotFound, match="not a complete CIFAR-10 archive"):
        scen.build_task(cfg, 0, str(tmp_path))


def test_cifar10_bad_labels_detected(host, tmp_path):
    data = fake_cifar()
    b, x, y = data[0]
    data[0] = (b, x, [12] + y[1:])
    write_cifar(tmp_path, "bin", data=data)
    scen, cfg = scen_cfg(host, "cifar10-10pct")
    with pytest.raises(DataNotFound, match="data_batch_1.bin: CIFAR-10 labels must run 0..9, found largest label 12"):
        scen.build_task(cfg, 0, str(tmp_path))


def test_cifar10_real_definition_refuses_a_small_set(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar10, "DEFINITION", REAL)
    write_cifar(tmp_path, "py")
    with pytest.raises(DataNotFound, match="data_batch_5: expected 50,000 train images for CIFAR-10, found 100"):
        cifar10.load(str(tmp_path))


# -- the model ---------------------------------------------------------------------------------

def test_resnet18_cifar_shape_and_init():
    from unlearnbench.models import build_model
    from unlearnbench.taskvec import param_keys

    torch.manual_seed(0)
    m = build_model("resnet18-cifar", 10, 3)
    assert sum(p.numel() for p in m.parameters()) == 11_173_962  # [SAL]'s CIFAR ResNet-18
    assert m(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    keys = param_keys(m)
    assert "normalize.mean" not in keys and "conv1.weight" in keys and "fc.weight" in keys  # buffers stay out of τ
    assert m.conv1.stride == (1, 1) and m.conv1.kernel_size == (3, 3)  # CIFAR stem, no max-pool
    assert not any(isinstance(x, torch.nn.MaxPool2d) for x in m.modules())
    w = m.layer3[0].conv2.weight  # kaiming-normal, fan_out = 256·9
    assert float(w.detach().std()) == pytest.approx((2 / (256 * 9)) ** 0.5, rel=0.05)
    assert bool((m.layer2[1].bn1.weight == 1).all() and (m.layer2[1].bn1.bias == 0).all())
    # normalisation is inside the model: a constant image at the CIFAR mean enters the stem as zeros
    from unlearnbench.models import CIFAR10_MEAN

    mean_img = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1).expand(1, 3, 32, 32)
    assert float(m.normalize(mean_img).abs().max()) < 1e-6
    with pytest.raises(ValueError, match="in_channels=3"):
        build_model("resnet18-cifar", 10, 1)


# -- crop and flip -----------------------------------------------------------------------------

def test_crop_flip_is_torchvisions_transform_replayed_from_the_generator():
    from unlearnbench.augment import crop_flip

    x = torch.rand(64, 3, 32, 32)
    out = crop_flip(x, torch.Generator().manual_seed(5))
    again = crop_flip(x, torch.Generator().manual_seed(5))
    assert out.shape == x.shape and torch.equal(out, again)
    g = torch.Generator().manual_seed(5)  # replay the draws: offsets (y, then x), then flips
    oy, ox = torch.randint(0, 9, (64,), generator=g), torch.randint(0, 9, (64,), generator=g)
    flip = torch.rand(64, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(64):
        ref = padded[i, :, oy[i]:oy[i] + 32, ox[i]:ox[i] + 32]
        assert torch.equal(out[i], ref.flip(-1) if flip[i] else ref)
    assert 10 < int(flip.sum()) < 54 and len(set(oy.tolist())) > 4  # both flips and many offsets occur


def test_recipe_augment_reaches_the_training_loop():
    from unlearnbench.models import build_model
    from unlearnbench.recipe import Recipe
    from unlearnbench.training import train

    x, y = torch.rand(16, 3, 32, 32), torch.arange(16) % 10

    def trained(augment):
        torch.manual_seed(0)
        m = build_model("resnet18-cifar", 10, 3)
        rec = Recipe(epochs=1, batch=8, lr=0.01, schedule="constant", augment=augment)
        train(m, x, y, rec, torch.Generator().manual_seed(0), show_progress=False)
        return m.fc.weight.detach().clone()

    plain, aug = trained("none"), trained("crop_flip")
    assert not torch.equal(plain, aug)  # the recipe's crop_flip was applied
    assert torch.equal(aug, trained("crop_flip"))  # and replayed exactly
    with pytest.raises(ConfigError, match="crop_flip"):
        trained("crop_flp")
    assert not torch.equal(aug, trained("rrc_flip"))  # another named augmentation, another result


def test_cifar10_recipe_is_the_reference_one(host):
    scen, _ = scen_cfg(host, "cifar10-10pct")
    r = scen.recipe
    assert (r.epochs, r.batch, r.lr, r.schedule, r.milestones, r.augment) == (182, 256, 0.1, "multistep", (91, 136),
                                                                              "crop_flip")
    assert scen.pools["default"].base.augment == "crop_flip" and len(scen.pools["default"]) == 27


def test_cifar10_vgg16_scenario(host, tmp_path):
    from unlearnbench.models import build_model

    write_cifar(tmp_path, "bin")
    scen, cfg = scen_cfg(host, "cifar10-vgg16-10pct")
    t = scen.build_task(cfg, 0, str(tmp_path))
    assert t.arch == "vgg16-bn-cifar" and t.recipe == scen_cfg(host, "cifar10-10pct")[0].recipe  # "as resnet18"
    pool = t.pools["default"]
    assert (pool.base.lr, pool.base.batch, len(pool)) == (0.01, 64, 27)  # PROTOCOL §6.3 [P App. A]
    m = build_model("vgg16-bn-cifar", 10, 3)
    assert sum(p.numel() for p in m.parameters()) == 14_728_266
    assert m(t.data.x[:2]).shape == (2, 10)
    assert sum(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules()) == 13  # 13 convs, each with BN


def test_gpu_scale_scenarios_warn_on_cpu(host):
    from unlearnbench.runner import gpu_scale_warning

    for name in ("cifar10-10pct", "cifar10-vgg16-10pct", "tinyimagenet-class", "cub200-10pct"):
        scen = host.scenarios.get(name)
        assert "device=cuda" in gpu_scale_warning(scen, "cpu") and gpu_scale_warning(scen, "cuda:0") is None
    assert gpu_scale_warning(host.scenarios.get("fmnist-10pct"), "cpu") is None
