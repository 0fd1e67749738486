"""timm's Swin Transformer for a classifier scenario (PROTOCOL §2.1, `cifar10 / swin_t`), built
offline from its hyperparameters, with ImageNet weights read from a local file.

Swin-T is timm's ``swin_tiny_patch4_window7_224`` (Liu et al., "Swin Transformer: Hierarchical
Vision Transformer using Shifted Windows", ICCV 2021, arXiv 2103.14030): patch 4, window 7, embed
96, depths (2, 2, 6, 2), heads (3, 6, 12, 24); 27,527,044 parameters with a 10-way head. The model
is timm's ``SwinTransformer`` with two things in front, so the scenario keeps its 32-px images in
memory and every metric reads [0, 1] pixels, as for the CNNs:

- an input that is not ``size`` x ``size`` (CIFAR-10's stored 32 px at evaluation) is resized to it,
  bilinearly: the eval transform ``Resize(224)`` [OURS]; training batches arrive at ``size``
  already, from ``RandomResizedCrop(size)`` on the stored image;
- ImageNet normalisation (timm's ``IMAGENET_DEFAULT_MEAN/STD``, what the weights expect), as
  constant buffers, which task vectors leave out (§3).

Stochastic depth is off (``DROP_PATH = 0``) [OURS]: PROTOCOL §2.1 names none, and timm's DropPath
draws from torch's global generator, so a run would no longer be replayed from the trial's streams.

The weights (``scenario.pretrained=PATH``): a ``.safetensors`` file or a torch checkpoint read with
``weights_only=True`` (it cannot run code), in timm's layout (``model.safetensors`` of
``timm/swin_tiny_patch4_window7_224.ms_in1k``) or Microsoft's release layout
(``swin_tiny_patch4_window7_224.pth``, ``{"model": ...}``, downsampling at the end of a stage). Every
backbone tensor must be there with Swin-T's shape and nothing else may be (a Swin-S file holds every
Swin-T name, plus twelve blocks); the classifier head is never loaded, it is drawn from the trial's
init stream (§2.1). The tag that enters the store keys is the digest of the loaded tensors, so the
same weights in either layout or format are one θ_init, and other weights are another.
"""
from __future__ import annotations

import re
from pathlib import Path

from unlearnbench import ConfigError, DataNotFound, tensor_digest
from unlearnbench.data import load_state_dict

# Our arch names (the scenario's ``scenario.arch``) -> timm SwinTransformer hyperparameters.
ARCHS = {
    # timm's swin_tiny_patch4_window7_224 [Liu et al. 2021]; PROTOCOL §2.1
    "swin_t": dict(patch_size=4, window_size=7, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    # a two-stage Swin with 16-dim patches, for tests and smoke runs (timm's test_* variants, STYLE §17)
    "swin_test": dict(patch_size=4, window_size=2, embed_dim=16, depths=(1, 1), num_heads=(1, 2)),
}
DROP_PATH = 0.0  # [OURS]: see the module docstring
HEAD = ("head.",)  # drawn from the init stream, never loaded
OURS = ("normalize.",)  # the scenario's constant buffers, not in any ImageNet file
NOT_WEIGHTS = ("relative_position_index", "attn_mask")  # buffers timm rebuilds; older files store them
WEIGHTS_HELP = ("pass the ImageNet-1k Swin-T weights as -o scenario.pretrained=PATH: timm's model.safetensors of "
                "timm/swin_tiny_patch4_window7_224.ms_in1k, or Microsoft's swin_tiny_patch4_window7_224.pth")


def check_arch(arch: str, size: int) -> None:
    """Refuse an unknown arch, or a size whose feature maps do not halve to whole numbers."""
    if arch not in ARCHS:
        raise ConfigError(f"unknown Swin architecture {arch!r}: choose one of {', '.join(ARCHS)} "
                          "(-o scenario.arch=swin_t)")
    a = ARCHS[arch]
    step = a["patch_size"] * 2 ** (len(a["depths"]) - 1)  # the last stage's stride
    if size <= 0 or size % step:
        raise ConfigError(f"scenario.size={size} does not fit {arch}: it must be a positive multiple of {step} "
                          f"(patch {a['patch_size']}, {len(a['depths'])} stages); PROTOCOL §2.1 uses 224")


def build_swin(arch: str, size: int, num_classes: int):
    """timm's SwinTransformer for ``arch`` at ``size`` px, randomly initialised (never downloaded),
    with the resize and the ImageNet normalisation in front (module docstring)."""
    check_arch(arch, size)
    try:
        import torch
        import torch.nn.functional as F
        from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
        from timm.models.swin_transformer import SwinTransformer
        from torch import nn
    except ImportError:
        raise ConfigError("the Swin-T scenarios need timm: pip install 'unlearnbench[swin]'") from None

    class Normalize(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(IMAGENET_DEFAULT_STD).view(1, -1, 1, 1))

        def forward(self, x):
            return (x - self.mean) / self.std

    class SwinClassifier(SwinTransformer):
        def __init__(self):
            super().__init__(img_size=size, num_classes=num_classes, drop_path_rate=DROP_PATH, **ARCHS[arch])
            self.normalize = Normalize()

        def forward(self, x):
            if tuple(x.shape[-2:]) != (size, size):  # the stored 32-px images at evaluation
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            return super().forward(self.normalize(x))

    return SwinClassifier()


def _timm_layout(state: dict) -> dict:
    """Microsoft's release layout renamed to timm's: a stage's PatchMerging moves from the end of
    stage i to the start of stage i + 1, and ``head`` becomes ``head.fc``; rebuilt buffers dropped."""
    state = {k: v for k, v in state.items() if not k.endswith(NOT_WEIGHTS)}
    if "layers.0.downsample.reduction.weight" not in state:
        return state  # timm's layout already (its stage 0 has no downsampling)
    out = {}
    for k, v in state.items():
        k = re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) + 1}.downsample", k)
        out[re.sub(r"^head\.", "head.fc.", k)] = v
    return out


def load_backbone(spec: str, model_state: dict, arch: str) -> tuple[dict, str]:
    """(the backbone tensors of ``spec``'s file, checked against ``model_state``; their tag for the
    store keys). Every problem with the file is one ConfigError that says what to pass instead."""
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ConfigError(f"scenario.pretrained={spec!r}: there is no such file; {WEIGHTS_HELP}")
    try:
        state = load_state_dict(path, f"{arch} state dict")  # safetensors, or torch.load(weights_only=True)
    except DataNotFound as e:
        raise ConfigError(f"scenario.pretrained: {e}; or {WEIGHTS_HELP}") from None
    state = _timm_layout(state)
    want = {k: v for k, v in model_state.items() if not k.startswith(HEAD + OURS)}
    missing = [k for k in want if k not in state]  # in the model's order: the first is the telling one
    extra = [k for k in state if k not in want and not k.startswith(HEAD)]
    what = f"{path} is not a {arch} state dict"
    if missing:
        raise ConfigError(f"{what}: it lacks {missing[0]!r}" + (f" and {len(missing) - 1} more" if len(missing) > 1
                          else "") + f"; {WEIGHTS_HELP}")
    if extra:
        raise ConfigError(f"{what}: it holds {extra[0]!r}" + (f" and {len(extra) - 1} more" if len(extra) > 1
                          else "") + f" that {arch} does not have (another Swin size?); {WEIGHTS_HELP}")
    for k, v in want.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ConfigError(f"{what}: {k!r} has shape {tuple(state[k].shape)}, {arch} needs {tuple(v.shape)} "
                              f"(another embedding width or window?); {WEIGHTS_HELP}")
        if not state[k].is_floating_point():
            raise ConfigError(f"{what}: {k!r} holds {state[k].dtype}, not floating-point weights; {WEIGHTS_HELP}")
    backbone = {k: state[k] for k in want}
    return backbone, f"timm-swin:{tensor_digest(backbone)}"


class Backbone:
    """A Swin task's ``Task.pretrained``: ``() -> (backbone, tag)``, the file read on first use and kept
    (``Stages.init_weights`` asks on every stage). It pickles without what it read, so a job sent to an
    executor's worker carries four fields, not the weights or the data set. ``random``: no file, the
    init-stream draw alone, tagged ``random`` in the keys."""

    def __init__(self, spec: str, arch: str, size: int, num_classes: int, random: bool = False):
        self.spec, self.arch, self.size, self.num_classes, self.random = spec, arch, size, num_classes, random
        self._held: tuple[dict, str] | None = None

    def __call__(self) -> tuple[dict, str]:
        if self._held is None:
            if self.random:
                self._held = {}, "random"
            else:
                model_state = build_swin(self.arch, self.size, self.num_classes).state_dict()
                self._held = load_backbone(self.spec, model_state, self.arch)
        return self._held

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_held": None}
