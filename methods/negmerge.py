"""NegMerge: sign-consensual merging of task vectors (Kim, Han, Choe, ICML 2025; PROTOCOL §4.6).

    m_j = 1[ |C_j| = n ]          C_j = Σ_i sign(v_ij), sign(0) = 0
    τ_NM[j] = m_j · S_j / n       S_j = Σ_i v_ij

Streaming (normative): one pass in canonical pool order keeps S (fp32) and C (int8 for
n ≤ 127, else int16); after any prefix of k members, 1[|C| = k]·S/k is the merge of those k.
Memory is O(|θ|) whatever n. Reference code: naver-ai/negmerge d67b3e7 [NM].
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from unlearnbench import MergeMethod, hookimpl

if TYPE_CHECKING:
    import torch


class NegMergeReducer:
    """Running sum S and sign count C; ``result()`` is τ_NM of everything seen so far."""

    def __init__(self) -> None:
        self.n = 0
        self.S: dict[str, "torch.Tensor"] = {}
        self.C: dict[str, "torch.Tensor"] = {}

    def update(self, tau: dict[str, "torch.Tensor"]) -> None:
        import torch

        if self.n == 127:  # int8 would overflow at the 128th member: widen once
            self.C = {k: c.to(torch.int16) for k, c in self.C.items()}
        if self.n == 32767:
            self.C = {k: c.to(torch.int32) for k, c in self.C.items()}
        for k, v in tau.items():
            v = v.float()
            if k not in self.S:
                if self.n:
                    raise KeyError(f"task vector {self.n + 1} has a parameter {k!r} the first one lacked")
                self.S[k] = v.clone()
                self.C[k] = torch.sign(v).to(torch.int8)
            else:
                self.S[k].add_(v)
                self.C[k].add_(torch.sign(v).to(self.C[k].dtype))
        if self.n and set(tau) != set(self.S):
            raise KeyError(f"task vector {self.n + 1} lacks parameters {sorted(set(self.S) - set(tau))[:3]}")
        self.n += 1

    def result(self) -> dict[str, "torch.Tensor"]:
        if self.n == 0:
            raise ValueError("NegMerge needs at least one task vector")
        out = {}
        for k, s in self.S.items():
            agree = self.C[k].abs() == self.n  # all n signs equal and non-zero
            out[k] = torch_where(agree, s / self.n)
        return out


def torch_where(mask, values):
    import torch

    return torch.where(mask, values, torch.zeros((), dtype=values.dtype))


def negmerge(taus) -> dict[str, "torch.Tensor"]:
    """τ_NM of an iterable of task vectors (a list or a stream)."""
    red = NegMergeReducer()
    for t in taus:
        red.update(t)
    return red.result()


class NegMerge(MergeMethod):
    name = "negmerge"
    description = "keep task-vector elements whose sign all pool members agree on, average, negate"
    reference_url = "https://arxiv.org/abs/2410.05583"

    def reducer(self, cfg) -> NegMergeReducer:
        return NegMergeReducer()


@hookimpl
def register_methods(register):
    register(NegMerge())
