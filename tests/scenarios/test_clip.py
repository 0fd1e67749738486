"""CLIP dataset negation (PROTOCOL §1.3, §2.2, §5(a)) on MNIST and ImageNet written in their
native layouts, with a tiny random-init open_clip ViT: the splits, the heads, the frozen
parameters, the recipe, and one NegMerge run from the CLI to run.json."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch

from unlearnbench.errors import ConfigError, DataNotFound

from helpers import idx_bytes, jpeg, scen_cfg

pytest.importorskip("open_clip")
PIL = pytest.importorskip("PIL.Image")

from unlearnbench.scenarios.clip import datasets  # noqa: E402

REAL = datasets.DEFINITIONS


@pytest.fixture(autouse=True)
def small_sets(monkeypatch):
    """This module's data sets are small (Cars 3 classes, DTD 3): the loaders check them without
    the releases' counts and class counts (test_clip_real_definitions_refuse_small_sets shows the real checks)."""
    few = ("cars", "dtd", "gtsrb", "resisc45", "sun397")
    monkeypatch.setattr(datasets, "DEFINITIONS", {k: d.small(classes=None if k in few else d.classes)
                                                  for k, d in REAL.items()})


def write_mnist(root, n_train=60, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        y = (np.arange(n) % 10).astype(np.uint8)
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        x[np.arange(n), 2 + y, 2:26] = 255  # a label-dependent stroke, so the classes differ
        (raw / f"{stem}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(x)))
        (raw / f"{stem}-labels-idx1-ubyte").write_bytes(idx_bytes(y))


def write_imagenet(root, per_class=3, classes=10, seed=0):
    """ILSVRC-2012 class folders: 1,000 wnids, images in the first ``classes`` of them."""
    rng = np.random.default_rng(seed)
    base = root / "imagenet"
    for c in range(1000):
        for part in ("train", "val"):
            d = base / part / f"n{c:08d}"
            d.mkdir(parents=True)
            if c < classes:
                for j in range(per_class if part == "train" else 1):
                    w, h = (40, 30) if j % 2 else (30, 50)
                    (d / f"n{c:08d}_{j}.JPEG").write_bytes(jpeg(rng, w, h))


def write_svhn(root, n_train=30, n_test=10, seed=0):
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    (root / "svhn").mkdir()
    for part, n in (("train", n_train), ("test", n_test)):
        y = (np.arange(n) % 10 + 1).reshape(-1, 1).astype(np.uint8)  # 1..10, 10 = the digit 0
        savemat(root / "svhn" / f"{part}_32x32.mat", {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                                                       "y": y})


EUROSAT = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
           "Residential", "River", "SeaLake"]


def write_eurosat(root, seed=0):
    rng = np.random.default_rng(seed)
    for part, k in (("train", 3), ("val", 1), ("test", 2)):
        for c in EUROSAT:
            d = root / "EuroSAT_splits" / part / c
            d.mkdir(parents=True)
            for j in range(k):
                (d / f"{c}_{j}.jpg").write_bytes(jpeg(rng, 64, 64))


CARS = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012"]


def write_cars(root, seed=0):
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    base = root / "stanford_cars"
    (base / "devkit").mkdir(parents=True)
    names = np.empty((1, len(CARS)), dtype=object)
    names[0, :] = CARS
    savemat(base / "devkit" / "cars_meta.mat", {"class_names": names})
    dt = [("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"), ("bbox_y2", "O"), ("class", "O"), ("fname", "O")]
    for folder, mat, n in (("cars_train", "devkit/cars_train_annos.mat", 6),
                           ("cars_test", "cars_test_annos_withlabels.mat", 3)):
        (base / folder).mkdir()
        annos = np.zeros((1, n), dtype=dt)
        for i in range(n):
            fname = f"{i + 1:05d}.jpg"
            (base / folder / fname).write_bytes(jpeg(rng, 60 + 10 * i, 40))
            annos[0, i] = (0, 0, 10, 10, i % len(CARS) + 1, fname)
        savemat(base / mat, {"annotations": annos})


def solid(value, w, h, fmt="PPM"):
    """A one-colour w×h image (red = ``value``): its eval view is that colour, so a stored row says which file
    it was read from."""
    import io

    buf = io.BytesIO()
    PIL.new("RGB", (w, h), (value, 7, 7)).save(buf, format=fmt)
    return buf.getvalue()


GTSRB_TEST = [("00002.ppm", 1), ("00000.ppm", 2), ("00003.ppm", 0), ("00001.ppm", 1)]  # the CSV's order


def write_gtsrb(root, classes=3, per_class=4):
    """GTSRB as [TTA] reads it: Training/<ClassId:05d>/*.ppm (each folder's GT-*.csv beside them),
    Final_Test/Images/*.ppm and GT-final_test.csv. Train image j of class c is red 10c + j; test file k red 200 + k."""
    base = root / "gtsrb" / "GTSRB"
    for c in range(classes):
        d = base / "Training" / f"{c:05d}"
        d.mkdir(parents=True)
        (d / f"GT-{c:05d}.csv").write_text("Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n")
        for j in reversed(range(per_class)):  # written out of order: read sorted
            (d / f"{c:05d}_{j:05d}.ppm").write_bytes(solid(10 * c + j, 30 + j, 32))
    images = base / "Final_Test" / "Images"
    images.mkdir(parents=True)
    (images / "GT-final_test.test.csv").write_text("Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2\n")
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for name, c in GTSRB_TEST:
        (images / name).write_bytes(solid(200 + int(name[:5]), 40, 36))
        rows.append(f"{name};40;36;5;5;35;31;{c}")
    (root / "gtsrb" / "GT-final_test.csv").write_text("\n".join(rows) + "\n")


RESISC45 = ["airplane", "baseball_diamond", "sea_ice"]


def write_resisc45(root):
    """NWPU-RESISC45/<class>/<class>_00k.jpg, k = 1..6, and the split lists: 1-4 train, 5 val, 6 test
    (listed out of order). Image k of class c is red 40c + k."""
    base = root / "resisc45"
    lists = {"train": [], "val": [], "test": []}
    for c, name in enumerate(RESISC45):
        d = base / "NWPU-RESISC45" / name
        d.mkdir(parents=True)
        for k in range(1, 7):
            f = f"{name}_{k:03d}.jpg"
            (d / f).write_bytes(solid(40 * c + k, 256, 256, fmt="PNG"))  # PNG: lossless, any name
            lists["train" if k <= 4 else "val" if k == 5 else "test"].append(f)
    for part, names in lists.items():
        (base / f"resisc45-{part}.txt").write_text("\n".join(names[::-1]) + "\n")


@pytest.fixture(scope="module")
def clip_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("clipdata")
    write_mnist(root)
    write_imagenet(root)
    write_svhn(root)
    write_eurosat(root)
    write_cars(root)
    write_gtsrb(root)
    write_resisc45(root)
    return root


TINY = {"arch": "tiny", "weights": "random", "control_templates": "simple"}


def test_vit_b32_parameter_counts_match_the_protocol():
    from unlearnbench.scenarios.clip.model import clip_classifier, frozen_names
    from unlearnbench.taskvec import param_keys

    m = clip_classifier("vit-b-32", 10, 1000)
    sd = m.state_dict()
    keys = param_keys(m)
    frozen = set(frozen_names(keys))
    assert sum(sd[k].numel() for k in keys) == 113_448_705  # |U_all| [PROTOCOL §8.5]
    assert sum(sd[k].numel() for k in keys if k not in frozen) == 59_500_800  # |U_train| [§2.2]
    assert sum(sd[k].numel() for k in frozen if ".attn." in k) == 28_348_416  # visual attention
    assert {n for n, p in m.named_parameters() if not p.requires_grad} == frozen
    assert "head_forget" not in keys and "head_control" not in keys  # buffers: never in τ (§3)


def test_val_split_is_nm_random_split():
    from unlearnbench.scenarios.clip import nm_val_split

    for n, v in ((60000, 5000), (8144, 814), (30, 3)):  # MNIST, Cars (§1.3: ≈ 814), tiny
        tr, va = nm_val_split(n)
        assert len(va) == v and len(tr) == n - v and not set(tr) & set(va)
        _, ref = torch.utils.data.random_split(range(n), [n - v, v], generator=torch.Generator().manual_seed(0))
        assert sorted(ref.indices) == va.tolist()


def test_task_splits_heads_and_routing(host, clip_root):
    scen, cfg = scen_cfg(host, "clip-mnist", **TINY)
    t = scen.build_task(cfg, 0, str(clip_root))
    s = t.manifest["sizes"]
    assert (s["forget_train"], s["forget_val"], s["forget_test"]) == (54, 6, 20)
    assert (s["control_val"], s["control_test"]) == (3, 10)  # int(0.1 · 30) held out of ImageNet train
    assert t.manifest["splits"]["forget"] == t.manifest["splits"]["forget_train"]
    assert not t.scoring.has_oracle and not t.scoring.mia and t.scoring.rank == "acc_forget"
    x, y = t.tensors("forget_test")
    assert x.dtype == torch.uint8 and x.shape[1:] == (1, 28, 28)  # stored at native size
    xc, yc = t.tensors("control_test")
    assert xc.shape[1:] == (3, 224, 224) and yc.tolist() == list(range(10))
    from unlearnbench.stages import Stages
    from unlearnbench.store import Store

    st = Stages(t, Store(clip_root / "store"))
    theta0 = st.original()
    assert st.trained == ["init"]  # loaded, never trained
    assert theta0["head_forget"].shape == (10, 32) and theta0["head_control"].shape == (1000, 32)
    assert torch.allclose(theta0["head_control"].norm(dim=1), torch.full((1000,), 100.0))  # W = 100·e_c
    m = t.new_model()
    m.load_state_dict(theta0)
    acc = st.evaluator.measure(m, ["acc_forget_test", "acc_control_test"])
    assert m.head == "forget"  # reset after routing
    with torch.no_grad():
        m.head = "control"
        lg = m(xc)
    assert lg.shape == (10, 1000)
    assert acc["acc_control_test"] == pytest.approx(100.0 * (lg.argmax(1) == yc).double().mean().item())


def test_a_detached_clip_task_builds_its_model_and_reads_forget_and_control_rows(host, clip_root):
    # A worker's job gets ``task.detached(splits)``: the CLIP task's control set and encoder name live
    # outside the dataclass fields, and its control rows follow the forget set's in the indices.
    scen, cfg = scen_cfg(host, "clip-mnist", **TINY)
    t = scen.build_task(cfg, 0, str(clip_root))
    d = t.detached(["forget", "control_val"])
    for split in ("forget", "control_val"):
        x, y = d.tensors(split)
        x0, y0 = t.tensors(split)
        assert torch.equal(x, x0) and torch.equal(y, y0)
    m = d.new_model()  # needs clip_arch and the control set's class count
    assert {k: v.shape for k, v in m.state_dict().items()} == {k: v.shape for k, v in t.new_model().state_dict().items()}
    # of ImageNet only the rows asked for are shipped
    assert len(d.control.y) == len(t.indices("control_val")) and d.control.num_classes == t.control.num_classes
    assert d.frozen == t.frozen
    assert len(t.detached(["forget"]).control.y) == 0


def test_missing_and_corrupt_weights_are_explained(host, clip_root, tmp_path):
    from unlearnbench.scenarios.clip.model import load_weights

    scen, cfg = scen_cfg(host, "clip-mnist", arch="tiny")
    with pytest.raises(DataNotFound, match="tiny-openai.safetensors"):
        scen.build_task(cfg, 0, str(clip_root)).pretrained()
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(DataNotFound, match="not a loadable CLIP state dict"):
        load_weights("tiny", bad)
    pt = tmp_path / "w.pt"
    torch.save({"visual.proj": torch.zeros(2)}, pt)
    with pytest.raises(DataNotFound, match="lacks"):
        load_weights("tiny", pt)


def test_saved_weights_load_exactly(tmp_path):
    from safetensors.torch import save_file

    from unlearnbench.scenarios.clip.model import build_clip, load_weights

    torch.manual_seed(3)
    ref = build_clip("tiny").state_dict()
    save_file({k: v.contiguous() for k, v in ref.items()}, str(tmp_path / "w.safetensors"))
    got, digest = load_weights("tiny", tmp_path / "w.safetensors")
    assert all(torch.equal(got[k], ref[k]) for k in ref) and len(digest) == 64


def test_clip_recipe_adamw_warmup_clip_and_frozen():
    from unlearnbench.augment import recipe_augmentation
    from unlearnbench.recipe import Recipe
    from unlearnbench.scenarios.clip.augment import AUGMENTATIONS
    from unlearnbench.scenarios.clip.model import clip_classifier
    from unlearnbench.training import lr_at, train

    r = Recipe(epochs=2, batch=4, lr=1e-3, momentum=0.0, wd=0.1, optimizer="adamw", warmup_steps=3,
               grad_clip=1.0, augment="clip_rrc")
    assert [round(lr_at(r, s, 10, 5), 6) for s in (0, 2, 3)] == [round(1e-3 / 3, 6), 1e-3, 1e-3]
    assert lr_at(r, 9, 10, 5) < 1e-4  # cosine over the 7 steps after warmup
    torch.manual_seed(0)
    m = clip_classifier("tiny", 10, 5)
    m.head_forget.normal_()  # a zero head (the fresh model's) would give no gradient at all
    before = {k: v.clone() for k, v in m.state_dict().items()}
    x, y = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8), torch.arange(8) % 10
    train(m, x, y, r, torch.Generator().manual_seed(0), show_progress=False,
          augment=recipe_augmentation(r, AUGMENTATIONS))
    after = m.state_dict()
    for n, p in m.named_parameters():
        changed = not torch.equal(before[n], after[n])
        assert changed == p.requires_grad, n  # frozen stay bit-identical, even under weight decay


def test_randaugment_is_replayable_and_leaves_global_rngs_alone():
    import random

    from unlearnbench.augment import recipe_augmentation as _recipe_augmentation
    from unlearnbench.recipe import Recipe
    from unlearnbench.scenarios.clip.augment import AUGMENTATIONS

    def recipe_augmentation(r):
        return _recipe_augmentation(r, AUGMENTATIONS)  # the CLIP tasks' named augmentations

    x = torch.rand(4, 3, 32, 32)
    aug = recipe_augmentation(Recipe(epochs=1, batch=4, lr=0.1, augment="clip_randaug", randaug_n=2, randaug_m=9))
    random.seed(7)
    a = aug(x, torch.Generator().manual_seed(0))
    after = random.random()
    random.seed(7)
    b = aug(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and random.random() == after
    c = aug(x, torch.Generator().manual_seed(1))
    assert not torch.equal(a, c) and a.shape == x.shape
    grey = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8)  # MNIST: made RGB first (§6.1)
    for s in range(4):  # timm fills rotations with the RGB mean: a one-band image would crash
        assert aug(grey, torch.Generator().manual_seed(s)).shape == (16, 3, 28, 28)
    low = recipe_augmentation(Recipe(epochs=1, batch=4, lr=0.1, augment="clip_randaug", randaug_n=3, randaug_m=1))
    for s in range(10):  # Posterize draws 0 bits at low magnitude: a black image, as Pillow used to give
        low(torch.rand(32, 3, 16, 16), torch.Generator().manual_seed(s))
    plain = recipe_augmentation(Recipe(epochs=1, batch=4, lr=0.1, augment="clip_randaug"))
    assert not torch.equal(plain(x, torch.Generator().manual_seed(0)), a)  # RandAugment did something


@pytest.mark.slow
def test_negmerge_cli_run_on_clip_mnist(clip_root, tmp_path):
    from click.testing import CliRunner

    from unlearnbench.cli import main

    runs = tmp_path / "runs"
    args = ["run", "--scenario", "clip-mnist", "--data-root", str(clip_root), "--seeds", "0",
            "--store", str(tmp_path / "store"), "--runs-dir", str(runs), "-q", "-o", "scenario.arch=tiny",
            "-o", "scenario.weights=random", "-o", "scenario.control_templates=simple"]
    r = CliRunner().invoke(main, args + ["--method", "negmerge", "-o", "pool.name=pool4", "-o", "pool.size=3"])
    assert r.exit_code == 0, r.output
    assert "Acc Dc val" in r.output  # the CLIP columns (§8.4), not the classifier ones
    (path,) = runs.glob("clip-mnist/negmerge*/seed-0/run.json")
    rec = json.loads(path.read_text())
    assert set(rec["metrics"]) == {"acc_forget_test", "acc_control_test", "acc_forget_val", "acc_control_val"}
    assert rec["retrain"] is None and rec["gap"] is None
    assert rec["selection_rule"] == "control_threshold" and rec["used_splits"] == "forget+val"
    assert rec["lambda"] in [round(0.05 * i, 2) for i in range(21)]  # the CLIP grid {0, ..., 1} [§5]
    curve = rec["selection"]["curve"]
    assert all("acc_control_val" in p and "acc_forget_val" in p for p in curve)
    assert rec["timings"]["pool_trained"] == 3
    sp = rec["sparsity"]  # frozen parameters are exact zeros of τ: U_all counts them, U_train does not (§8.5)
    assert sp["n_train"] < sp["n_all"] and sp["nonzero"] <= sp["n_train"]
    assert sp["u_all"] >= 100.0 * (sp["n_all"] - sp["n_train"]) / sp["n_all"]

    # the board shows Acc Dr (ImageNet val) and Acc Df (the forget test split) in the paper's columns [P T1]
    # --allow-dirty: these records are this checkout's, committed or not (PROTOCOL §11's rule is for boards)
    r = CliRunner().invoke(main, ["leaderboard", str(runs), "--out", str(tmp_path / "board"), "--allow-dirty"])
    assert r.exit_code == 0, r.output
    board = (tmp_path / "board" / "clip-mnist.md").read_text()
    m = rec["metrics"]
    row = next(line for line in board.splitlines() if line.startswith("| negmerge"))
    assert f"| {m['acc_control_test']:.2f} | {m['acc_forget_test']:.2f} | – | – |" in row
    assert "| paper: NegMerge | forget+val |" in board and "| 59.90 | 20.50 |" in board  # [P T B1] MNIST

    # the default pool (pool1_randaug: RRC + flip + RandAugment, 30 epochs) trains on grey MNIST
    r = CliRunner().invoke(main, args + ["--method", "uniform", "-o", "pool.size=2"])
    assert r.exit_code == 0, r.output
    (path,) = runs.glob("clip-mnist/uniform*/seed-0/run.json")
    rec = json.loads(path.read_text())
    assert rec["config"]["pool"]["name"] == "default" and rec["timings"]["pool_trained"] == 2

    # a method that reads D_r is refused, with what to use instead
    r = CliRunner().invoke(main, args + ["--method", "finetune"])
    assert r.exit_code == 2 and "does not have" in r.output and "used splits do not include retain" in r.output


def test_bad_arch_and_missing_imagenet(host, tmp_path):
    scen, cfg = scen_cfg(host, "clip-mnist", arch="vit-b-33")
    with pytest.raises(ConfigError, match="vit-b-32"):
        scen.build_task(cfg, 0, str(tmp_path))
    write_mnist(tmp_path)
    scen, cfg = scen_cfg(host, "clip-mnist", **TINY)
    with pytest.raises(DataNotFound, match="imagenet"):
        scen.build_task(cfg, 0, str(tmp_path))


def test_svhn_eurosat_and_cars_in_their_native_layouts(host, clip_root):
    scen, cfg = scen_cfg(host, "clip-svhn", **TINY)
    t = scen.build_task(cfg, 0, str(clip_root))
    assert (t.manifest["sizes"]["forget_train"], t.manifest["sizes"]["forget_val"]) == (27, 3)
    x, y = t.tensors("forget_test")
    assert x.shape[1:] == (3, 32, 32) and x.dtype == torch.uint8 and sorted(set(y.tolist())) == list(range(10))
    assert y.tolist()[:10] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]  # label 10 is the digit 0

    scen, cfg = scen_cfg(host, "clip-eurosat", **TINY)
    t = scen.build_task(cfg, 0, str(clip_root))
    s = t.manifest["sizes"]
    assert (s["forget_train"], s["forget_val"], s["forget_test"]) == (30, 10, 20)  # the predefined val split
    assert t.tensors("forget_val")[0].shape[1:] == (3, 64, 64)

    scen, cfg = scen_cfg(host, "clip-cars", **TINY)
    t = scen.build_task(cfg, 0, str(clip_root))
    assert t.num_classes == 3 and t.data.classnames == tuple(CARS)  # from the devkit's cars_meta.mat
    assert t.tensors("forget_test")[0].shape[1:] == (3, 224, 224)  # CLIP's eval view of a photo
    assert t.tensors("forget_test")[1].tolist() == [0, 1, 2]
    load, tag = t.pretrained()
    assert t.new_model().head_forget.shape == (3, 32) and tag.startswith("clip:tiny:random:")


def test_wrong_eurosat_layout_is_explained(host, tmp_path):
    write_eurosat(tmp_path)
    (tmp_path / "EuroSAT_splits" / "val" / "River").rename(tmp_path / "EuroSAT_splits" / "val" / "Rivers")
    from unlearnbench.scenarios.clip import load_eurosat

    with pytest.raises(DataNotFound, match="10 EuroSAT class folders"):
        load_eurosat(str(tmp_path))
    with pytest.raises(DataNotFound, match="svhn"):
        from unlearnbench.scenarios.clip import load_svhn

        load_svhn(str(tmp_path))


def test_clip_pools_take_the_data_sets_epochs(host, clip_root):
    from unlearnbench.errors import ConfigError

    scen, cfg = scen_cfg(host, "clip-mnist", **TINY)
    default = scen.pools["default"]
    assert default.name == "pool1_randaug" and len(default) == 30  # [P App. A]
    assert {m.epochs for m in default.members()} == {30}  # MNIST, RandAugment table (§2.2)
    assert {(m.randaug_n, m.randaug_m) for m in default.members()} == {(n, m) for n in (1, 2, 3)
                                                                        for m in range(1, 11)}
    assert scen.pools["pool2"].base.epochs == 5 and scen.pools["pool2"].base.augment == "clip_rrc"  # TA table
    r = default.base
    assert (r.optimizer, r.lr, r.wd, r.batch, r.warmup_steps, r.grad_clip) == ("adamw", 1e-5, 0.1, 128, 500, 1.0)
    task = scen.build_task(cfg, 0, str(clip_root))
    assert task.augment_for(default.members()[0]) is not None  # the scenario brings clip_randaug
    with pytest.raises(ConfigError, match="clip_randaug"):  # the suite alone does not know it
        from unlearnbench.augment import recipe_augmentation

        recipe_augmentation(default.members()[0])
    scen, _ = scen_cfg(host, "clip-eurosat", **TINY)
    assert scen.pools["default"].base.epochs == 40 and scen.pools["ta_paper"].base.epochs == 12


def _clip_record(method, trial, df, dr=60.0):
    from unlearnbench.scenarios.clip import SCORING

    m = {"acc_forget_test": df, "acc_control_test": dr, "acc_forget_val": df, "acc_control_val": dr}
    return {"scenario": "clip-mnist", "method": method, "config_hash": method, "trial": trial, "variant": [],
            "_file": f"{method}/seed-{trial}/run.json", "metrics": m, "retrain": None, "gap": None,
            "original": {**m, "acc_forget_test": 90.0, "acc_control_test": 63.0}, "used_splits": "forget+val",
            "selection": {"rule": "control_threshold", "oracle": False}, "timings": {"total_s": 1.0},
            "lambda": 0.5, "sparsity": None, "info": {}, "scoring": SCORING.record()}


def test_clip_board_marks_the_lowest_forget_accuracy_beyond_noise():
    from unlearnbench.report import aggregate, render_markdown

    recs = [_clip_record("negmerge", t, 20.0 + 0.1 * t) for t in range(3)] + \
           [_clip_record("uniform", t, 30.0 + 0.1 * t) for t in range(3)]
    md = render_markdown("clip-mnist", aggregate(recs)["clip-mnist"], [])
    lines = [line for line in md.splitlines() if line.startswith(("| negmerge", "| uniform"))]
    assert lines[0].startswith("| negmerge") and "| **20.10 ± 0.10** |" in lines[0]  # ranked first, bold
    assert "**" not in lines[1] and "no Avg. Gap" in md
    recs = [_clip_record("negmerge", t, 20.0 + 5 * t) for t in range(3)] + \
           [_clip_record("uniform", t, 22.0 + 5 * t) for t in range(3)]
    md = render_markdown("clip-mnist", aggregate(recs)["clip-mnist"], [])
    assert md.count(" ≈ |") == 2 and "**" not in md.split("## Methods")[1]  # within noise: a tie, no winner


def write_dtd(root, prepared=False, seed=0):
    """DTD split 1 (3 classes, 4 images each: 1 train1, 1 val1, 2 test1), as released or as [TTA] prepares it."""
    rng = np.random.default_rng(seed)
    base = root / "dtd"
    labels = {"train1.txt": [], "val1.txt": [], "test1.txt": []}
    for c in ("banded", "blotchy", "crystalline"):
        for j, part in enumerate(("train1.txt", "val1.txt", "test1.txt", "test1.txt")):
            name = f"{c}_{j:04d}.jpg"
            labels[part].append(f"{c}/{name}")
            data = jpeg(rng, 300 + 20 * j, 300)
            if prepared:
                d = base / ("val" if part == "test1.txt" else "train") / c
                d.mkdir(parents=True, exist_ok=True)
            else:
                d = base / "images" / c
                d.mkdir(parents=True, exist_ok=True)
            (d / name).write_bytes(data)
    if not prepared:
        (base / "labels").mkdir()
        for part, rels in labels.items():
            (base / "labels" / part).write_text("\n".join(rels[::-1]) + "\n")  # any order: sorted like ImageFolder


def test_dtd_release_and_tta_folders_give_one_manifest(tmp_path):
    from unlearnbench.scenarios.clip import load_dtd

    write_dtd(tmp_path / "a")
    write_dtd(tmp_path / "b", prepared=True)
    a, b = load_dtd(str(tmp_path / "a")), load_dtd(str(tmp_path / "b"))
    assert a.classnames == b.classnames == ("banded", "blotchy", "crystalline")
    assert len(a.train_pool) == 6 and len(a.test) == 6  # train1 + val1 | test1
    assert a.fingerprint == b.fingerprint and torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert a.x.shape[1:] == (3, 224, 224)


def test_clip_real_definitions_refuse_small_sets(clip_root, tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "DEFINITIONS", REAL)
    with pytest.raises(DataNotFound, match=r"train-images-idx3-ubyte.gz: expected 60,000 train images for MNIST, "
                                           r"found 60"):
        datasets.load_mnist(str(clip_root))
    with pytest.raises(DataNotFound, match=r"train_32x32.mat: expected 73,257 train images for SVHN, found 30"):
        datasets.load_svhn(str(clip_root))
    with pytest.raises(DataNotFound, match=r"cars_meta.mat: expected 196 classes for Stanford Cars, found 3"):
        datasets.load_cars(str(clip_root))
    write_dtd(tmp_path)
    with pytest.raises(DataNotFound, match=r"images: expected 47 classes for DTD, found 3"):
        datasets.load_dtd(str(tmp_path))
    monkeypatch.setattr(datasets, "DEFINITIONS", {**REAL, "dtd": REAL["dtd"].small(classes=None, n_train=3_760)})
    with pytest.raises(DataNotFound, match=r"train1.txt \+ val1.txt: expected 3,760 train images for DTD, found 6"):
        datasets.load_dtd(str(tmp_path))


def test_svhn_labels_outside_1_to_10_are_refused(tmp_path):
    from scipy.io import savemat

    write_svhn(tmp_path)
    savemat(tmp_path / "svhn" / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 2), dtype=np.uint8),
                                                    "y": np.array([[3], [74]], dtype=np.uint8)})
    with pytest.raises(DataNotFound, match=r"test_32x32.mat: SVHN labels must run 1..10 .*largest label 74"):
        datasets.load_svhn(str(tmp_path))


def test_diagnostic_pass_on_clip_reads_the_scenarios_test_splits(clip_root, tmp_path):
    """selection.diagnostic=true measures Scoring.diagnostic (CLIP: the forget and control test
    splits) at every λ after λ* is fixed, in the runner (before Scoring, the list was the classifier's)."""
    from click.testing import CliRunner

    from unlearnbench.cli import main

    runs = tmp_path / "runs"
    args = ["run", "--scenario", "clip-mnist", "--data-root", str(clip_root), "--seeds", "0",
            "--store", str(tmp_path / "store"), "--runs-dir", str(runs), "-q", "-o", "scenario.arch=tiny",
            "-o", "scenario.weights=random", "-o", "scenario.control_templates=simple", "--method", "negmerge",
            "-o", "pool.name=pool4", "-o", "pool.size=3"]
    recs = {}
    for mode in ("false", "true"):
        r = CliRunner().invoke(main, args + ["-o", f"selection.diagnostic={mode}"])
        assert r.exit_code == 0, r.output
        (path,) = [p for p in runs.glob("clip-mnist/negmerge*/seed-0/run.json")
                   if json.loads(p.read_text())["config"]["selection"]["diagnostic"] == (mode == "true")]
        recs[mode] = json.loads(path.read_text())
    plain, diag = recs["false"], recs["true"]
    assert diag["lambda"] == plain["lambda"] and diag["metrics"] == plain["metrics"]
    assert diag["weights_digest"]["unlearned"] == plain["weights_digest"]["unlearned"]
    curve = diag["selection"]["curve"]
    assert [{k: v for k, v in p.items() if k != "diagnostic"} for p in curve] == plain["selection"]["curve"]
    assert all(set(p["diagnostic"]) == {"acc_forget_test", "acc_control_test"} for p in curve)
    star = curve[[p["lambda"] for p in curve].index(diag["lambda"])]["diagnostic"]
    assert star == {k: plain["metrics"][k] for k in ("acc_forget_test", "acc_control_test")}
    assert diag["info"]["diagnostic"] and "diagnostic" not in plain["info"]  # what keeps it off the board


def _heads(monkeypatch, task):
    """The zero-shot heads' (class names, templates) a task builds its θ_0 from."""
    import unlearnbench.scenarios.clip as clip

    monkeypatch.setattr(clip, "_pretrained", lambda task, weights, heads: heads)
    return task.pretrained()["forget"]


def test_gtsrb_reads_the_ppm_class_folders_and_labels_the_test_set_from_its_csv(host, clip_root, monkeypatch):
    scen, cfg = scen_cfg(host, "clip-gtsrb", **TINY)
    t = scen.build_task(cfg, 0, str(clip_root))
    s = t.manifest["sizes"]
    assert (s["forget_train"], s["forget_val"], s["forget_test"]) == (11, 1, 4)  # [NM]: int(0.1 · 12) held out
    x, y = t.data.x, t.data.y
    train, test = t.data.train_pool, t.data.test
    # train: class folders sorted, files sorted in each (the GT-*.csv beside them ignored)
    assert x[train, 0, 112, 112].tolist() == [10 * c + j for c in range(3) for j in range(4)]
    assert y[train].tolist() == [c for c in range(3) for _ in range(4)]
    # test: the CSV's order and its ClassId, not the folder's file order
    assert x[test, 0, 112, 112].tolist() == [200 + int(n[:5]) for n, _ in GTSRB_TEST]
    assert y[test].tolist() == [c for _, c in GTSRB_TEST]
    assert x.shape[1:] == (3, 224, 224)  # CLIP's eval view of each traffic sign
    names, templates = _heads(monkeypatch, t)
    assert names == ["red and white circle 20 kph speed limit", "red and white circle 30 kph speed limit",
                     "red and white circle 50 kph speed limit"]  # OpenAI CLIP's descriptions by ClassId [TTA]
    assert templates == ['a zoomed in photo of a "{}" traffic sign.', 'a centered photo of a "{}" traffic sign.',
                         'a close up photo of a "{}" traffic sign.']
    assert len(datasets.GTSRB_CLASSES) == 43 and datasets.GTSRB_CLASSES[14] == "stop"
    # the per-data-set epochs (PROTOCOL §2.2, §6.1): RandAugment pools 40, the TA config 11
    assert scen.pools["default"].base.epochs == 40 and scen.pools["ta_paper"].base.epochs == 11


def test_resisc45_takes_the_train_list_only_and_names_classes_by_folder(host, clip_root, monkeypatch):
    scen, cfg = scen_cfg(host, "clip-resisc45", **TINY)
    t = scen.build_task(cfg, 0, str(clip_root))
    s = t.manifest["sizes"]
    assert (s["forget_train"], s["forget_val"], s["forget_test"]) == (11, 1, 3)
    x, y = t.data.x, t.data.y
    assert len(y) == 15  # the val list's files are in neither split (PROTOCOL §1.3)
    assert x[t.data.train_pool, 0, 0, 0].tolist() == [40 * c + k for c in range(3) for k in range(1, 5)]
    assert x[t.data.test, 0, 0, 0].tolist() == [40 * c + 6 for c in range(3)] and y[t.data.test].tolist() == [0, 1, 2]
    names, templates = _heads(monkeypatch, t)
    assert names == ["airplane", "baseball diamond", "sea ice"]
    assert len(templates) == 18 and templates[:2] == ["satellite imagery of {}.", "aerial imagery of {}."]
    assert templates[6] == "satellite imagery of a {}." and templates[-1] == "aerial view of the {}."
    assert scen.pools["default"].base.epochs == 40 and scen.pools["ta_paper"].base.epochs == 15


SUN = {"/a/abbey": "abbey", "/a/apartment_building/outdoor": "apartment building outdoor",
       "/b/bakery/shop": "bakery shop"}


def write_sun397(root, prepared=False, seed=0):
    """SUN397 partition 01, 3 categories with 4 train and 2 test images each: the release (SUN397/ with
    ClassName.txt and the partition lists, listed out of order, and an image in no list) or [TTA]'s
    prepared sun397/train and sun397/val folders. The same bytes either way."""
    rng = np.random.default_rng(seed)
    lists = {"Training_01.txt": [], "Testing_01.txt": []}
    for cat in SUN:
        for j in range(6):
            part = "Training_01.txt" if j < 4 else "Testing_01.txt"
            name = f"sun_{'zyxwvu'[j]}{cat[-2:]}.jpg"
            data = jpeg(rng, 50 + 5 * j, 40)
            if prepared:
                d = root / "sun397" / ("train" if j < 4 else "val") / cat.strip("/").replace("/", "_")
            else:
                d = root / "SUN397" / cat.strip("/")
                lists[part].append(f"{cat}/{name}")
            d.mkdir(parents=True, exist_ok=True)
            (d / name).write_bytes(data)
        if not prepared:
            (root / "SUN397" / cat.strip("/") / "sun_unlisted.jpg").write_bytes(jpeg(np.random.default_rng(9), 30, 30))
    if not prepared:
        (root / "SUN397" / "ClassName.txt").write_text("\n".join(SUN) + "\n")
        for part, lines in lists.items():
            (root / "SUN397" / part).write_text("\n".join(lines[::-1]) + "\n")


def test_sun397_release_and_tta_folders_give_one_manifest(host, clip_root, tmp_path, monkeypatch):
    tasks = []
    for sub, prepared in (("release", False), ("prepared", True)):
        root = tmp_path / sub
        write_sun397(root, prepared=prepared)
        (root / "imagenet").symlink_to(clip_root / "imagenet")
        scen, cfg = scen_cfg(host, "clip-sun397", **TINY)
        tasks.append(scen.build_task(cfg, 0, str(root)))
    a, b = tasks
    assert a.manifest == b.manifest and a.manifest_hash == b.manifest_hash
    assert torch.equal(a.data.x, b.data.x) and torch.equal(a.data.y, b.data.y)
    s = a.manifest["sizes"]
    assert (s["forget_train"], s["forget_val"], s["forget_test"]) == (11, 1, 6)  # the unlisted images: in neither
    # class order: the prepared folder names sorted; a class's name drops the letter prefix, "_" as spaces
    names, templates = _heads(monkeypatch, a)
    assert names == list(SUN.values()) == list(b.data.classnames)
    assert templates == ["a photo of a {}.", "a photo of the {}."]
    assert a.data.y[a.data.train_pool].tolist() == [c for c in range(3) for _ in range(4)]
    assert scen.pools["default"].base.epochs == 40 and scen.pools["ta_paper"].base.epochs == 14


def test_gtsrb_resisc45_sun397_definitions_and_layout_errors(clip_root, tmp_path, monkeypatch):
    """The releases' counts refuse the small files; a broken layout names the file at fault."""
    monkeypatch.setattr(datasets, "DEFINITIONS", REAL)
    with pytest.raises(DataNotFound, match=r"Training: expected 43 classes for GTSRB, found 3"):
        datasets.load_gtsrb(str(clip_root))
    with pytest.raises(DataNotFound, match=r"NWPU-RESISC45: expected 45 classes for RESISC45, found 3"):
        datasets.load_resisc45(str(clip_root))
    monkeypatch.setattr(datasets, "DEFINITIONS", {**REAL, "gtsrb": REAL["gtsrb"].small(classes=None, n_train=26_640)})
    with pytest.raises(DataNotFound, match=r"Training: expected 26,640 train images for GTSRB, found 12"):
        datasets.load_gtsrb(str(clip_root))
    write_sun397(tmp_path / "s")
    with pytest.raises(DataNotFound, match=r"ClassName.txt: expected 397 classes for SUN397, found 3"):
        datasets.load_sun397(str(tmp_path / "s"))
    monkeypatch.setattr(datasets, "DEFINITIONS", {k: d.small(classes=None) for k, d in REAL.items()})
    write_gtsrb(tmp_path / "g")
    (tmp_path / "g" / "gtsrb" / "GTSRB" / "Training" / "00001").rename(tmp_path / "g" / "gtsrb" / "GTSRB" /
                                                                       "Training" / "00007")
    with pytest.raises(DataNotFound, match=r"class folders 00000, 00001"):  # a folder's rank is its ClassId
        datasets.load_gtsrb(str(tmp_path / "g"))
    write_resisc45(tmp_path / "r")
    (tmp_path / "r" / "resisc45" / "NWPU-RESISC45" / "sea_ice" / "sea_ice_002.jpg").unlink()
    with pytest.raises(DataNotFound, match=r"resisc45-train.txt lists 'sea_ice_002.jpg', which is in no class folder"):
        datasets.load_resisc45(str(tmp_path / "r"))
    (tmp_path / "s" / "SUN397" / "b" / "bakery" / "shop" / "sun_zop.jpg").unlink()
    with pytest.raises(DataNotFound, match=r"Training_01.txt lists .*sun_zop.jpg, which is not there"):
        datasets.load_sun397(str(tmp_path / "s"))
