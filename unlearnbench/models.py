"""The model factory: architectures by name (PROTOCOL §2.1). Tiny models are registered
citizens beside the real ones, so tests use the same factory as runs."""
from __future__ import annotations

from typing import Callable

from .errors import unknown

_ARCHS: dict[str, Callable[[int, int], "object"]] = {}


def arch(name: str):
    def deco(fn):
        _ARCHS[name] = fn
        return fn

    return deco


def build_model(name: str, num_classes: int, in_channels: int = 1):
    try:
        fn = _ARCHS[name]
    except KeyError:
        raise unknown("architecture", name, _ARCHS) from None
    return fn(num_classes, in_channels)


def arch_names() -> list[str]:
    return sorted(_ARCHS)


@arch("cnn-s")
def cnn_s(num_classes: int, in_channels: int = 1):
    """digits' CNN, 38,282 parameters for 8x8 inputs, PyTorch default init, no BN [PROTOCOL §2.1]."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, num_classes),
    )


@arch("cnn-bn")
def cnn_bn(num_classes: int, in_channels: int = 1):
    """Fashion-MNIST's CNN, 409,082 parameters for 28x28 inputs; BN so that the §3 buffer
    rule (BN statistics excluded from task vectors) is exercised on CPU [PROTOCOL §2.1]."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 256), nn.ReLU(), nn.Linear(256, num_classes),
    )


@arch("tiny-mlp")
def tiny_mlp(num_classes: int, in_channels: int = 1):
    """A two-layer MLP over 8x8 inputs with BN, for fast tests of the whole pipeline."""
    from torch import nn

    return nn.Sequential(
        nn.Flatten(), nn.Linear(in_channels * 64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, num_classes)
    )
