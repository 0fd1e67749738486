"""Fashion-MNIST (70k real 28x28 images): the CPU flagship.

PROTOCOL §1.1: the official 60k train split gives 6,000 val (600 per class) and 54,000
train; the official 10k test is D_test. Model cnn-bn and its recipe: §2.1; pool: §6.3.

Files are found, in order: ``--data-root`` (or UNLEARNBENCH_DATA), the Debian package
``dataset-fashion-mnist`` (/usr/share/datasets/fashion-mnist), an earlier torchvision download
in the user cache (also when HF_HUB_OFFLINE=1), then torchvision's download when online
(``unlearnbench.data.find_or_download``). Each accepts the four IDX files, gzipped or not,
directly in the folder or in torchvision's ``FashionMNIST/raw`` layout. What they hold is
checked against ``DEFINITION`` (60,000 train and 10,000 test images of 28 x 28, labels 0-9).
"""
from __future__ import annotations

from pathlib import Path

from unlearnbench import ClassifierScenario, RawData, Recipe, classifier_pool, hookimpl
from unlearnbench import DataNotFound
from unlearnbench.data import Definition, find_idx, find_or_download, fingerprint, idx_partial, read_idx_set

DEFINITION = Definition("Fashion-MNIST", n_train=60_000, n_test=10_000, side=28, classes=10)
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
HOW_TO_GET = (
    "Fashion-MNIST was not found. Either install the Debian package (`apt-get install dataset-fashion-mnist`, "
    "files in /usr/share/datasets/fashion-mnist), or put the four IDX files (train-images-idx3-ubyte, "
    "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, optionally .gz) in a folder and "
    "pass it with --data-root (or UNLEARNBENCH_DATA); torchvision's FashionMNIST/raw layout works too. "
    "Looked in: {looked}"
)


def _bases(folder: Path) -> tuple[Path, ...]:
    return folder, folder / "FashionMNIST" / "raw", folder / "fashion-mnist"


def _find(folder: Path) -> dict[str, Path] | None:
    return find_idx(*_bases(folder))


def _download(cache: Path) -> None:
    from torchvision import datasets

    datasets.FashionMNIST(str(cache), train=True, download=True)
    datasets.FashionMNIST(str(cache), train=False, download=True)


def locate(data_root: str | None) -> tuple[dict[str, Path], str]:
    """The four IDX files, and how they were found."""
    try:
        return find_or_download(data_root, _find, HOW_TO_GET, system=(DEBIAN_DIR,), download=_download)
    except DataNotFound as e:
        partial = idx_partial(*_bases(Path(data_root))) if data_root else None
        if partial:  # say which file is missing
            raise DataNotFound(f"{e}. {partial}") from None
        raise


def load(data_root: str | None) -> RawData:
    import numpy as np
    import torch

    files, how = locate(data_root)
    x, y, n_train, raw_bytes = read_idx_set(files, "Fashion-MNIST", DEFINITION)
    return RawData(
        x=torch.from_numpy(x.copy()).unsqueeze(1).float().div_(255.0),
        y=torch.from_numpy(y),
        train_pool=np.arange(n_train),
        test=np.arange(n_train, len(y)),
        fingerprint=fingerprint(*raw_bytes, y.tobytes()),
        num_classes=10,
        source=f"{files['train_x'].parent} ({how})",
    )


# The fine-tune pool (PROTOCOL §6.3): SGD momentum 0.9, constant lr, BN in train mode,
# epochs x wd x label smoothing = 27 members. v2: each image translated by ±2 px (28x28), so the
# ls = 0 members move off the original (which fits D_f at ~0 loss); v1 trained them unaugmented
# (`pool.augment=v1`).
POOL = classifier_pool("default", 0.01, 128, (5, 10, 15), "translate2", "[OURS]", v1_augment="none")


class FashionMNIST(ClassifierScenario):
    title = "Fashion-MNIST, cnn-bn; CPU flagship, ~5 min per model"
    arch = "cnn-bn"
    in_channels = 1
    val_frac = 0.1  # 6,000 of 60,000, 600 per class [PROTOCOL §1.1]
    threads = 2  # PROTOCOL §10.1: fmnist piloted on 2 threads
    recipe = Recipe(epochs=30, batch=128, lr=0.05, momentum=0.9, wd=5e-4, schedule="cosine")  # [OURS], [PILOT]
    search_baseline_lr = True  # reference lrs were tuned for ResNet-18/CIFAR-10 [PROTOCOL §7.3]
    pools = {"default": POOL}
    # PROTOCOL §8.7.4: one fmnist model costs ~5 min here, so the cheapest faithful sizes (challenge and
    # KLOM N = 64, U-LiRA K = 32, M = 5 with a fixed σ), from a stored artifact or -o eval.ensembles=on
    ensemble_preset = "minimal"

    def load_raw(self, data_root: str | None) -> RawData:
        return load(data_root)


@hookimpl
def register_scenarios(register):
    register(FashionMNIST("fmnist-10pct", "random"))
    register(FashionMNIST("fmnist-class", "class"))
