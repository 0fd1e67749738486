"""CUB-200-2011 (11,788 bird photos, 200 classes) from ImageNet weights [P T B8].

PROTOCOL §1.1: the official train split (5,994) gives 10% per class as val (≈600) and the
rest as D_train; the official test split (5,794) is D_test. Model: torchvision's ResNet-18
from its ImageNet-1k weights with a new fc 512 -> 200 drawn from the init stream; SGD lr
0.01, cosine, 50 epochs, batch 64, RandomResizedCrop 224 + HFlip (§2.1); pool: §6.3.

Images are stored once as the standard evaluation view, Resize(256) then CenterCrop(224),
and the train-time RandomResizedCrop is taken from that view [OURS]: the data set then fits
in memory as one tensor and evaluation needs no transform.

Files are found under ``--data-root`` (or UNLEARNBENCH_DATA): ``CUB_200_2011/`` unpacked,
or ``CUB_200_2011.tgz`` read without unpacking. The fingerprint hashes the JPEG bytes, the
labels and the official split, so it does not depend on the image library.

The ImageNet weights: ``-o scenario.pretrained=torchvision`` (the default) takes torchvision's
``resnet18-f37072fd.pth`` from the torch hub cache, downloading it only when online; a path
loads a ``.safetensors`` file or a plain state dict (``torch.load(weights_only=True)``, so a
file cannot run code). Their digest is part of every stored model's key.
"""
from __future__ import annotations

import hashlib
import tarfile
from dataclasses import field, make_dataclass
from pathlib import Path

from unlearnbench import (ClassifierScenario, ConfigError, DataNotFound, RawData, Recipe, classifier_pool, hookimpl,
                          paper_table, tensor_digest)
from unlearnbench.data import Definition, eval_view, find_or_download, fingerprint, load_state_dict, offline

TOP = "CUB_200_2011"
RESIZE, SIDE = 256, 224
# What the release holds (checked by the loader; the test suite uses DEFINITION.small() for its small files).
DEFINITION = Definition("CUB-200-2011", n_train=5_994, n_test=5_794, classes=200)
TORCHVISION_FILE = "resnet18-f37072fd.pth"  # torchvision's ResNet18_Weights.IMAGENET1K_V1
HEAD = ("fc.",)  # drawn from the init stream, never loaded
HOW_TO_GET = (
    "CUB-200-2011 was not found. Download CUB_200_2011.tgz (https://data.caltech.edu/records/65de6-vp158) and pass "
    "the folder that holds it, or the unpacked CUB_200_2011/, with --data-root (or UNLEARNBENCH_DATA). Looked in: {looked}"
)


# The fine-tune pool (PROTOCOL §6.3): SGD momentum 0.9, constant lr, BN in train mode,
# epochs x wd x label smoothing = 27 members.
POOL = classifier_pool("default", 0.01, 64, (5, 10, 20), "rrc_flip", "[P App. A]")


class _Folder:
    def __init__(self, root: Path):
        self.root, self.where = root, str(root)

    def read_many(self, rels: list[str]) -> dict[str, bytes]:
        out = {}
        for rel in rels:
            try:
                out[rel] = (self.root / rel).read_bytes()
            except FileNotFoundError:
                raise DataNotFound(f"{self.where} lacks {rel}: not a complete CUB-200-2011 release") from None
        return out


class _Tgz:
    """Members read in one pass over the archive (a gzipped tar has no random access)."""

    def __init__(self, path: Path):
        self.where = str(path)
        self.path = path

    def read_many(self, rels: list[str]) -> dict[str, bytes]:
        want, out = {f"{TOP}/{r}": r for r in rels}, {}
        try:
            with tarfile.open(self.path, "r:gz") as tar:
                for m in tar:
                    if m.name in want and m.isfile():
                        out[want[m.name]] = tar.extractfile(m).read()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DataNotFound(f"{self.path} is not a complete CUB-200-2011 archive ({type(e).__name__}: {e}); "
                               "download it again or unpack it and pass the folder") from None
        missing = [r for r in rels if r not in out]
        if missing:
            raise DataNotFound(f"{self.path} lacks {missing[0]} (and {len(missing) - 1} more): not a complete "
                               "CUB-200-2011 archive")
        return out


def _find(root: Path):
    for cand in (root / TOP, root):
        if (cand / "images.txt").is_file():
            return _Folder(cand)
    if (root / f"{TOP}.tgz").is_file():
        return _Tgz(root / f"{TOP}.tgz")
    return None


def locate(data_root: str | None):
    """The release (a folder or the archive), and how it was found."""
    return find_or_download(data_root, _find, HOW_TO_GET)


def _table(text: str, where: str) -> dict[int, str]:
    out = {}
    for line in text.splitlines():
        if line.strip():
            parts = line.split(maxsplit=1)
            if len(parts) != 2 or not parts[0].isdigit():
                raise DataNotFound(f"{where}: malformed line {line!r}")
            out[int(parts[0])] = parts[1].strip()
    return out


def load(data_root: str | None) -> RawData:
    import numpy as np
    import torch

    src, how = locate(data_root)
    meta = src.read_many(["images.txt", "image_class_labels.txt", "train_test_split.txt"])
    images = _table(meta["images.txt"].decode(), "images.txt")
    labels = _table(meta["image_class_labels.txt"].decode(), "image_class_labels.txt")
    is_train = _table(meta["train_test_split.txt"].decode(), "train_test_split.txt")
    ids = sorted(images)
    if set(labels) != set(ids) or set(is_train) != set(ids):
        raise DataNotFound(f"{src.where}: images.txt, image_class_labels.txt and train_test_split.txt list different "
                           "image ids")
    y_all = np.array([int(labels[i]) - 1 for i in ids], dtype=np.int64)  # classes are numbered from 1
    num_classes = int(y_all.max()) + 1
    if y_all.min() < 0 or len(set(y_all.tolist())) != num_classes:
        raise DataNotFound(f"{src.where}: class ids must run 1..C without gaps")
    DEFINITION.check_classes(num_classes, f"{src.where}: image_class_labels.txt")
    order = [i for i in ids if is_train[i] == "1"] + [i for i in ids if is_train[i] != "1"]  # train, then test
    n_train = sum(is_train[i] == "1" for i in ids)
    if n_train == 0 or n_train == len(ids):
        raise DataNotFound(f"{src.where}: train_test_split.txt must mark both train (1) and test (0) images")
    DEFINITION.check_count("train", n_train, f"{src.where}: train_test_split.txt")
    DEFINITION.check_count("test", len(ids) - n_train, f"{src.where}: train_test_split.txt")
    files = src.read_many([f"images/{images[i]}" for i in order])
    x = np.empty((len(order), 3, SIDE, SIDE), dtype=np.uint8)
    digests = []
    for k, i in enumerate(order):
        raw = files[f"images/{images[i]}"]
        digests.append(hashlib.sha256(raw).digest())
        x[k] = eval_view(raw, f"{src.where}: images/{images[i]}", RESIZE, SIDE)
    y = np.array([int(labels[i]) - 1 for i in order], dtype=np.int64)
    return RawData(
        x=torch.from_numpy(x).float().div_(255.0),
        y=torch.from_numpy(y),
        train_pool=np.arange(n_train),
        test=np.arange(n_train, len(order)),
        fingerprint=fingerprint(b"".join(digests), y.tobytes(), np.array(order, dtype=np.int64).tobytes()),
        num_classes=num_classes,
        source=f"{src.where} ({how})",
    )


def load_pretrained(spec: str, model_state: dict) -> tuple[dict, str]:
    """The backbone weights named by ``scenario.pretrained``, checked against the model, and their digest."""
    import torch

    if spec == "torchvision":
        path = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE
        if not path.is_file() and not offline():
            try:  # torchvision's download, when online
                from torchvision.models import ResNet18_Weights, resnet18

                resnet18(weights=ResNet18_Weights.IMAGENET1K_V1)
            except Exception:  # offline or torchvision missing: the error below says what to do
                pass
        if not path.is_file():
            raise DataNotFound(f"the ImageNet ResNet-18 weights are not in {path}. Put torchvision's {TORCHVISION_FILE} "
                               "there, or pass a state dict with -o scenario.pretrained=PATH (.safetensors or .pth)")
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise DataNotFound(f"scenario.pretrained={spec!r}: no such file")
    state = load_state_dict(path)  # safetensors, or torch.load(weights_only=True): never runs code from the file
    backbone = {}
    for k, v in model_state.items():
        if k.startswith(HEAD) or k.startswith("normalize."):
            continue
        if k not in state:
            raise DataNotFound(f"{path} lacks {k!r}: not a torchvision ResNet-18 state dict")
        if tuple(state[k].shape) != tuple(v.shape):
            raise DataNotFound(f"{path}: {k!r} has shape {tuple(state[k].shape)}, ResNet-18 needs {tuple(v.shape)}")
        backbone[k] = state[k]
    return backbone, tensor_digest(backbone)


class CUB200(ClassifierScenario):
    gpu_scale = True  # the runner warns before training it on CPU
    title = "CUB-200-2011, ResNet-18 from ImageNet weights; GPU scale"
    arch = "resnet18-imagenet"
    in_channels = 3
    val_frac = 0.1  # 10% per class of the official train split [PROTOCOL §1.1, OURS]
    threads = 8  # host-side batch work on a GPU machine; never more than the free cores (runner)
    recipe = Recipe(epochs=50, batch=64, lr=0.01, momentum=0.9, wd=5e-4, schedule="cosine",
                    augment="rrc_flip")  # [OURS] PROTOCOL §2.1
    pools = {"default": POOL}

    def __init__(self, name: str, forget: str, paper: dict | None = None):
        super().__init__(name, forget, paper=paper)
        self.Config = make_dataclass(f"{type(self).__name__}{self.Config.__name__}", [(
            "pretrained", str, field(default="torchvision", metadata={
                "help": "ImageNet weights: 'torchvision' (hub cache) or a .safetensors/.pth state dict path",
                "source": "PROTOCOL §2.1"}))], bases=(self.Config,))

    def load_raw(self, data_root: str | None) -> RawData:
        return load(data_root)

    def build_task(self, cfg, trial, data_root, raw=None):
        task = super().build_task(cfg, trial, data_root, raw=raw)
        spec = str(cfg.pretrained)
        if not spec:
            raise ConfigError("scenario.pretrained is empty: use 'torchvision' or a path to a state dict")
        task.pretrained = lambda: load_pretrained(spec, task.new_model().state_dict())
        return task


# The paper's reported numbers for these scenarios (PROTOCOL §9.3-9.4), shown as labelled rows
# beside the measured ones, never mixed with them. % (mean, std or None); "80.58d" = derived.
PAPER_CUB200_10PCT = paper_table("P T B8", [
    ("retrain", "Retrain", "retain", 78.55, 56.43, 74.61, 80.47, 0.00),
    ("gradient-ascent", "GA", "forget", 66.75, 57.26, 66.60, 67.61, 8.38),
    ("boundary-shrink", "Boundary Shrink", "forget", 66.88, 61.60, 64.14, 100.00, 11.71),
    ("boundary-expanding", "Boundary Expanding", "forget", 65.32, 61.60, 58.80, 73.62, 10.27),
    ("random-label-forget", "RL-forget", "forget", 64.13, 57.43, 59.54, 71.79, 9.79),
    ("salun-forget", "SalUn-forget", "forget", 66.69, 59.60, 63.88, 74.46, 7.94),
    ("task-arithmetic", "TA single best†", "forget", 74.68, 58.60, 70.56, 100.00, 7.41),
    ("uniform", "Uniform", "forget", 73.94, 56.93, 69.78, 100.00, 7.37),
    ("negmerge", "NegMerge", "forget", 74.64, 58.26, 70.69, 100.00, 7.30),
])


@hookimpl
def register_scenarios(register):
    register(CUB200("cub200-10pct", "random", paper=PAPER_CUB200_10PCT))
    register(CUB200("cub200-class", "class"))
