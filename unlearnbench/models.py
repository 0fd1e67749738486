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


def _maxpool(*args, **kw):
    """nn.MaxPool2d whose CPU inference runs in channels-last memory, where PyTorch's kernel is
    about 2x faster; a max is exact, so the values are the same bits
    (benchmarks/eval_maxpool.py measures both). With autograd on, the stock path, untouched:
    which element of a tie receives the gradient must not depend on the memory layout."""
    import torch
    from torch import nn

    class MaxPool2d(nn.MaxPool2d):
        def forward(self, x):
            if torch.is_grad_enabled() or x.device.type != "cpu" or x.dim() != 4:
                return super().forward(x)
            return super().forward(x.contiguous(memory_format=torch.channels_last)).contiguous()

    return MaxPool2d(*args, **kw)


@arch("cnn-s")
def cnn_s(num_classes: int, in_channels: int = 1):
    """digits' CNN, 38,282 parameters for 8x8 inputs, PyTorch default init, no BN [PROTOCOL §2.1]."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), _maxpool(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, num_classes),
    )


@arch("cnn-bn")
def cnn_bn(num_classes: int, in_channels: int = 1):
    """Fashion-MNIST's CNN, 409,082 parameters for 28x28 inputs; BN so that the §3 buffer
    rule (BN statistics excluded from task vectors) is exercised on CPU [PROTOCOL §2.1]."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), _maxpool(2),
        nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), _maxpool(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 256), nn.ReLU(), nn.Linear(256, num_classes),
    )


CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # [SAL]'s NormalizeByChannelMeanStd for CIFAR-10
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # what torchvision's pretrained ResNet-18 expects
IMAGENET_STD = (0.229, 0.224, 0.225)
TINY_MEAN = (0.4802, 0.4481, 0.3975)  # Tiny ImageNet's train-set channel statistics, as commonly used
TINY_STD = (0.2302, 0.2265, 0.2262)


def _normalize(mean, std):
    import torch
    from torch import nn

    class Normalize(nn.Module):
        """Per-channel (x - mean) / std as the model's first module, with constant buffers, so
        attacks and MIA work on [0, 1] pixels [PROTOCOL §2.1]. Buffers stay out of τ (§3)."""

        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

        def forward(self, x):
            return (x - self.mean) / self.std

    return Normalize()


def _basic_block(cin: int, cout: int, stride: int):
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    return BasicBlock()


def _resnet18(num_classes: int, in_channels: int, mean, std, name: str, imagenet_stem: bool = False):
    from torch import nn

    if in_channels != 3:
        raise ValueError(f"{name} takes RGB inputs (in_channels=3), not {in_channels}")

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.normalize = _normalize(mean, std)
            if imagenet_stem:  # torchvision's: 7x7 stride 2, then a 3x3 stride-2 max-pool
                self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
                self.maxpool = nn.MaxPool2d(3, 2, 1)
            else:  # CIFAR's: 3x3 stride 1, no max-pool
                self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
                self.maxpool = nn.Identity()
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            widths, cin, layers = (64, 128, 256, 512), 64, []
            for i, w in enumerate(widths):
                layers.append(nn.Sequential(_basic_block(cin, w, 1 if i == 0 else 2), _basic_block(w, w, 1)))
                cin = w
            self.layer1, self.layer2, self.layer3, self.layer4 = layers
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, num_classes)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(self.normalize(x)))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(self.avgpool(x).flatten(1))

    return ResNet18()


@arch("resnet18-cifar")
def resnet18_cifar(num_classes: int, in_channels: int = 3):
    """CIFAR ResNet-18 [SAL]: normalisation first, a 3x3 stride-1 stem, BN, ReLU and no max-pool,
    BasicBlocks [2, 2, 2, 2], global average pool, fc 512 -> C; 11,173,962 parameters for C = 10.
    Init as torchvision's ResNet: kaiming-normal (fan_out) convs, BN gamma 1 and beta 0
    [PROTOCOL §2.1]. Module names follow torchvision's, so state dicts line up with [SAL]'s."""
    return _resnet18(num_classes, in_channels, CIFAR10_MEAN, CIFAR10_STD, "resnet18-cifar")


@arch("resnet18-tiny")
def resnet18_tiny(num_classes: int, in_channels: int = 3):
    """The CIFAR ResNet-18 at 64 px for Tiny ImageNet [PROTOCOL §2.1: "CIFAR ResNet-18 at 64 px"];
    the global average pool takes the 8x8 final map. Normalised with Tiny ImageNet's own channel
    statistics [OURS]; the protocol names no constants."""
    return _resnet18(num_classes, in_channels, TINY_MEAN, TINY_STD, "resnet18-tiny")


@arch("resnet18-imagenet")
def resnet18_imagenet(num_classes: int, in_channels: int = 3):
    """torchvision's ResNet-18 (7x7 stem, max-pool; 11,279,112 parameters for C = 200) with ImageNet
    normalisation inside, for 224-px data sets that start from ImageNet weights (CUB-200, PROTOCOL
    §2.1). Its state dict is torchvision's plus the two normalisation buffers, so torchvision's
    checkpoint loads into it directly."""
    return _resnet18(num_classes, in_channels, IMAGENET_MEAN, IMAGENET_STD, "resnet18-imagenet", imagenet_stem=True)


VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


@arch("vgg16-bn-cifar")
def vgg16_bn_cifar(num_classes: int, in_channels: int = 3):
    """VGG-16 with BN for 32-px inputs: torchvision's vgg16_bn feature layers (conv with bias, BN,
    ReLU; five max-pools down to 1x1x512), then fc 512 -> C, normalisation inside (CIFAR-10's
    statistics); 14,728,266 parameters for C = 10 [PROTOCOL §2.1: "VGG-16 with BN, fc -> C,
    normalisation inside"]. Init as torchvision's VGG: kaiming-normal (fan_out) convs with zero
    bias, BN gamma 1 and beta 0, fc N(0, 0.01)."""
    from torch import nn

    if in_channels != 3:
        raise ValueError(f"vgg16-bn-cifar takes RGB inputs (in_channels=3), not {in_channels}")
    layers, cin = [], 3
    for v in VGG16_LAYOUT:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            cin = v
    model = nn.Sequential()
    model.add_module("normalize", _normalize(CIFAR10_MEAN, CIFAR10_STD))
    model.add_module("features", nn.Sequential(*layers))
    model.add_module("flatten", nn.Flatten())
    model.add_module("classifier", nn.Linear(512, num_classes))
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    return model
