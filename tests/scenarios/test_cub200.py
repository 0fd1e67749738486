"""CUB-200-2011 (PROTOCOL §1.1, §2.1) on a small release written in its native layout, the
ImageNet weights it starts from, and the RandomResizedCrop + flip its recipe names."""
from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch

from unlearnbench.errors import DataNotFound

from helpers import jpeg, scen_cfg, write_tar, write_tree
from unlearnbench.scenarios import cub200

PIL = pytest.importorskip("PIL.Image")
tv = pytest.importorskip("torchvision")

REAL = cub200.DEFINITION


@pytest.fixture(autouse=True)
def small_sets(monkeypatch):
    """This module's release is small (4 classes): the loader checks it without CUB-200-2011's
    counts and class count (test_cub200_real_definition_refuses_a_small_set shows the real check)."""
    monkeypatch.setattr(cub200, "DEFINITION", REAL.small(classes=None))


CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross", "004.Groove_billed_Ani"]
SIZES = [(300, 200), (200, 260), (500, 375), (256, 256), (240, 320)]  # (w, h): landscape, portrait, square


def release(seed=0):
    rng = np.random.default_rng(seed)
    files, images, labels, split = {}, [], [], []
    k = 0
    for c, cls in enumerate(CLASSES):
        for j, (w, h) in enumerate(SIZES):
            k += 1
            rel = f"{cls}/{cls[4:]}_{j:04d}_{k}.jpg"
            files[f"images/{rel}"] = jpeg(rng, w, h, quality=90)
            images.append(f"{k} {rel}")
            labels.append(f"{k} {c + 1}")
            split.append(f"{k} {1 if j < 3 else 0}")
    files["images.txt"] = ("\n".join(images) + "\n").encode()
    files["image_class_labels.txt"] = ("\n".join(labels) + "\n").encode()
    files["train_test_split.txt"] = ("\n".join(split) + "\n").encode()
    files["classes.txt"] = ("\n".join(f"{i + 1} {c}" for i, c in enumerate(CLASSES)) + "\n").encode()
    return files


def write(root, files, tgz=False):
    if tgz:
        write_tar(root / "CUB_200_2011.tgz", {f"CUB_200_2011/{rel}": raw for rel, raw in files.items()})
        return
    write_tree(root / "CUB_200_2011", files)


@pytest.mark.parametrize("tgz", [False, True])
def test_cub200_loader_native_layout(host, tmp_path, tgz):
    files = release()
    write(tmp_path, files, tgz)
    scen, cfg = scen_cfg(host, "cub200-10pct")
    t = scen.build_task(cfg, 0, str(tmp_path))
    assert t.data.x.shape == (20, 3, 224, 224) and t.data.num_classes == 4
    s = t.manifest["sizes"]
    assert (s["train"] + s["val"], s["val"], s["test"]) == (12, 2, 8)  # official split; 10% of train as val
    assert t.data.y[:12].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]  # official train images first
    # each image is the standard evaluation view: Resize(256) + CenterCrop(224), as torchvision does it
    view = tv.transforms.Compose([tv.transforms.Resize(256), tv.transforms.CenterCrop(224), tv.transforms.PILToTensor()])
    jpgs = [f for f in files if f.startswith("images/")]  # in id order
    order = [f for j, f in enumerate(jpgs) if j % 5 < 3] + [f for j, f in enumerate(jpgs) if j % 5 >= 3]
    for k in (0, 4, 12, 19):  # landscape, portrait (train); square, portrait (test)
        assert torch.equal(t.data.x[k], view(PIL.open(io.BytesIO(files[order[k]]))).float() / 255.0), order[k]


def test_cub200_tgz_and_folder_share_manifests(host, tmp_path):
    files = release()
    hashes = []
    for tgz in (False, True):
        root = tmp_path / str(tgz)
        root.mkdir()
        write(root, files, tgz)
        scen, cfg = scen_cfg(host, "cub200-class")
        hashes.append(scen.build_task(cfg, 0, str(root)).manifest_hash)
    assert hashes[0] == hashes[1]


def test_cub200_missing_and_damaged(host, tmp_path):
    scen, cfg = scen_cfg(host, "cub200-10pct")
    with pytest.raises(DataNotFound, match="CUB_200_2011.tgz.*--data-root"):
        scen.build_task(cfg, 0, str(tmp_path))
    files = release()
    key = next(f for f in files if f.startswith("images/"))
    files[key] = files[key][:100]
    write(tmp_path, files)
    with pytest.raises(DataNotFound, match="not a readable image"):
        scen.build_task(cfg, 0, str(tmp_path))
    files = release()
    files["train_test_split.txt"] = files["train_test_split.txt"].rsplit(b"\n", 2)[0] + b"\n"  # one id short
    write(tmp_path, files)
    with pytest.raises(DataNotFound, match="different image ids"):
        scen.build_task(cfg, 0, str(tmp_path))


# -- the ImageNet weights --------------------------------------------------------------------

def imagenet_file(tmp_path, name, seed, fmt="pth"):
    torch.manual_seed(seed)
    sd = tv.models.resnet18().state_dict()  # torchvision's layout, 1000-way head
    p = tmp_path / name
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(p))
    else:
        torch.save(sd, p)
    return p, sd


def stages_for(host, tmp_path, pretrained):
    from unlearnbench.stages import Stages
    from unlearnbench.store import Store

    data = tmp_path / "data"
    if not data.exists():
        data.mkdir()
        write(data, release())
    scen, cfg = scen_cfg(host, "cub200-10pct", pretrained=pretrained)
    return Stages(scen.build_task(cfg, 0, str(data)), Store(tmp_path / "store"))


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_cub200_init_is_the_imagenet_backbone_with_a_drawn_head(host, tmp_path, fmt):
    p, sd = imagenet_file(tmp_path, f"a.{fmt}", 0, fmt)
    st = stages_for(host, tmp_path, str(p))
    init = st.init_weights()
    assert torch.equal(init["conv1.weight"], sd["conv1.weight"])
    assert torch.equal(init["layer4.1.bn2.running_var"], sd["layer4.1.bn2.running_var"])  # BN statistics too
    assert init["fc.weight"].shape == (4, 512)  # the head is the scenario's, drawn from the init stream
    # another set of weights is another θ_init: its digest is in the store key
    q, _ = imagenet_file(tmp_path, f"b.{fmt}", 1, fmt)
    st2 = stages_for(host, tmp_path, str(q))
    st2.init_weights()
    assert st2.keys["init"] != st.keys["init"]
    assert torch.equal(st2.init_weights()["fc.weight"], init["fc.weight"])  # same trial, same drawn head


class _Payload:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_cub200_weights_file_cannot_run_code(host, tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pth"
    p.write_bytes(pickle.dumps({"conv1.weight": _Payload(marker)}, protocol=2))
    st = stages_for(host, tmp_path, str(p))
    with pytest.raises(DataNotFound, match="not a loadable state dict"):
        st.init_weights()
    assert not marker.exists()


def test_cub200_weights_missing_or_wrong(host, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # an empty hub cache; tests are offline
    st = stages_for(host, tmp_path, "torchvision")
    with pytest.raises(DataNotFound, match="resnet18-f37072fd.pth.*scenario.pretrained=PATH"):
        st.init_weights()
    torch.save({"conv1.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "cifar.pth")
    with pytest.raises(DataNotFound, match="has shape"):
        stages_for(host, tmp_path, str(tmp_path / "cifar.pth")).init_weights()


# -- RandomResizedCrop + flip ------------------------------------------------------------------

def test_cub200_real_definition_refuses_a_small_set(tmp_path, monkeypatch):
    write(tmp_path, release())
    monkeypatch.setattr(cub200, "DEFINITION", REAL)
    with pytest.raises(DataNotFound, match="image_class_labels.txt: expected 200 classes for CUB-200-2011, found 4"):
        cub200.load(str(tmp_path))
    monkeypatch.setattr(cub200, "DEFINITION", REAL.small(classes=None, n_train=5_994))
    with pytest.raises(DataNotFound, match="train_test_split.txt: expected 5,994 train images for CUB-200-2011, "
                                           "found 12"):
        cub200.load(str(tmp_path))


def test_rrc_flip_is_torchvisions_transform_replayed_from_the_generator():
    from torchvision.transforms.v2 import functional as TF

    from unlearnbench.augment import rrc_flip, rrc_params

    x = torch.rand(12, 3, 64, 64)
    out = rrc_flip(x, torch.Generator().manual_seed(3))
    assert out.shape == x.shape and torch.equal(out, rrc_flip(x, torch.Generator().manual_seed(3)))
    g, flips, areas = torch.Generator().manual_seed(3), 0, []
    for i in range(12):  # replay: crop parameters, then the flip draw, image by image
        top, left, h, w = rrc_params(64, 64, g)
        ref = TF.resized_crop(x[i], top, left, h, w, [64, 64], antialias=True)
        if torch.rand(1, generator=g).item() < 0.5:
            ref, flips = ref.flip(-1), flips + 1
        assert torch.allclose(out[i], ref, atol=1e-5), i
        areas.append(h * w / 64 ** 2)
    assert 0 < flips < 12 and min(areas) < 0.5 < max(areas)  # varied crops, both flips
