"""Task vectors and applying them (PROTOCOL §3, §5).

τ covers P, the floating-point *parameters* of the edited module (trainable or frozen);
buffers (BN running statistics, ``num_batches_tracked``) are never in τ and always come
from θ_0. θ(λ) = θ_0 − λ·τ.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping

from .errors import StoreError

if TYPE_CHECKING:
    import torch

State = Mapping[str, "torch.Tensor"]


def param_keys(model: "torch.nn.Module") -> list[str]:
    """Names of P in state-dict order: floating-point parameters, buffers excluded."""
    names = {n for n, p in model.named_parameters() if p.is_floating_point()}
    return [k for k in model.state_dict() if k in names]


def task_vector(theta: State, theta0: State, keys: Iterable[str]) -> dict[str, "torch.Tensor"]:
    """τ = θ − θ_0 over ``keys``, in fp32 (half precision is upcast first)."""
    import torch

    out = {}
    for k in keys:
        if k not in theta:
            raise StoreError(f"checkpoint lacks parameter {k!r} of the base model")
        a, b = theta[k], theta0[k]
        if a.shape != b.shape:
            raise StoreError(f"parameter {k!r} has shape {tuple(a.shape)}, the base has {tuple(b.shape)}")
        t = a.float() - b.float()
        if not torch.isfinite(t).all():  # PROTOCOL §3: a non-finite candidate is rejected, not zeroed
            raise StoreError(f"task vector has non-finite values in {k!r}")
        out[k] = t
    return out


def edited_state(theta0: State, tau: State, lam: float) -> dict[str, "torch.Tensor"]:
    """θ_0 − λτ on P; every other entry (buffers) is θ_0's, untouched."""
    import torch

    out = {}
    for k, v in theta0.items():
        if k in tau:  # the same op as InPlaceEditor, so the selected model is bitwise the swept one
            out[k] = torch.add(v.float(), tau[k], alpha=-lam).to(v.dtype)
        else:
            out[k] = v.clone()
    return out


class InPlaceEditor:
    """Sets a live model's parameters to θ_0 − λτ in place, so a λ sweep rebuilds nothing."""

    def __init__(self, model: "torch.nn.Module", theta0: State, tau: State):
        import torch

        self.model = model
        sd = model.state_dict(keep_vars=True)
        self.targets = [(sd[k], theta0[k].to(sd[k].device, torch.float32), tau[k].to(sd[k].device)) for k in tau]
        with torch.no_grad():  # buffers come from θ_0 once and never change
            for k, v in theta0.items():
                if k not in tau:
                    sd[k].copy_(v)

    def set(self, lam: float) -> None:
        import torch

        with torch.no_grad():
            for p, base, t in self.targets:
                p.copy_(torch.add(base, t, alpha=-lam))


# -- what every streaming merge reducer shares (PROTOCOL §4) -----------------------------------

def count_dtype(n: int) -> "torch.dtype":
    """The narrowest integer type that counts to n (int8 for n <= 127, §4.6)."""
    import torch

    return torch.int8 if n <= 127 else torch.int16 if n <= 32767 else torch.int32


class StreamKeys:
    """Base of streaming reducers: every task vector must have the first one's parameters;
    ``self.n`` counts the vectors seen and ``self.keys`` keeps the first one's order."""

    def __init__(self) -> None:
        self.n = 0
        self.keys: list[str] = []

    def check(self, tau: Mapping[str, "torch.Tensor"]) -> None:
        if not self.n:
            self.keys = list(tau)
        elif set(tau) != set(self.keys):
            raise KeyError(f"task vector {self.n + 1} has parameters {sorted(set(tau) ^ set(self.keys))[:3]} "
                           "that the first one lacked, or lacks some of the first one's")

    def result_check(self, what: str) -> None:
        if self.n == 0:
            raise ValueError(f"{what} needs at least one task vector")
