"""Tiny ImageNet (PROTOCOL §1.1, §2.1) on a small release written in its native layout: JPEGs
in tiny-imagenet-200/{train/<wnid>/images, val/images}, wnids.txt, val_annotations.txt."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch

from unlearnbench.errors import DataNotFound

from helpers import jpeg, scen_cfg, write_tree
from unlearnbench.scenarios import tinyimagenet

PIL = pytest.importorskip("PIL.Image")

WNIDS = ["n04067472", "n01443537", "n02124075", "n09256479"]  # not sorted: class ids follow sorted order


REAL = tinyimagenet.DEFINITION


@pytest.fixture(autouse=True)
def small_sets(monkeypatch):
    """This module's release is small (4 classes): the loader checks it without Tiny ImageNet's
    counts and class count (test_tinyimagenet_real_definition_refuses_a_small_set shows the real check)."""
    monkeypatch.setattr(tinyimagenet, "DEFINITION", REAL.small(classes=None))


def tiny_jpeg(rng, gray=False, side=64):
    return jpeg(rng, side, side, gray=gray, quality=95)


def release(per_class=10, val_per_class=2, seed=0):
    """{relative path: bytes} of a small tiny-imagenet-200 release."""
    rng = np.random.default_rng(seed)
    files = {"wnids.txt": ("\n".join(WNIDS) + "\n").encode(), "words.txt": b"n04067472\treel\n"}
    for w in WNIDS:
        for k in range(per_class):
            files[f"train/{w}/images/{w}_{k}.JPEG"] = tiny_jpeg(rng, gray=(k == 3))
        files[f"train/{w}/{w}_boxes.txt"] = b""
    lines = []
    for k in range(val_per_class * len(WNIDS)):
        name = f"val_{k}.JPEG"
        files[f"val/images/{name}"] = tiny_jpeg(rng)
        lines.append(f"{name}\t{WNIDS[k % len(WNIDS)]}\t0\t0\t63\t63")
    files["val/val_annotations.txt"] = ("\n".join(lines) + "\n").encode()
    return files


def write(root, files, as_zip=False):
    if as_zip:
        with zipfile.ZipFile(root / "tiny-imagenet-200.zip", "w") as zf:
            for rel, raw in files.items():
                zf.writestr(f"tiny-imagenet-200/{rel}", raw)
        return root / "tiny-imagenet-200.zip"
    write_tree(root / "tiny-imagenet-200", files)
    return root / "tiny-imagenet-200"


@pytest.mark.parametrize("as_zip", [False, True])
def test_tinyimagenet_loader_native_layout(host, tmp_path, as_zip):
    files = release()
    write(tmp_path, files, as_zip)
    scen, cfg = scen_cfg(host, "tinyimagenet-10pct")
    t = scen.build_task(cfg, 0, str(tmp_path))
    assert t.data.x.shape == (48, 3, 64, 64) and t.data.num_classes == 4
    s = t.manifest["sizes"]
    assert (s["train"], s["val"], s["test"], s["forget"]) == (36, 4, 8, 3)  # 10% val (1 per class), official val
    y = t.data.y.numpy()
    order = sorted(WNIDS)
    assert y[0] == order.index("n01443537") and (y[:40] == np.repeat(np.arange(4), 10)).all()  # sorted wnids
    assert y[40:].tolist() == [order.index(WNIDS[k % 4]) for k in range(8)]  # val_annotations.txt labels
    # pixels are the decoded JPEG, channels first, in [0, 1]; a grayscale JPEG becomes RGB
    ref = np.asarray(PIL.open(io.BytesIO(files[f"train/{order[1]}/images/{order[1]}_0.JPEG"])).convert("RGB"))
    assert torch.equal(t.data.x[10], torch.from_numpy(ref.transpose(2, 0, 1).copy()).float() / 255.0)
    gray = t.data.x[3]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    m = t.new_model()
    assert m(t.data.x[:2]).shape == (2, 4)


def test_tinyimagenet_zip_and_folder_share_manifests(host, tmp_path):
    files = release()
    hashes = []
    for as_zip in (False, True):
        root = tmp_path / str(as_zip)
        root.mkdir()
        write(root, files, as_zip)
        scen, cfg = scen_cfg(host, "tinyimagenet-class")
        t = scen.build_task(cfg, 2, str(root))
        hashes.append(t.manifest_hash)
    assert hashes[0] == hashes[1]
    assert set(t.data.y.numpy()[t.manifest["splits"]["forget"]]) == {0}


def test_tinyimagenet_missing_says_where(host, tmp_path):
    scen, cfg = scen_cfg(host, "tinyimagenet-10pct")
    with pytest.raises(DataNotFound, match="tiny-imagenet-200.zip.*--data-root"):
        scen.build_task(cfg, 0, str(tmp_path))


@pytest.mark.parametrize("damage,message", [
    ("truncate_jpeg", "not a readable image"),
    ("wrong_size", "Tiny ImageNet images are 64x64"),
    ("unknown_wnid", "not in wnids.txt"),
    ("no_annotations", "lacks val/val_annotations.txt"),
])
def test_tinyimagenet_damage_detected(host, tmp_path, damage, message):
    files = release()
    key = f"train/{WNIDS[2]}/images/{WNIDS[2]}_5.JPEG"
    if damage == "truncate_jpeg":
        files[key] = files[key][:200]
    elif damage == "wrong_size":
        files[key] = tiny_jpeg(np.random.default_rng(1), side=32)
    elif damage == "unknown_wnid":
        files["val/val_annotations.txt"] += b"val_0.JPEG\tn99999999\t0\t0\t1\t1\n"
    else:
        del files["val/val_annotations.txt"]
    write(tmp_path, files)
    scen, cfg = scen_cfg(host, "tinyimagenet-10pct")
    with pytest.raises(DataNotFound, match=message):
        scen.build_task(cfg, 0, str(tmp_path))


def test_tinyimagenet_real_definition_refuses_a_small_set(tmp_path, monkeypatch):
    where = write(tmp_path, release(per_class=2, val_per_class=1))
    monkeypatch.setattr(tinyimagenet, "DEFINITION", REAL)
    with pytest.raises(DataNotFound, match="wnids.txt: expected 200 classes for Tiny ImageNet, found 4"):
        tinyimagenet.load(str(tmp_path))
    monkeypatch.setattr(tinyimagenet, "DEFINITION", REAL.small(classes=None, train_per_class=500))
    with pytest.raises(DataNotFound, match="images: expected 500 train images per class for Tiny ImageNet, found 2"):
        tinyimagenet.load(str(tmp_path))
    monkeypatch.setattr(tinyimagenet, "DEFINITION", REAL.small(classes=None, n_test=10_000))
    with pytest.raises(DataNotFound, match="val_annotations.txt: expected 10,000 test images for Tiny ImageNet, "
                                           "found 4"):
        tinyimagenet.load(str(tmp_path))
    assert where.is_dir()


def test_tinyimagenet_model_and_recipe(host):
    from unlearnbench.models import TINY_MEAN, build_model

    scen, _ = scen_cfg(host, "tinyimagenet-10pct")
    assert scen.arch == "resnet18-tiny" and scen.recipe.augment == "crop_flip" and scen.recipe.epochs == 182
    m = build_model("resnet18-tiny", 200, 3)
    assert sum(p.numel() for p in m.parameters()) == 11_271_432  # CIFAR ResNet-18 with fc 512 -> 200
    mean_img = torch.tensor(TINY_MEAN).view(1, 3, 1, 1).expand(1, 3, 64, 64)
    assert float(m.normalize(mean_img).abs().max()) < 1e-6  # its own statistics, not CIFAR's
