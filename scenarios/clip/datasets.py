"""The CLIP scenarios' data sets, each read in its native (torchvision / [TTA]) layout (PROTOCOL §1.3).

Splits by the [NM] rule: D_f^val is 10% of the data set's train split, at most 5,000, drawn by
torch.randperm with generator seed 0 in the order the files are read; D_f^train is the rest.
ImageNet (the control) is read from the standard class-folder layout: ImageNetVal is 5,000
images held out of ImageNet train by the same rule, the control test set is ImageNet val.

Storage: a data set is kept in memory as uint8 at its native size (MNIST 28 × 28) or, for
photos, as CLIP's eval view (Resize 224 bicubic + CenterCrop 224); the model does the rest of
the preprocessing [OURS].
"""
from __future__ import annotations

import io
import os
from pathlib import Path

from unlearnbench import DataNotFound, RawData
from unlearnbench.data import (Definition, data_roots, find_idx, fingerprint, list_class_folders, native_view,
                               read_idx_set, read_images)

VAL_FRAC, VAL_CAP = 0.1, 5000  # [NM], [TTA] split_train_into_train_val
SIDE = 224
# [TTA] templates and class names, as data (PROTOCOL §2.2: MNIST 1 template)
MNIST_TEMPLATES = ('a photo of the number: "{}".',)
MNIST_CLASSES = tuple(str(i) for i in range(10))
# What each data set's release holds (unlearnbench.data.Definition), checked by its loader. The
# test suite replaces these with .small() ones for its small files. EuroSAT's counts are those of
# [TTA]'s own split, which its release does not fix, so only its classes and size are checked.
DEFINITIONS = {
    "mnist": Definition("MNIST", n_train=60_000, n_test=10_000, side=28, classes=10),
    "svhn": Definition("SVHN", n_train=73_257, n_test=26_032, side=32, classes=10),
    "eurosat": Definition("EuroSAT", side=64, classes=10),
    "cars": Definition("Stanford Cars", n_train=8_144, n_test=8_041, classes=196),
    "dtd": Definition("DTD", n_train=3_760, n_test=1_880, classes=47),  # split 1: train1 + val1 | test1
}
IMAGENET_HELP = (
    "ImageNet (the control data set) was not found. Put ILSVRC-2012 at <root>/imagenet with "
    "train/<wnid>/*.JPEG (1,000 class folders) and val/<wnid>/*.JPEG (the 50,000 val images sorted into the same "
    "class folders, e.g. by the usual valprep.sh), and pass --data-root <root> (or set UNLEARNBENCH_DATA).")


def nm_val_split(n: int, cap: int = VAL_CAP, frac: float = VAL_FRAC):
    """(train, val) positions of an n-item train split by [NM]'s rule: torch random_split with
    generator seed 0 into n − v and v = min(int(frac·n), cap) items. Sorted."""
    import numpy as np
    import torch

    v = min(int(n * frac), cap)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0)).numpy()
    return np.sort(perm[:n - v]), np.sort(perm[n - v:])


def _first_dir(data_root: str | None, subdirs: tuple[str, ...], ok, help_text: str) -> Path:
    """The first <root>/<subdir> for which ``ok(path)`` holds; an explicit root must hold it."""
    looked = []
    for root, explicit in data_roots(data_root):
        for sub in subdirs:
            base = root / sub if sub else root
            looked.append(str(base))
            if base.is_dir() and ok(base):
                return base
        if explicit:
            break
    raise DataNotFound(f"{help_text} Looked in: {', '.join(looked) or 'nowhere (give --data-root)'}")


# -- MNIST ---------------------------------------------------------------------------------------

def load_mnist(data_root: str | None) -> RawData:
    """MNIST from its four IDX files (gzipped or not), in <root>/MNIST/raw, <root>/mnist or <root>."""
    import numpy as np
    import torch

    base = _first_dir(data_root, ("MNIST/raw", "mnist", ""), lambda b: find_idx(b) is not None,
                      "MNIST was not found. Put the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                      "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, optionally .gz) in <root>/MNIST/raw "
                      "(torchvision's layout) and pass --data-root <root>.")
    x, y, n_train, raw_bytes = read_idx_set(find_idx(base), "MNIST", DEFINITIONS["mnist"])
    return RawData(x=torch.from_numpy(x.copy()).unsqueeze(1), y=torch.from_numpy(y),
                   train_pool=np.arange(n_train), test=np.arange(n_train, len(y)),
                   fingerprint=fingerprint(*raw_bytes, y.tobytes()), num_classes=10, source=str(base))


# -- SVHN, EuroSAT, Cars ---------------------------------------------------------------------------

def load_svhn(data_root: str | None) -> RawData:
    """SVHN cropped digits: train_32x32.mat and test_32x32.mat (torchvision's files); label 10 is
    the digit 0, as torchvision maps it."""
    import numpy as np
    import torch

    base = _first_dir(data_root, ("svhn", "SVHN", ""), lambda b: (b / "train_32x32.mat").is_file() and
                      (b / "test_32x32.mat").is_file(),
                      "SVHN was not found: put train_32x32.mat and test_32x32.mat in <root>/svhn and pass --data-root.")
    from scipy.io import loadmat

    d = DEFINITIONS["svhn"]
    xs, ys, raw = [], [], []
    for part in ("train", "test"):
        path = base / f"{part}_32x32.mat"
        data = path.read_bytes()
        raw.append(data)
        try:
            m = loadmat(io.BytesIO(data))
            x, y = np.asarray(m["X"]), np.asarray(m["y"]).reshape(-1)
        except Exception as e:
            raise DataNotFound(f"{path} is not SVHN's .mat file ({type(e).__name__}: {e})") from None
        if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
            raise DataNotFound(f"{path}: X must be 32 x 32 x 3 x N with one label per image, not {x.shape}")
        lo, hi = (int(y.min()), int(y.max())) if len(y) else (1, 10)
        if lo < 1 or hi > 10:
            raise DataNotFound(f"{path}: SVHN labels must run 1..10 (10 is the digit 0), found "
                               + (f"largest label {hi}" if hi > 10 else f"label {lo}"))
        d.check_count(part, x.shape[3], str(path))
        xs.append(x.transpose(3, 2, 0, 1).astype(np.uint8))
        ys.append((y.astype(np.int64) % 10))
    x, y = np.concatenate(xs), np.concatenate(ys)
    n_train = len(xs[0])
    return RawData(x=torch.from_numpy(np.ascontiguousarray(x)), y=torch.from_numpy(y),
                   train_pool=np.arange(n_train), test=np.arange(n_train, len(y)),
                   fingerprint=fingerprint(*raw, y.tobytes()), num_classes=10, source=str(base))


# [TTA]'s readable EuroSAT class names, by folder name
EUROSAT_CLASSES = {
    "AnnualCrop": "annual crop land", "Forest": "forest", "HerbaceousVegetation": "brushland or shrubland",
    "Highway": "highway or road", "Industrial": "industrial buildings or commercial buildings",
    "Pasture": "pasture land", "PermanentCrop": "permanent crop land",
    "Residential": "residential buildings or homes or apartments", "River": "river", "SeaLake": "lake or sea"}
EUROSAT_TEMPLATES = ("a centered satellite photo of {}.", "a centered satellite photo of a {}.",
                     "a centered satellite photo of the {}.")


def load_eurosat(data_root: str | None) -> RawData:
    """EuroSAT RGB (64 × 64) in [TTA]'s EuroSAT_splits/{train,val,test}/<Class>/ folders; val is predefined."""
    import numpy as np
    import torch

    base = _first_dir(data_root, ("EuroSAT_splits", "eurosat/EuroSAT_splits"),
                      lambda b: all((b / p).is_dir() for p in ("train", "val", "test")),
                      "EuroSAT was not found: put the train/, val/ and test/ class folders of [TTA]'s split at "
                      "<root>/EuroSAT_splits and pass --data-root.")
    parts = {p: list_class_folders(base / p) for p in ("train", "val", "test")}
    for p in parts:
        found = sorted(e.name for e in os.scandir(base / p) if e.is_dir())
        if found != sorted(EUROSAT_CLASSES):
            raise DataNotFound(f"{base / p} must hold the 10 EuroSAT class folders {sorted(EUROSAT_CLASSES)}, "
                               f"not {found}")
    d = DEFINITIONS["eurosat"]
    for p, listed in parts.items():
        d.check_count(p, len(listed), str(base / p))
    files = parts["train"] + parts["val"] + parts["test"]
    x, digest = read_images([f for f, _ in files], native_view(64), 64)
    y = np.array([c for _, c in files], dtype=np.int64)
    a, b = len(parts["train"]), len(parts["train"]) + len(parts["val"])
    names = "\n".join(os.path.relpath(f, base) for f, _ in files).encode()
    return RawData(x=torch.from_numpy(x), y=torch.from_numpy(y), train_pool=np.arange(a), val=np.arange(a, b),
                   test=np.arange(b, len(y)), fingerprint=fingerprint(digest, names, y.tobytes()), num_classes=10,
                   source=str(base))


CARS_TEMPLATES = ("a photo of a {}.", "a photo of the {}.", "a photo of my {}.", "i love my {}!",
                  "a photo of my dirty {}.", "a photo of my clean {}.", "a photo of my new {}.",
                  "a photo of my old {}.")


def load_cars(data_root: str | None) -> RawData:
    """Stanford Cars in torchvision's layout: cars_train/, cars_test/, devkit/cars_meta.mat,
    devkit/cars_train_annos.mat and cars_test_annos_withlabels.mat. Class names come from the
    devkit; images are stored as CLIP's eval view."""
    import numpy as np
    import torch
    from scipy.io import loadmat

    need = ("cars_train", "cars_test", "devkit/cars_meta.mat", "devkit/cars_train_annos.mat",
            "cars_test_annos_withlabels.mat")
    base = _first_dir(data_root, ("stanford_cars", "cars", ""), lambda b: all((b / n).exists() for n in need),
                      "Stanford Cars was not found: put cars_train/, cars_test/, devkit/ (cars_meta.mat, "
                      "cars_train_annos.mat) and cars_test_annos_withlabels.mat in <root>/stanford_cars and pass "
                      "--data-root.")

    def mat(rel):
        try:
            return loadmat(str(base / rel), squeeze_me=True)
        except Exception as e:
            raise DataNotFound(f"{base / rel} is not a readable .mat file ({type(e).__name__}: {e})") from None

    d = DEFINITIONS["cars"]
    names = [str(n) for n in np.atleast_1d(mat("devkit/cars_meta.mat")["class_names"]).tolist()]
    d.check_classes(len(names), str(base / "devkit/cars_meta.mat"))
    files, labels = [], []
    for folder, rel, split in (("cars_train", "devkit/cars_train_annos.mat", "train"),
                               ("cars_test", "cars_test_annos_withlabels.mat", "test")):
        annos = np.atleast_1d(mat(rel)["annotations"])
        d.check_count(split, len(annos), str(base / rel))
        files.append([str(base / folder / str(a["fname"])) for a in annos])
        labels.append([int(a["class"]) - 1 for a in annos])  # classes are numbered from 1
    y = np.array(labels[0] + labels[1], dtype=np.int64)
    if y.min() < 0 or y.max() >= len(names):
        raise DataNotFound(f"{base}: annotation classes must run 1..{len(names)} (cars_meta.mat lists {len(names)})")
    x, digest = read_images(files[0] + files[1])
    n = len(files[0])
    return RawData(x=torch.from_numpy(x), y=torch.from_numpy(y), train_pool=np.arange(n), test=np.arange(n, len(y)),
                   fingerprint=fingerprint(digest, "\n".join(names).encode(), y.tobytes()), num_classes=len(names),
                   source=str(base), classnames=tuple(names))


DTD_TEMPLATES = tuple(f"a photo of {a} {{}} {w}." for a in ("a", "the") for w in ("texture", "pattern", "thing",
                                                                                 "object"))


def load_dtd(data_root: str | None) -> RawData:
    """DTD, split 1, as [TTA] uses it: train1 + val1 form the train split (re-split by the [NM]
    rule), test1 is the test split. Read from the release (dtd/images + dtd/labels/*1.txt) or from
    [TTA]'s prepared folders (dtd/train = train1 + val1, dtd/val = test1); both give the same
    file order, so the same manifest. Class names are the folder names."""
    import numpy as np
    import torch

    def ok(b):
        labels = all((b / "labels" / f"{p}1.txt").is_file() for p in ("train", "val", "test"))
        return (b / "images").is_dir() and labels or (b / "train").is_dir() and (b / "val").is_dir()

    base = _first_dir(data_root, ("dtd", "dtd/dtd"), ok,
                      "DTD was not found: unpack dtd-r1.0.1.tar.gz so that <root>/dtd holds images/ and labels/ (or "
                      "[TTA]'s prepared dtd/train and dtd/val folders) and pass --data-root.")
    if (base / "images").is_dir() and (base / "labels").is_dir():
        classes = sorted(e.name for e in os.scandir(base / "images") if e.is_dir())
        index = {c: i for i, c in enumerate(classes)}

        def listed(*names):
            rels = []
            for n in names:
                rels += [ln.strip() for ln in (base / "labels" / n).read_text().splitlines() if ln.strip()]
            rels = sorted(rels, key=lambda r: (r.split("/")[0], r.split("/")[-1]))  # ImageFolder order
            bad = [r for r in rels if r.split("/")[0] not in index]
            if bad:
                raise DataNotFound(f"{base}/labels lists {bad[0]!r}, whose class folder is not in images/")
            return [(str(base / "images" / r), index[r.split("/")[0]]) for r in rels]

        train, test = listed("train1.txt", "val1.txt"), listed("test1.txt")
        where = (base / "images", f"{base / 'labels'}/train1.txt + val1.txt", str(base / "labels" / "test1.txt"))
    else:
        classes = sorted(e.name for e in os.scandir(base / "train") if e.is_dir())
        if sorted(e.name for e in os.scandir(base / "val") if e.is_dir()) != classes:
            raise DataNotFound(f"{base}: train/ and val/ must hold the same class folders")
        train, test = list_class_folders(base / "train"), list_class_folders(base / "val")
        where = (base / "train", str(base / "train"), str(base / "val"))
    d = DEFINITIONS["dtd"]
    d.check_classes(len(classes), str(where[0]))
    d.check_count("train", len(train), where[1])
    d.check_count("test", len(test), where[2])
    files = train + test
    x, digest = read_images([f for f, _ in files])
    y = np.array([c for _, c in files], dtype=np.int64)
    names = tuple(c.replace("_", " ") for c in classes)
    return RawData(x=torch.from_numpy(x), y=torch.from_numpy(y), train_pool=np.arange(len(train)),
                   test=np.arange(len(train), len(files)),
                   fingerprint=fingerprint(digest, "\n".join(classes).encode(), y.tobytes()),
                   num_classes=len(classes), source=str(base), classnames=names)


# -- ImageNet, the control ----------------------------------------------------------------------

_CONTROL_CACHE: dict = {}


def load_imagenet_control(data_root: str | None, n_classes: int = 1000) -> tuple[RawData, dict]:
    """ImageNetVal (5,000 images held out from ImageNet train by the [NM] rule) then ImageNet
    val (50,000): rows 0..4,999 are control_val, the rest control_test."""
    import numpy as np
    import torch

    base = _first_dir(data_root, ("imagenet",), lambda b: (b / "train").is_dir() and (b / "val").is_dir(),
                      IMAGENET_HELP)
    key = (str(base.resolve()), n_classes)
    if key in _CONTROL_CACHE:  # 55,000 decoded images: read once per process (a sweep runs many cells)
        return _CONTROL_CACHE[key]
    train = list_class_folders(base / "train")
    val = list_class_folders(base / "val")
    n_train_classes = len({e.name for e in os.scandir(base / "train") if e.is_dir()})
    if n_train_classes != n_classes or len({e.name for e in os.scandir(base / "val") if e.is_dir()}) != n_classes:
        raise DataNotFound(f"{base}: train/ and val/ must each hold {n_classes} class folders (one per wnid); "
                           f"train/ has {n_train_classes}")
    if not val:
        raise DataNotFound(f"{base}/val holds no images: sort the 50,000 val images into class folders")
    _, held = nm_val_split(len(train))
    chosen = [train[i] for i in held] + val
    x, digest = read_images([p for p, _ in chosen])
    y = np.array([c for _, c in chosen], dtype=np.int64)
    names = [os.path.relpath(p, base) for p, _ in chosen]
    raw = RawData(x=torch.from_numpy(x), y=torch.from_numpy(y), train_pool=np.arange(len(held)),
                  test=np.arange(len(held), len(chosen)),
                  fingerprint=fingerprint(digest, "\n".join(names).encode(), y.tobytes()),
                  num_classes=n_classes, source=str(base))
    _CONTROL_CACHE[key] = raw, {"imagenet_train_n": len(train), "imagenet_train_held": [int(i) for i in held]}
    return _CONTROL_CACHE[key]
