"""Metrics of PROTOCOL §8: accuracies, MIA-efficacy, Avg. Gap, sparsity."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping

if TYPE_CHECKING:
    import torch

# Inference batch per device. On CPU 512 is the fastest: fmnist cnn-bn, 11,400 images, 2 threads,
# 0.82 s at 512 vs 1.92 s at 2048 (cache-sized activations), and the logits are bit-identical
# for every batch size and thread count measured (benchmarks/eval_batch.py,
# test_logits_do_not_depend_on_eval_batch), so recorded runs reproduce unchanged. GPUs keep 2048.
EVAL_BATCH = {"cpu": 512}
EVAL_BATCH_DEFAULT = 2048


def eval_batch(device: str = "cpu") -> int:
    return EVAL_BATCH.get(str(device).split(":")[0], EVAL_BATCH_DEFAULT)
GAP_METRICS = ("acc_retain", "acc_forget", "acc_test", "mia")  # PROTOCOL §8.3
SVC_C = 3.0  # [SAL] SVC_MIA: SVC(C=3, kernel=rbf, gamma='auto')


def logits(model: "torch.nn.Module", x: "torch.Tensor", device: str = "cpu") -> "torch.Tensor":
    import torch

    model.eval()
    outs = []
    b = eval_batch(device)
    with torch.inference_mode():
        for i in range(0, len(x), b):
            outs.append(model(x[i:i + b].to(device)).float().cpu())
    return torch.cat(outs) if outs else torch.empty(0)


def accuracy(lg: "torch.Tensor", y: "torch.Tensor") -> float:
    """Top-1 accuracy in %, over the whole split."""
    if len(y) == 0:
        return float("nan")
    return 100.0 * (lg.argmax(1) == y).double().mean().item()


def confidence(lg: "torch.Tensor", y: "torch.Tensor") -> "torch.Tensor":
    """The MIA feature: softmax(f(x))_y with the true label [PROTOCOL §8.2]."""
    import torch

    return torch.softmax(lg.double(), dim=1).gather(1, y.view(-1, 1)).squeeze(1)


def mia_efficacy(members: "torch.Tensor", nonmembers: "torch.Tensor", forget: "torch.Tensor") -> float:
    """100 x the share of forget samples an SVC, fit on member (1) vs non-member (0)
    confidences, predicts to be non-members (PROTOCOL §8.2). Higher = looks more unseen."""
    import numpy as np
    from sklearn.svm import SVC

    xm = members.detach().cpu().numpy().reshape(-1, 1)
    xn = nonmembers.detach().cpu().numpy().reshape(-1, 1)
    xf = forget.detach().cpu().numpy().reshape(-1, 1)
    if len(xf) == 0:
        return float("nan")
    X = np.concatenate([xm, xn])
    Y = np.concatenate([np.ones(len(xm)), np.zeros(len(xn))])
    clf = SVC(C=SVC_C, kernel="rbf", gamma="auto")
    clf.fit(X, Y)
    return 100.0 * float((clf.predict(xf) == 0).mean())


def avg_gap(m: Mapping[str, float], ref: Mapping[str, float]) -> tuple[float, dict[str, float]]:
    """¼·Σ|m − m(Retrain)| over Acc D_r, Acc D_f, Acc D_test′, MIA, and each component [§8.3]."""
    comps = {k: abs(float(m[k]) - float(ref[k])) for k in GAP_METRICS}
    return sum(comps.values()) / len(comps), comps


def sparsity(tau: Mapping[str, "torch.Tensor"], trainable: Iterable[str] | None = None) -> dict:
    """% exact zeros over U_all (every parameter) and U_train (trainable ones), and per tensor [§8.5]."""
    keys = list(tau)
    train = set(keys if trainable is None else trainable)
    z_all = n_all = z_tr = n_tr = 0
    per = {}
    for k in keys:
        v = tau[k]
        z = int((v == 0).sum().item())
        n = v.numel()
        per[k] = 100.0 * z / max(n, 1)
        z_all += z
        n_all += n
        if k in train:
            z_tr += z
            n_tr += n
    return {"u_all": 100.0 * z_all / max(n_all, 1), "u_train": 100.0 * z_tr / max(n_tr, 1),
            "n_all": n_all, "n_train": n_tr, "nonzero": n_all - z_all, "per_tensor": per}


def _component(module: "torch.nn.Module") -> str:
    from torch import nn

    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)):
        return "bn_affine"
    if isinstance(module, nn.LayerNorm):
        return "layernorm"
    if isinstance(module, nn.Linear):
        return "fc"
    if isinstance(module, nn.MultiheadAttention):
        return "attention"
    return type(module).__name__.lower()


def _depth_group(name: str, n_blocks: int | None) -> str:
    """Transformer blocks in three equal contiguous groups [P T6]; otherwise the top-level module
    (stem, layer1 … layer4, fc for a ResNet; the Sequential index for the CPU CNNs) [§8.5]."""
    import re

    m = re.search(r"(?:^|\.)(?:blocks|resblocks|layers)\.(\d+)\.", name)
    if m and n_blocks:
        third = int(m.group(1)) * 3 // n_blocks
        return ("early", "middle", "late")[third]
    return name.split(".")[0]


def sparsity_breakdown(tau: Mapping[str, "torch.Tensor"], model: "torch.nn.Module") -> dict:
    """Sparsity of τ by depth group and by component (each with the std across its layers) [§8.5]."""
    import re
    import statistics

    modules = dict(model.named_modules())
    blocks = {int(m.group(1)) for k in tau for m in [re.search(r"(?:blocks|resblocks|layers)\.(\d+)\.", k)] if m}
    n_blocks = max(blocks) + 1 if blocks else None
    depth: dict[str, list[int]] = {}
    comp: dict[str, dict[str, list[int]]] = {}
    for k, v in tau.items():
        z, n = int((v == 0).sum().item()), v.numel()
        d = depth.setdefault(_depth_group(k, n_blocks), [0, 0])
        d[0] += z
        d[1] += n
        owner = k.rsplit(".", 1)[0]
        c = comp.setdefault(_component(modules[owner]) if owner in modules else "other", {})
        layer = c.setdefault(owner, [0, 0])
        layer[0] += z
        layer[1] += n
    by_comp = {}
    for name, layers in comp.items():
        z = sum(a for a, _ in layers.values())
        n = sum(b for _, b in layers.values())
        per = [100.0 * a / b for a, b in layers.values()]
        by_comp[name] = {"sparsity": 100.0 * z / n, "n": n, "layers": len(per),
                         "std_across_layers": statistics.stdev(per) if len(per) > 1 else 0.0}
    return {"by_depth": {g: {"sparsity": 100.0 * z / n, "n": n} for g, (z, n) in depth.items()},
            "by_component": by_comp}
