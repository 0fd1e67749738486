"""CIFAR-10 (60k real 32x32 RGB images): the paper's main classifier benchmark [P T2, B12, B13].

PROTOCOL §1.1: the official 50k train split gives 5,000 val (500 per class) and 45,000
train; the official 10k test is D_test. Model: CIFAR ResNet-18 with the [SAL] recipe
(182 epochs, multistep lr, RandomCrop 32 pad 4 + HFlip), §2.1; pool: §6.3. A GPU scenario:
one model is hours on CPU. The same data and forget sets also serve VGG-16-BN [P T B10] and
timm's Swin-T from ImageNet weights at 224 px [P T B11] (``cifar10-swin-10pct``: AdamW, RRC 224
+ flip, the §6.3 `cifar10/swin_t` pool; the model and its weights file are ``_swin.py``'s).

Files are found under ``--data-root`` (or UNLEARNBENCH_DATA), in either of the native
formats the CIFAR page distributes, unpacked or as the downloaded archive:

- python: ``cifar-10-batches-py/`` (torchvision's layout) or ``cifar-10-python.tar.gz``;
- binary: ``cifar-10-batches-bin/`` or ``cifar-10-binary.tar.gz``.

The python batches are pickles. They are read with an unpickler that builds numpy arrays,
lists, strings and numbers and refuses everything else, so a hostile file cannot run code.
Both formats of the same data give the same fingerprint, hence the same manifests and
stored models. An earlier torchvision download in the user cache is used next (also when
HF_HUB_OFFLINE=1); when online (and HF_HUB_OFFLINE is not 1), torchvision downloads the python
archive there as a last resort (``unlearnbench.data.find_or_download``).
"""
from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

from dataclasses import dataclass, fields, make_dataclass, replace
from functools import partial

from unlearnbench import (Choice, ClassifierScenario, ConfigError, DataNotFound, PoolGrid, RawData, Recipe, Task,
                          classifier_pool, hookimpl, opt, paper_table, random_resized_crop,
                          tensor_op)
from unlearnbench.data import Definition, find_or_download, fingerprint

# What the release holds (checked by the loader; the test suite uses DEFINITION.small() for its small files).
DEFINITION = Definition("CIFAR-10", n_train=50_000, n_test=10_000, side=32, classes=10)

BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]  # 5 x 10,000 train, then 10,000 test
PIXELS = 3 * 32 * 32
FORMATS = (  # (format, folder or archive, member prefix, file suffix), in the order they are tried
    ("py", "cifar-10-batches-py", "", ""),
    ("py", "", "", ""),  # the batch files directly in --data-root
    ("bin", "cifar-10-batches-bin", "", ".bin"),
    ("bin", "", "", ".bin"),
    ("py", "cifar-10-python.tar.gz", "cifar-10-batches-py/", ""),
    ("bin", "cifar-10-binary.tar.gz", "cifar-10-batches-bin/", ".bin"),
)
HOW_TO_GET = (
    "CIFAR-10 was not found. Download it from https://www.cs.toronto.edu/~kriz/cifar.html (the python or the "
    "binary version) and pass the folder that holds cifar-10-python.tar.gz, cifar-10-binary.tar.gz, "
    "cifar-10-batches-py/ or cifar-10-batches-bin/ with --data-root (or UNLEARNBENCH_DATA). Looked in: {looked}"
)


# What a CIFAR python batch is made of (protocol 2, as released; protocol 5 if re-pickled):
# any other global in the pickle is refused.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 writes bytes at protocol 2 (a codec call, no user code)
}


# The fine-tune pool (PROTOCOL §6.3): SGD momentum 0.9, constant lr, BN in train mode,
# epochs x wd x label smoothing = 27 members.
POOL = classifier_pool("default", 0.05, 256, (40, 50, 60), "crop_flip", "[P App. A]")
POOL_VGG16 = classifier_pool("default", 0.01, 64, (40, 50, 60), "crop_flip", "[P App. A]")
# [P T D4]: RandAugment N = 1, M in 1..5; the rest at the centre of the default grid [OURS].
POOL_RANDAUG = PoolGrid(
    "pool_randaug", Recipe(epochs=50, batch=256, lr=0.05, wd=5e-5, schedule="constant", augment="crop_flip",
                           randaug_n=1), (("randaug_m", (1, 2, 3, 4, 5)),), "[P T D4]")


def rrc_name(size: int) -> str:
    """The Swin-T recipes' augmentation at ``size`` px: RandomResizedCrop(size) from the stored 32-px
    image, then HFlip. The size is in the name, so in every recipe's store key."""
    return f"rrc{size}_flip"


SWIN_SIZE = 224  # PROTOCOL §2.1: Swin-T at 224 px
# PROTOCOL §2.1 `cifar10 / swin_t` [OURS]: AdamW lr 1e-4, wd 0.05, 30 epochs, batch 128, cosine after
# a 2-epoch linear warmup, RRC 224 + HFlip.
SWIN_RECIPE = Recipe(epochs=30, batch=128, lr=1e-4, wd=0.05, optimizer="adamw", schedule="cosine", warmup_epochs=2,
                     augment=rrc_name(SWIN_SIZE))
# The `cifar10/swin_t` pool of PROTOCOL §6.3 [OURS]: AdamW lr 1e-5 constant, batch 64, the scenario's
# RRC + flip, epochs x wd x label smoothing = 27 members.
POOL_SWIN_T = PoolGrid(
    "default", Recipe(epochs=40, batch=64, lr=1e-5, optimizer="adamw", schedule="constant",
                      augment=rrc_name(SWIN_SIZE)),
    (("epochs", (40, 50, 60)), ("wd", (1e-4, 5e-5, 1e-5)), ("label_smoothing", (0.0, 0.05, 0.1))),
    "[OURS]: sources silent")


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not part of a CIFAR batch")
        import numpy as np

        if name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module == "_codecs":
            import _codecs

            return _codecs.encode
        try:  # numpy 2 moved numpy.core to numpy._core; the old name still warns
            from numpy._core import multiarray, numeric
        except ImportError:  # numpy 1
            from numpy.core import multiarray, numeric
        return getattr(multiarray if name == "_reconstruct" else numeric, name)


def parse_batch(fmt: str, raw: bytes, where: str):
    """(pixels uint8 (n, 3072), labels int64 (n,)) of one batch file, checked."""
    import numpy as np

    if fmt == "bin":  # records of 1 label byte + 3,072 pixel bytes (R, G, B planes, row-major)
        if len(raw) == 0 or len(raw) % (PIXELS + 1):
            raise DataNotFound(f"{where} is truncated or corrupt: {len(raw)} bytes is not a whole number of "
                               f"{PIXELS + 1}-byte CIFAR-10 records")
        rec = np.frombuffer(raw, dtype=np.uint8).reshape(-1, PIXELS + 1)
        x, y = rec[:, 1:], rec[:, 0].astype(np.int64)
    else:
        try:
            d = _BatchUnpickler(io.BytesIO(raw), encoding="latin1").load()
        except Exception as e:  # truncated, not a pickle, or a pickle that wants to run something
            raise DataNotFound(f"{where} is not a readable CIFAR-10 python batch: {type(e).__name__}: {e}") from None
        if not isinstance(d, dict) or "data" not in d or "labels" not in d:
            raise DataNotFound(f"{where} is not a CIFAR-10 python batch (no 'data' and 'labels' entries)")
        x, y = d["data"], np.asarray(d["labels"], dtype=np.int64)
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != PIXELS:
            raise DataNotFound(f"{where}: 'data' must be a uint8 array of shape (n, {PIXELS}), not "
                               f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}")
    if len(x) != len(y) or len(y) == 0:
        raise DataNotFound(f"{where} holds {len(x)} images but {len(y)} labels")
    DEFINITION.check_labels(y, where)
    return x, y


def _candidates(root: Path):
    for fmt, place, prefix, suffix in FORMATS:
        path = root / place if place else root
        if place.endswith(".tar.gz"):
            if path.is_file():
                yield fmt, path, prefix, suffix
        elif all((path / f"{b}{suffix}").is_file() for b in BATCHES):
            yield fmt, path, prefix, suffix


def read_files(fmt: str, path: Path, prefix: str, suffix: str) -> list[bytes]:
    """The six batch files' bytes, from a folder or straight out of the archive (nothing extracted)."""
    if path.is_dir():
        return [(path / f"{b}{suffix}").read_bytes() for b in BATCHES]
    try:
        with tarfile.open(path, "r:gz") as tar:
            out = []
            for b in BATCHES:
                f = tar.extractfile(f"{prefix}{b}{suffix}")
                if f is None:
                    raise KeyError(b)
                out.append(f.read())
            return out
    except (KeyError, tarfile.TarError, OSError, EOFError) as e:
        raise DataNotFound(f"{path} is not a complete CIFAR-10 archive ({type(e).__name__}: {e}); download it again "
                           "or unpack it and pass the folder") from None


def _download(cache: Path) -> None:
    from torchvision import datasets

    datasets.CIFAR10(str(cache), train=True, download=True)  # the python archive, unpacked


def locate(data_root: str | None):
    """((format, folder or archive, member prefix, file suffix), how it was found)."""
    return find_or_download(data_root, lambda root: next(_candidates(root), None), HOW_TO_GET, download=_download)


def load(data_root: str | None) -> RawData:
    import numpy as np
    import torch

    (fmt, path, prefix, suffix), how = locate(data_root)
    parts = [parse_batch(fmt, raw, f"{path}: {b}{suffix}") for b, raw in zip(BATCHES, read_files(fmt, path, prefix,
                                                                                                  suffix))]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    n_train = sum(len(p[1]) for p in parts[:-1])
    DEFINITION.check_count("train", n_train, f"{path}: {', '.join(f'{b}{suffix}' for b in BATCHES[:-1])}")
    DEFINITION.check_count("test", len(parts[-1][1]), f"{path}: {BATCHES[-1]}{suffix}")
    # The fingerprint hashes the decoded pixels and labels, not the file bytes: the python and
    # the binary release of the same images are the same data set, with the same manifests.
    return RawData(
        x=torch.from_numpy(np.ascontiguousarray(x).reshape(-1, 3, 32, 32)).float().div_(255.0),
        y=torch.from_numpy(y),
        train_pool=np.arange(n_train),
        test=np.arange(n_train, len(y)),
        fingerprint=fingerprint(np.ascontiguousarray(x).tobytes(), y.tobytes()),
        num_classes=10,
        source=f"{path} ({how})",
    )


class CIFAR10(ClassifierScenario):
    gpu_scale = True  # the runner warns before training it on CPU
    title = "CIFAR-10, CIFAR ResNet-18; GPU scale, ~182 epochs per model"
    arch = "resnet18-cifar"
    in_channels = 3
    val_frac = 0.1  # 5,000 of 50,000, 500 per class [PROTOCOL §1.1, SAL]
    threads = 8  # host-side batch work on a GPU machine; never more than the free cores (runner)
    recipe = Recipe(epochs=182, batch=256, lr=0.1, momentum=0.9, wd=5e-4, schedule="multistep",
                    milestones=(91, 136), augment="crop_flip")  # [SAL], PROTOCOL §2.1
    pools = {"default": POOL, "pool_randaug": POOL_RANDAUG}

    def load_raw(self, data_root: str | None) -> RawData:
        return load(data_root)


RANDOM = "random"  # scenario.pretrained=random: an explicit random init, for smoke runs only


class SwinArch(Choice):
    swin_t = "swin_t"
    swin_test = "swin_test"


@dataclass
class SwinTask(Task):
    """A trial of the Swin-T scenario: the model is timm's Swin at ``size`` px (``_swin.build_swin``)."""

    swin: str = "swin_t"
    size: int = SWIN_SIZE

    def new_model(self):
        from ._swin import build_swin

        return build_swin(self.swin, self.size, self.num_classes)


class CIFAR10Swin(CIFAR10):
    """[P T B11]: the same data, splits and forget sets with timm's Swin-T from ImageNet-1k weights at
    224 px (PROTOCOL §2.1), its AdamW recipe and its §6.3 pool. The weights come from a local file,
    ``-o scenario.pretrained=PATH`` (``_swin.py`` says which files fit); nothing is downloaded.
    PROTOCOL §2.1 needs the pretraining (Retrain test 97.67 [P T B11]), so there is no silent default:
    without the option the run is refused, and ``scenario.pretrained=random`` is a random init that is
    named as such in every store key and record (smoke runs only)."""

    title = "CIFAR-10, Swin-T from ImageNet weights at 224 px; GPU scale"
    arch = "swin_t"
    recipe = SWIN_RECIPE
    pools = {"default": POOL_SWIN_T}

    def __init__(self, name: str, forget: str, pct: float = 10.0, paper: dict | None = None):
        super().__init__(name, forget, pct=pct, paper=paper)
        self.Config = make_dataclass(f"{type(self).__name__}{self.Config.__name__}", [
            ("pretrained", str, opt("", "ImageNet-1k Swin-T weights: a .safetensors or .pth state dict (timm's or "
                                    "Microsoft's layout); 'random': random init, smoke runs only", "PROTOCOL §2.1")),
            ("arch", SwinArch, opt(SwinArch.swin_t, "swin_t (timm's swin_tiny_patch4_window7_224); swin_test: a "
                                   "two-stage 16-dim Swin for tests", "PROTOCOL §2.1")),
            ("size", int, opt(SWIN_SIZE, "input size in px: RandomResizedCrop(size) in training, Resize(size) in "
                              "evaluation", "PROTOCOL §2.1")),
        ], bases=(self.Config,))

    def check_config(self, cfg) -> None:
        from ._swin import WEIGHTS_HELP, check_arch

        super().check_config(cfg)
        check_arch(str(cfg.arch), int(cfg.size))
        spec = str(cfg.pretrained)
        if not spec:
            raise ConfigError(f"scenario {self.name!r} starts from ImageNet weights (PROTOCOL §2.1) and "
                              f"scenario.pretrained is not set: {WEIGHTS_HELP} (or -o scenario.pretrained=random "
                              "for a random-init smoke run)")
        if spec != RANDOM and not Path(spec).expanduser().is_file():
            raise ConfigError(f"scenario.pretrained={spec!r}: there is no such file; {WEIGHTS_HELP}")

    def build_task(self, cfg, trial, data_root, raw=None):
        from ._swin import Backbone

        self.check_config(cfg)
        base = super().build_task(cfg, trial, data_root, raw=raw)
        arch, size, spec = str(cfg.arch), int(cfg.size), str(cfg.pretrained)
        aug = rrc_name(size)
        task = SwinTask(**{f.name: getattr(base, f.name) for f in fields(Task)}, swin=arch, size=size)
        task.arch = f"{arch}-{size}px"  # in every store key (Stages._spec)
        task.recipe = self.recipe.with_(augment=aug)
        task.pools = {n: replace(g, base=g.base.with_(augment=aug)) for n, g in self.pools.items()}
        task.augmentations = {**task.augmentations, aug: tensor_op(partial(  # runs where the batch is
            random_resized_crop, scale=(0.08, 1.0), modes=("bilinear",), flip=True, size=size))}
        task.pretrained = Backbone(spec, arch, size, task.num_classes, random=spec == RANDOM)
        return task


class CIFAR10VGG(CIFAR10):
    """[P T B10]: the same data and recipe with VGG-16-BN, whose pool uses lr 0.01 and batch 64 (§6.3)."""

    title = "CIFAR-10, VGG-16 with BN; GPU scale, ~182 epochs per model"
    arch = "vgg16-bn-cifar"
    pools = {"default": POOL_VGG16}


# The paper's reported numbers for these scenarios (PROTOCOL §9.3-9.4), shown as labelled rows
# beside the measured ones, never mixed with them. % (mean, std or None); "80.58d" = derived.
PAPER_CIFAR10_10PCT = paper_table("P T2", [
    ("retrain", "Retrain*", "retain", (100.00, 0.00), (94.76, 0.69), (94.26, 0.02), (12.88, 0.09), 0.00),
    ("random-label", "RL*", "all", (99.67, 0.14), (92.39, 0.31), (92.83, 0.38), (37.36, 0.06), 7.15),
    ("influence", "IU*", "all", (99.20, 0.22), (98.93, 0.28), (93.20, 1.03), (2.67, 0.01), 4.06),
    ("salun", "SalUn*", "all", (99.62, 0.12), (97.15, 0.43), (93.93, 0.29), (14.39, 0.82), 1.15),
    ("finetune", "FT*", "retain", (99.88, 0.08), (99.37, 0.55), (94.06, 0.27), (2.70, 0.01), 3.78),
    ("l1-sparse", "ℓ1-sparse*", "retain", (97.74, 0.33), (95.81, 0.62), (91.59, 0.57), (9.84, 0.00), 2.26),
    ("gradient-ascent", "GA*", "forget", (99.50, 0.38), (99.31, 0.54), (94.01, 0.47), (1.70, 0.01), 4.12),
    ("boundary-shrink", "Boundary Shrink*", "forget", (98.29, 2.50), (98.22, 2.52), (92.69, 2.99),
     (8.96, 0.13), 2.67),
    ("boundary-expanding", "Boundary Expanding*", "forget", (99.42, 0.33), (99.41, 0.30), (93.85, 1.02),
     (7.47, 1.15), 2.76),
    ("random-label-forget", "RL-forget", "forget", (99.99, 0.00), (99.98, 0.02), (95.04, 0.11),
     (2.15, 1.94), 4.19),
    ("salun-forget", "SalUn-forget", "forget", (99.88, 0.04), (99.89, 0.04), (94.42, 0.05), (9.51, 2.07),
     2.20),
    ("task-arithmetic", "TA single best†", "forget", (98.36, 0.51), (94.85, 0.16), (91.49, 0.80),
     (10.91, 0.72), 1.62),
    ("uniform", "Uniform", "forget", (98.70, 0.91), (95.83, 2.17), (92.36, 1.16), (10.14, 2.93), 1.75),
    ("ties", "TIES", "forget", (98.38, 0.17), (95.45, 0.32), (92.23, 0.14), (9.36, 0.31), 1.96),
    ("magmax", "MagMax", "forget", (98.38, 0.12), (97.97, 0.77), (91.53, 0.00), (8.45, 2.60), 3.00),
    ("negmerge", "NegMerge", "forget", (99.15, 0.24), (96.63, 0.59), (92.71, 0.39), (12.87, 1.29), 1.07),
])
PAPER_CIFAR10_50PCT = paper_table("P T B12", [
    ("retrain", "Retrain", "retain", 100.00, 92.10, 91.70, 19.30, 0.00),
    ("random-label-forget", "RL-forget", "forget", 99.80, 99.90, 94.70, 2.20, 7.03),
    ("salun-forget", "SalUn-forget", "forget", 99.60, 99.60, 94.20, 4.40, 6.33),
    ("task-arithmetic", "TA single best†", "forget", 98.40, 97.90, 92.60, 5.60, 5.50),
    ("negmerge", "NegMerge", "forget", 96.80, 96.50, 91.50, 6.30, 5.20),
])
PAPER_CIFAR10_CLASS = paper_table("P T B13", [
    ("retrain", "Retrain", "retain", 100.00, 0.00, 92.50, 100.00, 0.00),
    ("random-label-forget", "RL-forget", "forget", 83.00, 10.10, 70.90, 99.50, 12.30),
    ("salun-forget", "SalUn-forget", "forget", 86.50, 10.80, 74.10, 100.00, 10.68),
    ("task-arithmetic", "TA single best†", "forget", 95.30, 0.10, "80.58d", 100.00, 4.18),
    ("negmerge", "NegMerge", "forget", 96.80, 0.80, "81.78d", 99.80, 3.73),
])
PAPER_CIFAR10_VGG16_10PCT = paper_table("P T B10", [
    ("retrain", "Retrain*", "retain", 99.99, 94.02, 93.06, 10.36, 0.00),
    ("gradient-ascent", "GA*", "forget", 99.37, 99.07, 93.63, 1.36, 3.81),
    ("boundary-shrink", "Boundary Shrink*", "forget", 99.40, 99.20, 93.68, 1.38, 3.84),
    ("boundary-expanding", "Boundary Expanding*", "forget", 99.39, 99.20, 93.68, 1.42, 3.84),
    ("task-arithmetic", "TA single best†", "forget", 97.26, 94.90, 90.10, 10.34, 1.64),
    ("negmerge", "NegMerge", "forget", 98.00, 95.74, 91.01, 10.10, 1.50),
])
PAPER_CIFAR10_SWIN_10PCT = paper_table("P T B11", [
    ("retrain", "Retrain", "retain", 100.00, 97.76, 97.67, 4.74, 0.00),
    ("random-label-forget", "RL-forget", "forget", 99.96, 99.96, 97.71, 0.64, 1.60),
    ("salun-forget", "SalUn-forget", "forget", 98.98, 99.04, 96.40, 3.36, 1.24),
    ("task-arithmetic", "TA single best†", "forget", 98.50, 97.84, 95.98, 4.04, 0.99),
    ("negmerge", "NegMerge", "forget", 98.79, 97.80, 95.93, 4.60, 0.78),
])


@hookimpl
def register_scenarios(register):
    register(CIFAR10("cifar10-10pct", "random", paper=PAPER_CIFAR10_10PCT))
    register(CIFAR10("cifar10-50pct", "random", pct=50.0, paper=PAPER_CIFAR10_50PCT))
    register(CIFAR10("cifar10-class", "class", paper=PAPER_CIFAR10_CLASS))
    register(CIFAR10VGG("cifar10-vgg16-10pct", "random", paper=PAPER_CIFAR10_VGG16_10PCT))
    register(CIFAR10Swin("cifar10-swin-10pct", "random", paper=PAPER_CIFAR10_SWIN_10PCT))
