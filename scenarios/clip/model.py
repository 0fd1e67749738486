"""CLIP image encoders with frozen zero-shot heads, for dataset negation (PROTOCOL §2.2).

The edited model is ``ClipClassifier``: open_clip's CLIP with the text transformer removed,
as [NM]'s ImageEncoder keeps it. The text leftovers (token embedding, positional embedding,
ln_final, text projection, logit scale) stay in the state dict as frozen parameters, so τ
and the sparsity denominators count exactly what [P T C2] counts (ViT-B/32: 113,448,705
elements, of which 59,500,800 trainable). Visual attention is frozen too ("standard" mode).

Two zero-shot heads are buffers, never parameters, so they are never in τ and every edited
model takes θ_0's heads: ``head_forget`` for the forget data set and ``head_control`` for
ImageNet. ``model.head`` names the one in use; the evaluator routes each split to its head
(``ClipTask.route``, scenarios/clip/__init__.py). The model takes pixels in [0, 1] (or uint8) at any size, and does the
CLIP preprocessing itself: grey → RGB, bicubic resize to the encoder's input size, CLIP
mean/std. Data sets can then be stored at their native size (MNIST: 28 × 28 uint8) instead
of 224 × 224 floats.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from unlearnbench import ConfigError, DataNotFound
from unlearnbench.data import file_sha256, load_state_dict

if TYPE_CHECKING:
    import torch

# Our arch names -> open_clip model names. "tiny" is a 2-layer ViT for tests and smoke runs:
# it has no released weights (weights=random only).
ARCHS = {"vit-b-32": "ViT-B-32", "vit-b-16": "ViT-B-16", "vit-l-14": "ViT-L-14", "tiny": None}
TINY = {"embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
# W = 100 · [e_c]: 100 = exp(logit_scale) of OpenAI CLIP, fixed rather than read from weights [PROTOCOL §2.2]
HEAD_SCALE = 100.0
TEXT_LEFTOVERS = ("token_embedding.", "positional_embedding", "ln_final.", "text_projection", "logit_scale")
HOW_TO_GET_WEIGHTS = (
    "CLIP weights for {arch} were not found at {path}. Save open_clip's OpenAI weights once, where the "
    "internet is reachable:\n  python -c \"import open_clip, safetensors.torch as s; "
    "m = open_clip.create_model('{oc}', pretrained='openai'); s.save_file(m.state_dict(), '{name}')\"\n"
    "then put the file at {path} (or pass -o scenario.weights=PATH). The Hugging Face file "
    "open_clip_model.safetensors of timm/{hf} is the same state dict.")
HF_REPOS = {"vit-b-32": "vit_base_patch32_clip_224.openai", "vit-b-16": "vit_base_patch16_clip_224.openai",
            "vit-l-14": "vit_large_patch14_clip_224.openai"}


def _open_clip():
    try:
        import open_clip
    except ImportError:  # pragma: no cover - a declared dependency
        raise ConfigError("CLIP scenarios need open_clip: pip install open_clip_torch") from None
    return open_clip


def check_arch(arch: str) -> str:
    if arch not in ARCHS:
        raise ConfigError(f"unknown CLIP architecture {arch!r}: choose one of {', '.join(ARCHS)} "
                          "(-o scenario.arch=vit-b-32)")
    return arch


def build_clip(arch: str):
    """open_clip's CLIP for ``arch``, randomly initialised, with QuickGELU as OpenAI's weights use."""
    import logging

    open_clip = _open_clip()
    check_arch(arch)
    if ARCHS[arch] is None:
        from open_clip.model import CLIP

        return CLIP(TINY["embed_dim"], TINY["vision_cfg"], TINY["text_cfg"], quick_gelu=True)
    log = logging.getLogger()
    level = log.level
    log.setLevel(logging.ERROR)  # open_clip logs "no pretrained weights loaded": we load them ourselves
    try:
        return open_clip.create_model(ARCHS[arch], pretrained=None, quick_gelu=True)
    finally:
        log.setLevel(level)


def tokenizer(arch: str):
    return _open_clip().get_tokenizer(ARCHS[arch] or "ViT-B-32")


_DIGESTS: dict[tuple, str] = {}


def file_digest(arch: str, path: Path) -> str:
    """sha256 of a weights file (hashed once per process while the file is unchanged); a missing
    file is an error that says how to get it."""
    if not path.is_file():
        raise DataNotFound(HOW_TO_GET_WEIGHTS.format(arch=arch, path=path, oc=ARCHS.get(arch) or "ViT-B-32",
                                                     name=path.name, hf=HF_REPOS.get(arch, "?")))
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_sha256(path)
    return _DIGESTS[key]


def load_weights(arch: str, path: Path, want: dict | None = None) -> tuple[dict, str]:
    """A CLIP state dict from a .safetensors file or a plain state dict (.pt/.bin/.pth, read with
    weights_only=True, so no code from the file runs), checked key by key against ``arch``;
    returns it and the file's sha256."""
    digest = file_digest(arch, path)
    state = load_state_dict(path, what="CLIP state dict", convert=(
        "OpenAI's original .pt files are TorchScript archives. Convert it once, where you trust it: "
        "python -c \"import open_clip, safetensors.torch as s; m = open_clip.create_model('ViT-B-32', "
        "pretrained='ViT-B-32.pt'); s.save_file(m.state_dict(), 'vit-b-32-openai.safetensors')\""))
    state = {k.removeprefix("module."): v for k, v in state.items()}
    want = want if want is not None else build_clip(arch).state_dict()  # the keys and shapes to match
    missing = [k for k in want if k not in state]
    if missing:
        raise DataNotFound(f"{path} is not an open_clip {arch} state dict: it lacks {missing[:3]} "
                           f"({len(missing)} keys in all)")
    for k, v in want.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise DataNotFound(f"{path}: {k!r} has shape {tuple(state[k].shape)}, {arch} needs {tuple(v.shape)}")
    return {k: state[k].float() for k in want}, digest


def zeroshot_head(model, tok, classnames: Sequence[str], templates: Sequence[str], device: str = "cpu",
                  batch: int = 1024) -> "torch.Tensor":
    """(C, D): for each class, the normalised mean of the normalised text embeddings of its
    prompts, times 100 [PROTOCOL §2.2]."""
    import torch

    if not classnames or not templates:
        raise ConfigError("a zero-shot head needs class names and at least one template")
    model = model.to(device).eval()
    texts = [t.format(c) for c in classnames for t in templates]
    feats = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch):
            e = model.encode_text(tok(texts[i:i + batch]).to(device)).float()
            feats.append((e / e.norm(dim=-1, keepdim=True)).cpu())
    e = torch.cat(feats).view(len(classnames), len(templates), -1).mean(1)
    return HEAD_SCALE * (e / e.norm(dim=-1, keepdim=True))


def frozen_names(names: Iterable[str]) -> tuple[str, ...]:
    """Parameters that stay at θ_0 in "standard" mode: visual attention Q/K/V/O and the text leftovers."""
    out = []
    for n in names:
        bare = n.removeprefix("encoder.")
        if bare.startswith(TEXT_LEFTOVERS) or (bare.startswith("visual.") and ".attn." in bare):
            out.append(n)
    return tuple(out)


def _module():
    import torch
    import torch.nn.functional as F
    from torch import nn

    class ClipClassifier(nn.Module):
        """CLIP's image encoder, L2-normalised features, and a frozen zero-shot head per data set."""

        def __init__(self, arch: str, n_forget: int, n_control: int):
            super().__init__()
            enc = build_clip(arch)
            del enc.transformer  # the text tower is only needed to build the heads
            self.encoder = enc
            dim = enc.visual.output_dim
            self.register_buffer("head_forget", torch.zeros(n_forget, dim))
            self.register_buffer("head_control", torch.zeros(n_control, dim))
            from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

            self.register_buffer("pixel_mean", torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("pixel_std", torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1), persistent=False)
            size = enc.visual.image_size
            self.image_size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
            self.head = "forget"
            for n, p in self.named_parameters():
                if n in frozen_names([n]):
                    p.requires_grad_(False)

        def preprocess(self, x: "torch.Tensor") -> "torch.Tensor":
            if x.dtype == torch.uint8:
                x = x.float().div_(255.0)
            if x.shape[1] == 1:  # MNIST: Grayscale(num_output_channels=3)
                x = x.expand(-1, 3, -1, -1)
            if tuple(x.shape[-2:]) != self.image_size:  # Resize(224, bicubic) [PROTOCOL §2.2]
                x = F.interpolate(x, size=self.image_size, mode="bicubic", align_corners=False,
                                  antialias=True).clamp_(0.0, 1.0)
            return (x - self.pixel_mean) / self.pixel_std

        def forward(self, x: "torch.Tensor") -> "torch.Tensor":
            f = self.encoder.encode_image(self.preprocess(x))
            f = f / f.norm(dim=-1, keepdim=True)
            head = self.head_control if self.head == "control" else self.head_forget
            return f @ head.t()

    return ClipClassifier


_CLASS = None


def clip_classifier(arch: str, n_forget: int, n_control: int):
    global _CLASS
    if _CLASS is None:
        _CLASS = _module()
    return _CLASS(arch, n_forget, n_control)


def pretrained_state(arch: str, weights: str, heads: dict[str, tuple[Sequence[str], Sequence[str]]],
                     n_forget: int, n_control: int, device: str = "cpu") -> tuple[dict, str]:
    """θ_0 of a ClipClassifier: the CLIP weights (or, with ``weights="random"``, the init draw
    the caller seeded) and the two zero-shot heads built from its text encoder."""
    full = build_clip(arch)
    if weights != "random":
        state, digest = load_weights(arch, Path(weights).expanduser(), want=full.state_dict())
        full.load_state_dict(state)
    else:
        digest = "random"
    tok = tokenizer(arch)
    built = {name: zeroshot_head(full, tok, cn, tp, device) for name, (cn, tp) in heads.items()}
    model = clip_classifier(arch, n_forget, n_control)
    enc = {k: v for k, v in full.state_dict().items() if not k.startswith("transformer.")}
    model.encoder.load_state_dict(enc, strict=True)
    out = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out["head_forget"] = built["forget"].to(out["head_forget"].dtype)
    out["head_control"] = built["control"].to(out["head_control"].dtype)
    if out["head_forget"].shape != model.head_forget.shape or out["head_control"].shape != model.head_control.shape:
        raise ConfigError("zero-shot head sizes do not match the data sets' class counts")
    return out, digest
