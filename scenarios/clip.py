"""CLIP dataset negation (PROTOCOL §1.3, §2.2): forget a whole data set, keep ImageNet.

θ_0 is a pretrained CLIP image encoder with frozen zero-shot heads (``unlearnbench.clip``).
There is no original training and no Retrain: a run reports Acc D_f (the forget data set's
official test split) and Acc D_r (ImageNet val, the control), and λ is chosen by the
control-threshold rule on D_f^val and ImageNetVal, a 5,000-image split of ImageNet train
(§5 (a)). Only methods that read D_f and val apply: the merge family and Task Arithmetic.

Splits, by the [NM] rule: D_f^val is 10% of the data set's train split, at most 5,000, drawn
by torch.randperm with generator seed 0 in the order the files are read; D_f^train is the
rest. The drawn indices are stored in the manifest, never regenerated (§1.3).

Implemented forget data sets, each in its native (torchvision / [TTA]) layout: MNIST (IDX),
SVHN (.mat), EuroSAT (the [TTA] train/val/test class folders; its val split is predefined),
Cars (the Stanford release with its devkit .mat files) and DTD (the release's split 1, as
[TTA] uses it). ImageNet (the control) is read from the standard class-folder layout. GTSRB,
RESISC45 and SUN397 are not implemented yet.

Storage: a data set is kept in memory as uint8 at its native size (MNIST 28 × 28) or, for
photos, as CLIP's eval view (Resize 224 bicubic + CenterCrop 224); the model does the rest of
the preprocessing. Train-time crops are taken from that stored image [OURS].
"""
from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from unlearnbench import Choice, DataNotFound, RawData, hookimpl
from unlearnbench.errors import ConfigError
from unlearnbench.pools import CLIP_EPOCHS_RANDAUG, CLIP_EPOCHS_TA, CLIP_POOLS
from unlearnbench.scenario import Scenario, Task, data_roots, fingerprint
from unlearnbench.seeding import sha256_hex, stream_seed

VAL_FRAC, VAL_CAP = 0.1, 5000  # [NM], [TTA] split_train_into_train_val
SIDE = 224
# [TTA] templates and class names, as data (PROTOCOL §2.2: MNIST 1 template)
MNIST_TEMPLATES = ('a photo of the number: "{}".',)
MNIST_CLASSES = tuple(str(i) for i in range(10))
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

    from unlearnbench.scenarios.fmnist import find_idx, read_idx_set

    base = _first_dir(data_root, ("MNIST/raw", "mnist", ""), lambda b: find_idx(b) is not None,
                      "MNIST was not found. Put the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                      "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, optionally .gz) in <root>/MNIST/raw "
                      "(torchvision's layout) and pass --data-root <root>.")
    x, y, n_train, raw_bytes = read_idx_set(find_idx(base), "MNIST")
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


def native_view(side: int):
    """A decoder for data sets whose images are all ``side`` × ``side`` (kept as they are); any other
    size is an error: the data set is not the one expected."""
    def decode(raw: bytes, where: str):
        import numpy as np
        from PIL import Image

        try:
            with Image.open(io.BytesIO(raw)) as im:
                arr = np.asarray(im.convert("RGB"))
        except Exception as e:
            raise DataNotFound(f"{where} is not a readable image ({type(e).__name__}: {e})") from None
        if arr.shape[:2] != (side, side):
            raise DataNotFound(f"{where} is {arr.shape[1]} x {arr.shape[0]}, the data set's images are {side} x {side}")
        return arr.transpose(2, 0, 1)

    return decode


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

    names = [str(n) for n in np.atleast_1d(mat("devkit/cars_meta.mat")["class_names"]).tolist()]
    files, labels = [], []
    for folder, rel in (("cars_train", "devkit/cars_train_annos.mat"), ("cars_test", "cars_test_annos_withlabels.mat")):
        annos = np.atleast_1d(mat(rel)["annotations"])
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
    else:
        classes = sorted(e.name for e in os.scandir(base / "train") if e.is_dir())
        if sorted(e.name for e in os.scandir(base / "val") if e.is_dir()) != classes:
            raise DataNotFound(f"{base}: train/ and val/ must hold the same class folders")
        train, test = list_class_folders(base / "train"), list_class_folders(base / "val")
    files = train + test
    x, digest = read_images([f for f, _ in files])
    y = np.array([c for _, c in files], dtype=np.int64)
    names = tuple(c.replace("_", " ") for c in classes)
    return RawData(x=torch.from_numpy(x), y=torch.from_numpy(y), train_pool=np.arange(len(train)),
                   test=np.arange(len(train), len(files)),
                   fingerprint=fingerprint(digest, "\n".join(classes).encode(), y.tobytes()),
                   num_classes=len(classes), source=str(base), classnames=names)


# -- ImageNet, the control ----------------------------------------------------------------------

def clip_view(raw: bytes, where: str):
    """CLIP's eval transform on one image file: Resize(224, bicubic), CenterCrop(224); uint8 (3, 224, 224)."""
    from unlearnbench.scenarios.cub200 import eval_view

    return eval_view(raw, where, SIDE, SIDE, bicubic=True)


IMG_EXT = (".jpeg", ".jpg", ".png", ".bmp", ".webp")


def list_class_folders(folder: Path) -> list[tuple[str, int]]:
    """(path, class index) in torchvision ImageFolder order: classes by sorted folder name, files sorted."""
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    out = []
    for c, name in enumerate(classes):
        files = sorted(e.name for e in os.scandir(folder / name)
                       if e.is_file() and e.name.lower().endswith(IMG_EXT))
        out.extend((str(folder / name / f), c) for f in files)
    return out


def read_images(paths: list[str], decode=clip_view, side: int = SIDE, threads: int = 8):
    """Decode many image files with ``decode(raw, where) -> uint8 (3, side, side)`` in parallel (PIL
    releases the GIL while decoding); returns the stacked images and a digest of the files' bytes."""
    import numpy as np

    x = np.empty((len(paths), 3, side, side), dtype=np.uint8)
    h = hashlib.sha256()

    def one(i):
        with open(paths[i], "rb") as f:
            raw = f.read()
        x[i] = decode(raw, paths[i])
        return hashlib.sha256(raw).digest()

    with ThreadPoolExecutor(max(1, min(threads, os.cpu_count() or 1))) as ex:
        for d in ex.map(one, range(len(paths))):
            h.update(d)
    return x, h.digest()


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


# -- the task and the scenario -------------------------------------------------------------------

class ClipTask(Task):
    """A trial of CLIP dataset negation. Indices address one virtual array: the forget data set's
    rows first, then the control's (offset by ``n_forget``)."""

    control: RawData
    clip_arch: str

    def tensors(self, split: str):
        import torch

        idx = torch.as_tensor(self.indices(split), dtype=torch.long)
        n = len(self.data.y)
        if len(idx) and bool((idx >= n).any()):
            if bool((idx < n).any()):
                raise ConfigError(f"split {split!r} mixes forget and control rows")
            idx = idx - n
            return self.control.x[idx], self.control.y[idx]
        return self.data.x[idx], self.data.y[idx]

    def route(self, model, split: str | None) -> None:
        if hasattr(model, "head"):
            model.head = "control" if split is not None and split.startswith("control") else "forget"

    def new_model(self):
        from unlearnbench.clip import clip_classifier

        return clip_classifier(self.clip_arch, self.data.num_classes, self.control.num_classes)


class ControlTemplates(Choice):
    openai = "openai"
    simple = "simple"


@dataclass
class ClipConfig:
    arch: str = field(default="vit-b-32", metadata={
        "help": "CLIP image encoder: vit-b-32, vit-b-16, vit-l-14 (tiny: a 2-layer ViT for tests)",
        "source": "PROTOCOL §2.2"})
    weights: str = field(default="", metadata={
        "help": "the encoder's state dict (.safetensors or .pt/.bin); empty: "
                "<data-root>/clip/<arch>-openai.safetensors; 'random': random init (smoke tests only, the heads "
                "are meaningless)", "source": "PROTOCOL §2.2"})
    control_templates: ControlTemplates = field(default=ControlTemplates.openai, metadata={
        "help": "ImageNet prompt set for the control head: openai (80) or simple (open_clip's 10)",
        "source": "[TTA], PROTOCOL §2.2"})


@dataclass
class DatasetSpec:
    key: str  # the name in the epoch tables
    load: object
    classnames: tuple | None  # None: the loaded data set names its classes (Cars: its devkit)
    templates: tuple


FORGET_SETS = {
    "mnist": DatasetSpec("MNIST", load_mnist, MNIST_CLASSES, MNIST_TEMPLATES),
    "svhn": DatasetSpec("SVHN", load_svhn, MNIST_CLASSES, MNIST_TEMPLATES),  # [TTA]: the MNIST prompt
    "eurosat": DatasetSpec("EuroSAT", load_eurosat, tuple(EUROSAT_CLASSES[k] for k in sorted(EUROSAT_CLASSES)),
                           EUROSAT_TEMPLATES),
    "cars": DatasetSpec("Cars", load_cars, None, CARS_TEMPLATES),
    "dtd": DatasetSpec("DTD", load_dtd, None, DTD_TEMPLATES),
}


class ClipNegation(Scenario):
    """Forget one data set from a pretrained CLIP encoder, with ImageNet as the control (§1.3)."""

    Config = ClipConfig
    kind = "clip"
    suite_defaults = {"selection": {"name": "control_threshold", "grid": "clip"}}
    threads = 8

    def __init__(self, dataset: str):
        self.dataset = dataset
        self.spec = FORGET_SETS[dataset]
        self.name = f"clip-{dataset}"
        self.title = f"CLIP dataset negation: {self.spec.key}, ImageNet control; GPU scale"
        self.description = self.title
        self.gpu_scale = True
        ep_ra, ep_ta = CLIP_EPOCHS_RANDAUG[self.spec.key], CLIP_EPOCHS_TA[self.spec.key]
        self.pools = {}
        for name, grid in CLIP_POOLS.items():
            randaug = grid.base.augment == "clip_randaug"
            grid = grid.__class__(grid.name, grid.base.with_(epochs=ep_ra if randaug else ep_ta), grid.columns,
                                  grid.source, grid.draw)
            self.pools[name] = grid
        self.pools["default"] = self.pools["pool1_randaug"]  # [P App. A]

    def load_raw(self, data_root: str | None) -> RawData:
        return self.spec.load(data_root)

    def weights_path(self, cfg, data_root: str | None) -> str:
        if cfg.weights:
            return str(cfg.weights)
        for root, _ in data_roots(data_root):
            return str(root / "clip" / f"{cfg.arch}-openai.safetensors")
        raise DataNotFound(f"no CLIP weights: pass --data-root (the file goes to <root>/clip/{cfg.arch}-openai."
                           "safetensors) or -o scenario.weights=PATH")

    def make_manifest(self, raw: RawData, control: RawData, control_meta: dict, trial: int) -> dict:
        import numpy as np

        pool = np.asarray(raw.train_pool)
        if raw.val is not None:  # EuroSAT: the predefined val split [PROTOCOL §1.3]
            train, val = pool, np.asarray(raw.val)
        else:
            tr, va = nm_val_split(len(pool))
            train, val = pool[tr], pool[va]
        n = len(raw.y)
        splits = {"forget_train": train, "forget_val": val, "forget_test": np.asarray(raw.test),
                  "control_val": n + np.asarray(control.train_pool), "control_test": n + np.asarray(control.test)}
        splits["forget"] = splits["forget_train"]  # what methods and the pool read as D_f
        splits["val"] = splits["forget_val"]
        return {
            "scenario": self.name, "trial": trial, "fingerprint": raw.fingerprint,
            "control_fingerprint": control.fingerprint, "forget_class": None, "forget_pct": None,
            "splits": {k: [int(i) for i in v] for k, v in splits.items()},
            "sizes": {k: int(len(v)) for k, v in splits.items()},
            "seeds": {s: stream_seed(trial, s) for s in ("init", "order", "pool")},
            "split_seed": 0, **control_meta,
        }

    def build_task(self, cfg, trial: int, data_root: str | None, raw: RawData | None = None) -> Task:
        from unlearnbench.clip import check_arch, frozen_names

        check_arch(str(cfg.arch))
        raw = raw if raw is not None else self.load_raw(data_root)
        control, meta = load_imagenet_control(data_root)
        manifest = self.make_manifest(raw, control, meta, trial)
        base = self.pools["default"].base
        task = ClipTask(scenario=self.name, trial=trial, data=raw, manifest=manifest,
                        manifest_hash=sha256_hex(manifest), arch=f"clip-{cfg.arch}", in_channels=3, recipe=base,
                        pools=dict(self.pools), threads=self.threads, kind="clip", has_oracle=False,
                        original_source="pretrained",
                        report=("forget_test", "control_test", "forget_val", "control_val"), mia=False)
        task.control = control
        task.clip_arch = str(cfg.arch)
        task.frozen = frozen_names(n for n, _ in task.new_model().named_parameters())
        weights = "random" if cfg.weights == "random" else self.weights_path(cfg, data_root)
        from open_clip import zero_shot_metadata as zs

        templates = [t("{}") for t in (zs.OPENAI_IMAGENET_TEMPLATES if cfg.control_templates == "openai"
                                       else zs.SIMPLE_IMAGENET_TEMPLATES)]
        classnames = self.spec.classnames or raw.classnames
        if not classnames or len(classnames) != raw.num_classes:
            raise DataNotFound(f"{self.name}: {raw.num_classes} classes but {len(classnames or ())} class names")
        heads = {"forget": (list(classnames), list(self.spec.templates)),
                 "control": (list(zs.IMAGENET_CLASSNAMES), templates)}
        task.pretrained = lambda: _pretrained(task, weights, heads)
        return task


def _pretrained(task: ClipTask, weights: str, heads: dict):
    """(loader, tag): the tag names the weights' content and the prompts; loading waits for a store miss."""
    from pathlib import Path

    from unlearnbench.clip import file_digest, pretrained_state

    digest = "random" if weights == "random" else file_digest(task.clip_arch, Path(weights).expanduser())
    tag = f"clip:{task.clip_arch}:{digest}:{sha256_hex(heads)[:16]}"

    def load():
        state, _ = pretrained_state(task.clip_arch, weights, heads, task.data.num_classes, task.control.num_classes)
        return state

    return load, tag


@hookimpl
def register_scenarios(register):
    for name in FORGET_SETS:
        register(ClipNegation(name))
