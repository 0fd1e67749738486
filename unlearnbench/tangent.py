"""The linearised model of PROTOCOL §4.8: fine-tuning and editing in the tangent space of θ_0.

    f_lin(x; θ) = f(x; θ_0) + J_θ f(x; θ_0) · (θ − θ_0)

computed in forward mode (``torch.func.jvp``) at every call, so no Jacobian is ever built: one
forward pass carrying a tangent, a few forwards' cost [Ortiz-Jiménez et al. 2023, "Task Arithmetic
in the Tangent Space", https://arxiv.org/abs/2305.12827; their code's ``LinearizedModel``].

``Linearized`` wraps a plain model whose parameters are θ. Its ``state_dict`` and
``load_state_dict`` are the plain model's (the same keys), so a linear pool member is stored as
any member is, τ = θ − θ_0 is ``taskvec.task_vector``'s, θ_0 − λτ is ``taskvec.edited_state``'s,
``InPlaceEditor`` sets it in place, and every §4 operator applies unchanged; only the forward
differs. θ_0, parameters and buffers, is held apart and never changes.

**BN and dropout** [OURS, following the reference, which builds f from ``init_model.eval()``]:
f is the model in eval mode, with θ_0's running statistics, in fine-tuning as in evaluation.
Batch statistics would make f_lin(x) depend on the rest of the batch, and statistics updated
while fine-tuning would move the point the expansion is taken at. So a linear pool member keeps
θ_0's buffers, and §3's "BN in train mode" for classifier pools applies to the standard pool only.

**The λ curve is a line** (``TangentLine``): f_lin(x; θ_0 − λτ) = f(x; θ_0) − λ·J·τ exactly, so
one jvp per split, which gives f(x; θ_0) and J·τ together, yields the logits at every λ of a sweep.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn
from torch.func import functional_call, jvp

from .metrics import eval_batch


class Linearized(nn.Module):
    """f_lin(·; θ) around θ_0, θ being ``model``'s parameters as they are now (the model is not
    reset: load θ_0 into it first to start a fine-tune at θ_0, or an edited state to evaluate it).

    ``theta0`` is a full state dict of ``model``'s architecture. The wrapper's parameters are
    ``model``'s (what an optimiser steps), its state dict is ``model``'s, and attributes it does not
    have are ``model``'s (a multi-head model's ``head``, which ``Task.route`` sets)."""

    def __init__(self, model: nn.Module, theta0: Mapping[str, torch.Tensor]):
        super().__init__()
        self.inner = model
        self.names = [n for n, _ in model.named_parameters()]
        own = dict(model.named_buffers())
        saved = set(model.state_dict())  # a buffer outside it is a constant of the architecture (CLIP's pixel mean)
        missing = [n for n in self.names + list(own) if n in saved and n not in theta0]
        if missing:
            raise KeyError(f"θ_0 lacks {missing[:3]} of the model it linearises")
        # θ_0 as non-persistent buffers of a holder module: moved by .to(device), kept out of every
        # state dict (the wrapper's is the inner model's)
        base = nn.Module()
        for i, n in enumerate(self.names):
            base.register_buffer(f"p{i}", theta0[n].detach().clone(), persistent=False)
        buffers = list(own)
        for i, n in enumerate(buffers):
            base.register_buffer(f"b{i}", (theta0[n] if n in saved else own[n]).detach().clone(), persistent=False)
        self.base = base
        self.buffer_names = buffers
        self.inner.eval()

    # -- the function ---------------------------------------------------------------------------
    def _theta0(self) -> tuple[dict, dict]:
        hold = self.base
        return ({n: getattr(hold, f"p{i}") for i, n in enumerate(self.names)},
                {n: getattr(hold, f"b{i}") for i, n in enumerate(self.buffer_names)})

    def _f(self, x: torch.Tensor, buffers: dict):
        """f(x; ·) as a function of the parameters, with θ_0's buffers, in eval mode."""
        return lambda params: functional_call(self.inner, {**params, **buffers}, (x,))

    def _jvp(self, x: torch.Tensor, tangent: dict) -> tuple[torch.Tensor, torch.Tensor]:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        p0, b0 = self._theta0()
        # Attention's fused kernels (nn.MultiheadAttention's eval-mode fast path, flash / memory-efficient
        # scaled-dot-product attention: CLIP's ViT) have no forward-AD rule in torch 2.x, so the jvp takes
        # the unfused path and the math backend: the same function. The global switch is restored at once
        fast = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            with sdpa_kernel([SDPBackend.MATH]):
                return jvp(self._f(x, b0), (p0,), (tangent,))
        finally:
            torch.backends.mha.set_fastpath_enabled(fast)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p0, _ = self._theta0()
        theta = dict(self.inner.named_parameters())
        out, dout = self._jvp(x, {n: theta[n] - p0[n] for n in self.names})  # θ − θ_0 carries the gradient to θ
        return out + dout

    def value_and_tangent(self, x: torch.Tensor, tau: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(f(x; θ_0), J_θ f(x; θ_0)·τ) in one jvp; τ's missing parameters are 0 (buffers, frozen heads)."""
        p0, _ = self._theta0()
        return self._jvp(x, {n: tau[n].to(p0[n].device, p0[n].dtype) if n in tau else torch.zeros_like(p0[n])
                             for n in self.names})

    # -- the plain model's surface ----------------------------------------------------------------
    def train(self, mode: bool = True) -> "Linearized":
        super().train(mode)
        self.inner.eval()  # f is θ_0's eval-mode function, fine-tuning included (module docstring)
        return self

    def state_dict(self, *args, **kwargs):  # type: ignore[override]
        return self.inner.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        return self.inner.load_state_dict(state_dict, strict=strict, assign=assign)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self.__dict__.get("_modules", {}).get("inner")
            if inner is None or name.startswith("__"):
                raise
            return getattr(inner, name)

    def __setattr__(self, name: str, value) -> None:
        inner = self.__dict__.get("_modules", {}).get("inner")
        if (inner is not None and name != "training" and not name.startswith("_") and name in vars(inner)
                and not isinstance(value, (nn.Module, torch.Tensor))):
            setattr(inner, name, value)  # a plain attribute of the model (CLIP's head): the model's
            return
        super().__setattr__(name, value)


class TangentLine:
    """θ_0 − λτ in the tangent space for a λ sweep, without a forward per λ.

    f_lin(x; θ_0 − λτ) = f(x; θ_0) − λ·J·τ is exactly affine in λ: ``logits(split, x)`` runs one
    jvp over a split the first time it is asked for it (in the evaluator's batches) and afterwards
    returns f(x; θ_0) − λ·J·τ at the λ last ``set``. It is the evaluator's ``logits_of`` hook
    (``Evaluator.measure``), so every metric and rule sees the logits a forward would give, up to
    float rounding (tests/test_tangent.py: the same λ* as the sweep that forwards at each λ)."""

    def __init__(self, model: Linearized, tau: Mapping[str, torch.Tensor], device: str = "cpu"):
        self.model, self.tau, self.device = model, tau, device
        self.lam = 0.0
        self.parts: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.forwarded = 0  # images put through the jvp

    def set(self, lam: float) -> None:
        self.lam = float(lam)

    def logits(self, split: str, x: torch.Tensor) -> torch.Tensor:
        if split not in self.parts:
            self.model.eval()
            f0, jt = [], []
            b = eval_batch(self.device)
            with torch.no_grad():
                for i in range(0, len(x), b):
                    v, t = self.model.value_and_tangent(x[i:i + b].to(self.device), self.tau)
                    f0.append(v.float().cpu())
                    jt.append(t.float().cpu())
            self.forwarded += len(x)
            self.parts[split] = (torch.cat(f0), torch.cat(jt)) if f0 else (torch.empty(0), torch.empty(0))
        f0_, jt_ = self.parts[split]
        return torch.add(f0_, jt_, alpha=-self.lam)
