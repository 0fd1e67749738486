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
    "gtsrb": Definition("GTSRB", n_train=26_640, n_test=12_630, classes=43),  # GTSRB-Training_fixed | Final_Test
    "resisc45": Definition("RESISC45", n_train=18_900, n_test=6_300, classes=45),  # resisc45-train.txt only
    "sun397": Definition("SUN397", n_train=19_850, n_test=19_850, classes=397),  # partition 01: 50 + 50 per class
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


# -- GTSRB, RESISC45, SUN397 ([TTA]'s loaders, which [NM] inherits; PROTOCOL §1.3) --------------------

# OpenAI CLIP's data/prompts.md descriptions, by ClassId, as [TTA] copies them (its typos kept: they are
# the prompts the paper's heads were built from)
GTSRB_CLASSES = (
    "red and white circle 20 kph speed limit", "red and white circle 30 kph speed limit",
    "red and white circle 50 kph speed limit", "red and white circle 60 kph speed limit",
    "red and white circle 70 kph speed limit", "red and white circle 80 kph speed limit",
    "end / de-restriction of 80 kph speed limit", "red and white circle 100 kph speed limit",
    "red and white circle 120 kph speed limit", "red and white circle red car and black car no passing",
    "red and white circle red truck and black car no passing", "red and white triangle road intersection warning",
    "white and yellow diamond priority road", "red and white upside down triangle yield right-of-way", "stop",
    "empty red and white circle", "red and white circle no truck entry",
    "red circle with white horizonal stripe no entry", "red and white triangle with exclamation mark warning",
    "red and white triangle with black left curve approaching warning",
    "red and white triangle with black right curve approaching warning",
    "red and white triangle with black double curve approaching warning",
    "red and white triangle rough / bumpy road warning", "red and white triangle car skidding / slipping warning",
    "red and white triangle with merging / narrow lanes warning",
    "red and white triangle with person digging / construction / road work warning",
    "red and white triangle with traffic light approaching warning",
    "red and white triangle with person walking warning",
    "red and white triangle with child and person walking warning",
    "red and white triangle with bicyle warning", "red and white triangle with snowflake / ice warning",
    "red and white triangle with deer warning", "white circle with gray strike bar no speed limit",
    "blue circle with white right turn arrow mandatory", "blue circle with white left turn arrow mandatory",
    "blue circle with white forward arrow mandatory", "blue circle with white forward or right turn arrow mandatory",
    "blue circle with white forward or left turn arrow mandatory", "blue circle with white keep right arrow mandatory",
    "blue circle with white keep left arrow mandatory", "blue circle with white arrows indicating a traffic circle",
    "white circle with gray strike bar indicating no passing for cars has ended",
    "white circle with gray strike bar indicating no passing for trucks has ended",
)
GTSRB_TEMPLATES = tuple(f'a {v} photo of a "{{}}" traffic sign.' for v in ("zoomed in", "centered", "close up"))
RESISC45_TEMPLATES = tuple(f"{k} {v} of {a}{{}}." for a in ("", "a ", "the ")
                           for v in ("imagery", "photo", "view") for k in ("satellite", "aerial"))
SUN397_TEMPLATES = ("a photo of a {}.", "a photo of the {}.")


def _need_files(paths: list[str], listed_in: str) -> None:
    """Every image a split list names must be there: a missing one means an incomplete copy."""
    for p in paths:
        if not os.path.isfile(p):
            raise DataNotFound(f"{listed_in} lists {p}, which is not there: the copy of the data set is incomplete")


def load_gtsrb(data_root: str | None) -> RawData:
    """GTSRB as [TTA] reads it, under <root>/gtsrb: GTSRB/Training/<ClassId:05d>/*.ppm (the class folders
    sorted, the .ppm files sorted in each; the folders' GT-*.csv ignored) is the train split, and
    GTSRB/Final_Test/Images/*.ppm in the order of GT-final_test.csv (``;``-separated, its Filename and
    ClassId) the test split. Class c is named by the c-th CLIP description."""
    import csv

    import numpy as np
    import torch

    def ok(b):
        return (b / "GTSRB" / "Training").is_dir() and (b / "GTSRB" / "Final_Test" / "Images").is_dir()

    base = _first_dir(data_root, ("gtsrb",), ok,
                      "GTSRB was not found: unpack GTSRB-Training_fixed.zip and GTSRB_Final_Test_Images.zip into "
                      "<root>/gtsrb (giving gtsrb/GTSRB/Training/00000..00042 and gtsrb/GTSRB/Final_Test/Images), "
                      "put GT-final_test.csv (GTSRB_Final_Test_GT.zip) in <root>/gtsrb, and pass --data-root.")
    train_dir, test_dir, gt = base / "GTSRB" / "Training", base / "GTSRB" / "Final_Test" / "Images", \
        base / "GT-final_test.csv"
    folders = sorted(e.name for e in os.scandir(train_dir) if e.is_dir())
    # the folder's rank is its label and the test CSV's ClassId is the label: they agree only if the
    # folders are the ClassIds 00000, 00001, ... with none left out
    if folders != [f"{i:05d}" for i in range(len(folders))] or len(folders) > len(GTSRB_CLASSES):
        raise DataNotFound(f"{train_dir} must hold the class folders 00000, 00001, ... (one per ClassId, up to "
                           f"{len(GTSRB_CLASSES) - 1:05d}), not {folders[:5]}{' ...' if len(folders) > 5 else ''}")
    d = DEFINITIONS["gtsrb"]
    d.check_classes(len(folders), str(train_dir))
    train = []
    for c, name in enumerate(folders):
        files = sorted(e.name for e in os.scandir(train_dir / name)
                       if e.is_file() and e.name.lower().endswith(".ppm"))
        train += [(str(train_dir / name / f), c) for f in files]
    if not gt.is_file():
        raise DataNotFound(f"{gt} is missing: it holds the test labels (GTSRB_Final_Test_GT.zip)")
    try:
        with open(gt, newline="") as f:
            test = [(str(test_dir / row["Filename"]), int(row["ClassId"]))
                    for row in csv.DictReader(f, delimiter=";", skipinitialspace=True)]
    except (KeyError, ValueError, TypeError) as e:
        raise DataNotFound(f"{gt} is not GTSRB's test CSV (';'-separated with Filename and ClassId columns): "
                           f"{type(e).__name__}: {e}") from None
    d.check_count("train", len(train), str(train_dir))
    d.check_count("test", len(test), str(gt))
    _need_files([p for p, _ in test], str(gt))
    y = np.array([c for _, c in train + test], dtype=np.int64)
    d.check_labels(y, str(gt), classes=len(folders))
    x, digest = read_images([p for p, _ in train + test])
    names = "\n".join(os.path.relpath(p, base) for p, _ in train + test).encode()
    return RawData(x=torch.from_numpy(x), y=torch.from_numpy(y), train_pool=np.arange(len(train)),
                   test=np.arange(len(train), len(y)), fingerprint=fingerprint(digest, names, y.tobytes()),
                   num_classes=len(folders), source=str(base), classnames=GTSRB_CLASSES[:len(folders)])


def load_resisc45(data_root: str | None) -> RawData:
    """RESISC45 as [TTA] reads it: the class folders of <root>/resisc45/NWPU-RESISC45 (sorted; files sorted
    in each, ImageFolder's order), keeping the files whose names resisc45-train.txt lists as the train
    split (its val list is not used, PROTOCOL §1.3) and those resisc45-test.txt lists as the test split.
    Class names are the folder names with ``_`` as spaces."""
    import numpy as np
    import torch

    def ok(b):
        return (b / "NWPU-RESISC45").is_dir() and all((b / f"resisc45-{p}.txt").is_file() for p in ("train", "test"))

    base = _first_dir(data_root, ("resisc45",), ok,
                      "RESISC45 was not found: unpack NWPU-RESISC45.rar into <root>/resisc45 (giving "
                      "resisc45/NWPU-RESISC45/<class>/*.jpg), put the split lists resisc45-train.txt and "
                      "resisc45-test.txt (of Neumann et al. 2019, as [TTA] uses) beside it, and pass --data-root.")
    images = base / "NWPU-RESISC45"
    classes = sorted(e.name for e in os.scandir(images) if e.is_dir())
    d = DEFINITIONS["resisc45"]
    d.check_classes(len(classes), str(images))
    every = [(c, name) for c, cls in enumerate(classes)
             for name in sorted(e.name for e in os.scandir(images / cls) if e.is_file())]
    parts = {}
    for part in ("train", "test"):
        lst = base / f"resisc45-{part}.txt"
        wanted = {ln.strip() for ln in lst.read_text().splitlines() if ln.strip()}
        parts[part] = [(str(images / classes[c] / name), c) for c, name in every if name in wanted]
        found = {os.path.basename(p) for p, _ in parts[part]}
        if wanted - found:
            raise DataNotFound(f"{lst} lists {sorted(wanted - found)[0]!r}, which is in no class folder of {images}"
                               f" ({len(wanted - found)} listed files missing)")
        d.check_count(part, len(parts[part]), str(lst))
    files = parts["train"] + parts["test"]
    x, digest = read_images([p for p, _ in files])
    y = np.array([c for _, c in files], dtype=np.int64)
    names = "\n".join(os.path.relpath(p, base) for p, _ in files).encode()
    return RawData(x=torch.from_numpy(x), y=torch.from_numpy(y), train_pool=np.arange(len(parts["train"])),
                   test=np.arange(len(parts["train"]), len(files)), fingerprint=fingerprint(digest, names, y.tobytes()),
                   num_classes=len(classes), source=str(base), classnames=tuple(c.replace("_", " ") for c in classes))


SUN397_PARTITION = ("Training_01.txt", "Testing_01.txt")  # partition 01 [TTA]


def sun397_folder(category: str) -> str:
    """[TTA]'s prepared folder name of a SUN397 category: ``/b/bakery/shop`` -> ``b_bakery_shop``."""
    return category.strip().strip("/").replace("/", "_")


def load_sun397(data_root: str | None) -> RawData:
    """SUN397, partition 01, from either of its layouts, which give one manifest (PROTOCOL §1.3):

    - the release, <root>/SUN397 (or <root>/sun397/SUN397) with ClassName.txt, Training_01.txt and
      Testing_01.txt beside the letter folders; each category is mapped to [TTA]'s folder name
      (``sun397_folder``);
    - [TTA]'s prepared class folders <root>/sun397/train (Training_01) and sun397/val (Testing_01).

    Either way the class order is the folder names sorted as strings, files sorted by name in each class
    (ImageFolder's order), and a class's zero-shot name is its folder name without the letter prefix, ``_``
    as spaces (``bakery shop``)."""
    import numpy as np
    import torch

    def release(b):
        return all((b / f).is_file() for f in ("ClassName.txt", *SUN397_PARTITION))

    def prepared(b):
        return (b / "train").is_dir() and (b / "val").is_dir()

    base = _first_dir(data_root, ("sun397", "SUN397", "sun397/SUN397"), lambda b: release(b) or prepared(b),
                      "SUN397 was not found: unpack SUN397.tar.gz into <root> (giving <root>/SUN397/a/abbey/...) and "
                      "Partitions.zip into <root>/SUN397 (ClassName.txt, Training_01.txt, Testing_01.txt), or put "
                      "[TTA]'s prepared sun397/train and sun397/val class folders in <root>; pass --data-root.")
    d = DEFINITIONS["sun397"]
    if release(base):
        lines = [ln for ln in (base / "ClassName.txt").read_text().splitlines() if ln.strip()]
        classes = sorted(sun397_folder(c) for c in lines)
        index = {c: i for i, c in enumerate(classes)}
        parts = []
        for part in SUN397_PARTITION:
            rows = []
            for ln in (base / part).read_text().splitlines():
                if not ln.strip():
                    continue
                rel = ln.strip().lstrip("/")
                folder = sun397_folder(os.path.dirname(rel))
                if folder not in index:
                    raise DataNotFound(f"{base / part} lists {ln.strip()!r}, whose category is not in ClassName.txt")
                rows.append((folder, os.path.basename(rel), str(base / rel)))
            rows.sort(key=lambda r: (r[0], r[1]))  # ImageFolder's order on the prepared folders
            _need_files([p for *_, p in rows], str(base / part))
            parts.append([(p, index[f]) for f, _, p in rows])
        train, test = parts
        where = (base / "ClassName.txt", base / SUN397_PARTITION[0], base / SUN397_PARTITION[1])
    else:
        classes = sorted(e.name for e in os.scandir(base / "train") if e.is_dir())
        if sorted(e.name for e in os.scandir(base / "val") if e.is_dir()) != classes:
            raise DataNotFound(f"{base}: train/ and val/ must hold the same class folders")
        train, test = list_class_folders(base / "train"), list_class_folders(base / "val")
        where = (base / "train", base / "train", base / "val")
    d.check_classes(len(classes), str(where[0]))
    d.check_count("train", len(train), str(where[1]))
    d.check_count("test", len(test), str(where[2]))
    files = train + test
    x, digest = read_images([p for p, _ in files])
    y = np.array([c for _, c in files], dtype=np.int64)
    return RawData(x=torch.from_numpy(x), y=torch.from_numpy(y), train_pool=np.arange(len(train)),
                   test=np.arange(len(train), len(files)),
                   fingerprint=fingerprint(digest, "\n".join(classes).encode(), y.tobytes()),
                   num_classes=len(classes), source=str(base),
                   classnames=tuple(c[2:].replace("_", " ") for c in classes))
