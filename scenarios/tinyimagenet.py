"""Tiny ImageNet (200 classes, 64x64 RGB JPEGs) [P T B9].

PROTOCOL §1.1: the 100k train images give 10,000 val (50 per class) and 90,000 train; the
official val split (10,000, labelled) is D_test, since the test labels are unpublished.
Model: the CIFAR ResNet-18 at 64 px with the CIFAR-10 recipe and RandomCrop 64 pad 4 +
HFlip (§2.1); pool: the CIFAR-10 grid (§6.3). A GPU scenario.

Files are found under ``--data-root`` (or UNLEARNBENCH_DATA), as the CS231n release ships
them: ``tiny-imagenet-200/`` unpacked, or ``tiny-imagenet-200.zip`` read without unpacking.
Class ids follow the sorted WordNet ids (torchvision's ImageFolder order, not wnids.txt's).
The fingerprint hashes the JPEG bytes and the labels, so it does not depend on the JPEG
decoder; the unpacked folder and the zip give the same manifests.
"""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from unlearnbench import ClassifierScenario, DataNotFound, RawData, Recipe, classifier_pool, hookimpl, paper_table
from unlearnbench.data import Definition, find_or_download, fingerprint, native_view

TOP = "tiny-imagenet-200"
SIDE = 64
# What the release holds (checked by the loader; the test suite uses DEFINITION.small() for its small files).
DEFINITION = Definition("Tiny ImageNet", n_train=100_000, n_test=10_000, side=SIDE, classes=200, train_per_class=500)
HOW_TO_GET = (
    "Tiny ImageNet was not found. Download tiny-imagenet-200.zip (http://cs231n.stanford.edu/tiny-imagenet-200.zip) "
    "and pass the folder that holds it, or the unpacked tiny-imagenet-200/, with --data-root (or UNLEARNBENCH_DATA). "
    "Looked in: {looked}"
)


# The fine-tune pool (PROTOCOL §6.3): SGD momentum 0.9, constant lr, BN in train mode,
# epochs x wd x label smoothing = 27 members.
POOL = classifier_pool("default", 0.05, 256, (40, 50, 60), "crop_flip", "[OURS]: the CIFAR-10 grid")


class _Folder:
    def __init__(self, root: Path):
        self.root, self.where = root, str(root)

    def read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def listdir(self, rel: str) -> list[str]:
        d = self.root / rel
        return sorted(p.name for p in d.iterdir() if p.is_file()) if d.is_dir() else []


class _Zip:
    def __init__(self, path: Path):
        self.where = str(path)
        try:
            self.zf = zipfile.ZipFile(path)
            names = self.zf.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            raise DataNotFound(f"{path} is not a readable zip ({e}); download it again or unpack it") from None
        self.files = {n[len(TOP) + 1:] for n in names if n.startswith(TOP + "/") and not n.endswith("/")}

    def read(self, rel: str) -> bytes:
        try:
            return self.zf.read(f"{TOP}/{rel}")
        except (KeyError, zipfile.BadZipFile, OSError, EOFError) as e:
            raise DataNotFound(f"{self.where}: cannot read {rel} ({type(e).__name__}: {e}); the archive is "
                               "incomplete or corrupt") from None

    def listdir(self, rel: str) -> list[str]:
        pre = rel.rstrip("/") + "/"
        return sorted(f[len(pre):] for f in self.files if f.startswith(pre) and "/" not in f[len(pre):])


def _find(root: Path):
    for cand in (root / TOP, root):
        if (cand / "wnids.txt").is_file():
            return _Folder(cand)
    if (root / f"{TOP}.zip").is_file():
        return _Zip(root / f"{TOP}.zip")
    return None


def locate(data_root: str | None):
    """The release (a folder or the zip), and how it was found."""
    return find_or_download(data_root, _find, HOW_TO_GET)


def _text(src, rel: str) -> str:
    try:
        return src.read(rel).decode("utf-8")
    except FileNotFoundError:
        raise DataNotFound(f"{src.where} lacks {rel}: not a complete Tiny ImageNet release") from None


# One JPEG as uint8 (3, 64, 64); grayscale images (a few hundred in the release) become RGB.
decode = native_view(SIDE, "Tiny ImageNet images")


def load(data_root: str | None) -> RawData:
    import numpy as np
    import torch

    src, how = locate(data_root)
    wnids = sorted(w for w in _text(src, "wnids.txt").split() if w)
    if len(set(wnids)) != len(wnids) or not wnids:
        raise DataNotFound(f"{src.where}: wnids.txt is empty or lists a class twice")
    DEFINITION.check_classes(len(wnids), f"{src.where}: wnids.txt")
    label = {w: i for i, w in enumerate(wnids)}
    files: list[tuple[str, int]] = []
    for w in wnids:
        names = [n for n in src.listdir(f"train/{w}/images") if n.lower().endswith((".jpeg", ".jpg"))]
        if not names:
            raise DataNotFound(f"{src.where}: train/{w}/images holds no JPEGs; the release is incomplete")
        DEFINITION.check_per_class(len(names), f"{src.where}: train/{w}/images")
        files += [(f"train/{w}/images/{n}", label[w]) for n in names]
    n_train = len(files)
    for line in _text(src, "val/val_annotations.txt").splitlines():
        if not line.strip():
            continue
        name, w = line.split("\t")[:2]
        if w not in label:
            raise DataNotFound(f"{src.where}: val/val_annotations.txt labels {name} with {w}, not in wnids.txt")
        files.append((f"val/images/{name}", label[w]))
    if len(files) == n_train:
        raise DataNotFound(f"{src.where}: val/val_annotations.txt lists no images")
    DEFINITION.check_count("train", n_train, f"{src.where}: train/")
    DEFINITION.check_count("test", len(files) - n_train, f"{src.where}: val/val_annotations.txt")
    x = np.empty((len(files), 3, SIDE, SIDE), dtype=np.uint8)
    digests = []
    for i, (rel, _) in enumerate(files):
        raw = src.read(rel)
        digests.append(hashlib.sha256(raw).digest())
        x[i] = decode(raw, f"{src.where}: {rel}")
    y = np.array([c for _, c in files], dtype=np.int64)
    return RawData(
        x=torch.from_numpy(x).float().div_(255.0),
        y=torch.from_numpy(y),
        train_pool=np.arange(n_train),
        test=np.arange(n_train, len(y)),
        fingerprint=fingerprint(b"".join(digests), y.tobytes(), "\n".join(wnids).encode()),
        num_classes=len(wnids),
        source=f"{src.where} ({how})",
    )


class TinyImageNet(ClassifierScenario):
    gpu_scale = True  # the runner warns before training it on CPU
    title = "Tiny ImageNet, CIFAR ResNet-18 at 64 px; GPU scale"
    arch = "resnet18-tiny"
    in_channels = 3
    val_frac = 0.1  # 10,000 of 100,000, 50 per class [PROTOCOL §1.1]
    threads = 8  # host-side batch work on a GPU machine; never more than the free cores (runner)
    recipe = Recipe(epochs=182, batch=256, lr=0.1, momentum=0.9, wd=5e-4, schedule="multistep",
                    milestones=(91, 136), augment="crop_flip")  # "as cifar10", RandomCrop 64 pad 4 [§2.1]
    pools = {"default": POOL}

    def load_raw(self, data_root: str | None) -> RawData:
        return load(data_root)


# The paper's reported numbers for these scenarios (PROTOCOL §9.3-9.4), shown as labelled rows
# beside the measured ones, never mixed with them. % (mean, std or None); "80.58d" = derived.
PAPER_TINYIMAGENET_10PCT = paper_table("P T B9", [
    ("retrain", "Retrain*", "retain", 99.98, 63.60, 63.67, 63.77, 0.00),
    ("random-label-forget", "RL-forget", "forget", 76.43, 76.09, 58.09, 32.33, 18.27),
    ("salun-forget", "SalUn-forget", "forget", 73.61, 73.81, 56.68, 30.59, 19.19),
    ("task-arithmetic", "TA single best†", "forget", 77.54, 73.63, 59.62, 30.14, 17.54),
    ("negmerge", "NegMerge", "forget", 75.95, 71.87, 58.58, 31.34, 17.46),
])


@hookimpl
def register_scenarios(register):
    register(TinyImageNet("tinyimagenet-10pct", "random", paper=PAPER_TINYIMAGENET_10PCT))
    register(TinyImageNet("tinyimagenet-class", "class"))
