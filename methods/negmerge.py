"""NegMerge: sign-consensual merging of task vectors (Kim, Han, Choe, ICML 2025; PROTOCOL §4.6, §4.7).

    m_j = 1[ |C_j| = n ]          C_j = Σ_i sign(v_ij), sign(0) = 0
    τ_NM[j] = m_j · S_j / n       S_j = Σ_i v_ij

Streaming (normative): one pass in canonical pool order keeps S (fp32) and C (int8 for
n ≤ 127, else int16); after any prefix of k members, 1[|C| = k]·S/k is the merge of those k.
The n-ablation does not rely on that prefix property: ``pool.size=n`` streams only the members of
its subset (a random one, PROTOCOL §9.5 v2) through a fresh reducer, so S and C count exactly
those n (tests/test_stages.py). Memory is O(|θ|) whatever n. Reference code: naver-ai/negmerge
d67b3e7 [NM].

Variants (§4.7) are options of this one family, and each PROTOCOL name is also a preset
(a registered method whose defaults differ), so ``--method negmerge-min`` and
``--method negmerge -o method.value=min`` compute the same merge:

    negmerge      value=avg  mask=consensus  kept where |C_j| = n: S_j / n               [P Eq. 1]
    negmerge-min  value=min  mask=consensus  kept where |C_j| = n: σ_j · min_i |v_ij|   [P T C1]
    negmerge-max  value=max  mask=consensus  kept where |C_j| = n: σ_j · max_i |v_ij|
    conflict      value=avg  mask=conflict   kept where |C_j| < n: S_j / n               [P T3, B6]
    all           value=avg  mask=all        everywhere: S_j / n, i.e. Uniform           [P T3]

``by=value`` takes the literal element-wise min_i v_ij / max_i v_ij instead (not odd) [OURS].
``consensus_q=q`` (EXTENSION, [P footnote 1]) keeps j where max(P_j, N_j) ≥ q, q > n/2, with
the majority-sign entries' mean (avg) or extreme (min/max); q = n is ``negmerge`` exactly.
Every variant streams: the extra state is S⁺, S⁻, P, N (partial consensus) and the running
extreme of the positive and of the negative entries (min/max), each O(|θ|).
[OURS] value=min/max and consensus_q are defined only with mask=consensus; other
combinations are refused by ``check_config`` (PROTOCOL defines conflict/all with S_j/n only).

``linear-negmerge`` (PROTOCOL §4.8, the paper's Linear block [P T1]) is ``negmerge`` over the linear
pool (``pool.linear=true``): members fine-tuned as θ_0's linearised model, the merge unchanged, the
edit evaluated as f_lin(θ_0 − λτ). ``-o pool.linear=true`` does the same for any variant.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from unlearnbench import Choice, ConfigError, MergeMethod, StreamKeys, count_dtype, hookimpl, opt

if TYPE_CHECKING:
    import torch


class Value(Choice):
    avg = "avg"
    min = "min"
    max = "max"


class By(Choice):
    magnitude = "magnitude"
    value = "value"


class Mask(Choice):
    consensus = "consensus"
    conflict = "conflict"
    all = "all"


@dataclass
class NegMergeConfig:
    value: Value = opt(Value.avg, "value where kept: avg (S_j/n) | min | max (min/max_i |v_ij| with the common "
                       "sign)", "[P Eq. 1]; min [P T C1]; §4.7")
    by: By = opt(By.magnitude, "min/max by magnitude with the common sign kept (odd) | value: the literal "
                 "element-wise min/max of v_ij", "[OURS] §4.7")
    mask: Mask = opt(Mask.consensus, "kept where: consensus (all n signs agree) | conflict (|C_j| < n) | all",
                     "[P Eq. 1]; conflict [P T3, B6]; all [P T3]")
    consensus_q: int = opt(0, "EXTENSION partial consensus: keep where max(P_j, N_j) >= q, n/2 < q <= n; "
                           "0 = n (full consensus, the paper's rule)", "[P footnote 1] EXTENSION §4.7")


def check_options(value: str, by: str, mask: str, consensus_q: int) -> tuple[Value, By, Mask]:
    """The options as members; ConfigError for a value or a combination PROTOCOL §4.7 does not define."""
    value, by, mask = Value.of(value, "method.value"), By.of(by, "method.by"), Mask.of(mask, "method.mask")
    if not isinstance(consensus_q, int) or consensus_q < 0:
        raise ConfigError(f"method.consensus_q must be an integer >= 0 (0 = n, full consensus), not {consensus_q!r}")
    if mask != "consensus" and (value != "avg" or consensus_q):
        raise ConfigError(f"method.mask={mask} takes S_j/n where kept (PROTOCOL §4.7); value=min/max and "
                          f"consensus_q apply only to mask=consensus (got value={value}, consensus_q={consensus_q})")
    if value == "avg" and by != "magnitude":
        raise ConfigError("method.by applies only to value=min or value=max (PROTOCOL §4.7)")
    return value, by, mask


# (value, by) -> the running op over the positive entries and over the negative entries:
# by magnitude, min|v| of negatives is the negative entry nearest 0, i.e. their max.
EXTREME_OPS = {("min", "magnitude"): ("min", "max"), ("min", "value"): ("min", "min"),
               ("max", "magnitude"): ("max", "min"), ("max", "value"): ("max", "max")}


class NegMergeReducer(StreamKeys):
    """Streaming NegMerge and its §4.7 variants; ``result()`` is the merge of everything seen so far.

    State (each a dict name -> tensor of that parameter's shape; only what the options need):
    S = Σ v and C = Σ sign(v) (full consensus, conflict, all); P, N, S⁺, S⁻ (partial consensus);
    E⁺, E⁻ = running extreme of the positive / negative entries (value=min|max).
    """

    def __init__(self, value: str = "avg", by: str = "magnitude", mask: str = "consensus",
                 consensus_q: int = 0) -> None:
        value, by, mask = check_options(value, by, mask, consensus_q)
        super().__init__()
        self.value, self.by, self.mask, self.q = value, by, mask, consensus_q
        self.partial = consensus_q > 0
        self.S: dict[str, "torch.Tensor"] = {}
        self.C: dict[str, "torch.Tensor"] = {}
        self.P: dict[str, "torch.Tensor"] = {}
        self.N: dict[str, "torch.Tensor"] = {}
        self.Sp: dict[str, "torch.Tensor"] = {}
        self.Sm: dict[str, "torch.Tensor"] = {}
        self.Ep: dict[str, "torch.Tensor"] = {}
        self.Em: dict[str, "torch.Tensor"] = {}
        self._need_S = value == "avg" and not self.partial
        self._need_C = mask != "all" and not self.partial
        self._ops = EXTREME_OPS.get((value, by))

    def update(self, tau: dict[str, "torch.Tensor"]) -> None:
        import torch

        self.check(tau)
        if count_dtype(self.n + 1) != count_dtype(self.n):  # widen once, before the count overflows
            dt = count_dtype(self.n + 1)
            for counts in (self.C, self.P, self.N):
                for k in counts:
                    counts[k] = counts[k].to(dt)
        first = self.n == 0
        cdt = count_dtype(self.n + 1)
        for k in self.keys:
            v = tau[k].float()
            if self._need_S:
                _add(self.S, k, v, first)
            if self._need_C:
                _add(self.C, k, torch.sign(v).to(cdt), first)
            if self.partial:
                pos, neg = v > 0, v < 0
                _add(self.P, k, pos.to(cdt), first)
                _add(self.N, k, neg.to(cdt), first)
                if self.value == "avg":
                    zero = torch.zeros((), dtype=v.dtype)
                    _add(self.Sp, k, torch.where(pos, v, zero), first)
                    _add(self.Sm, k, torch.where(neg, v, zero), first)
            if self._ops is not None:
                _extreme(self.Ep, k, v, v > 0, self._ops[0], first)
                _extreme(self.Em, k, v, v < 0, self._ops[1], first)
        self.n += 1

    def result(self) -> dict[str, "torch.Tensor"]:
        import torch

        n = self.n
        if n == 0:
            raise ValueError("NegMerge needs at least one task vector")
        if self.partial and not (n / 2 < self.q <= n):
            raise ConfigError(f"method.consensus_q={self.q} needs n/2 < q <= n (a strict majority), "
                              f"but the pool has n={n} members")
        out = {}
        for k in self.keys:
            if self.mask == "all":
                out[k] = self.S[k] / n
            elif self.mask == "conflict":
                out[k] = torch_where(self.C[k].abs() < n, self.S[k] / n)
            elif self.partial:
                P, N = self.P[k], self.N[k]
                M = torch.maximum(P, N)  # the majority's size; the majority is strict where kept (q > n/2)
                pos = P > N
                if self._ops is None:
                    val = torch.where(pos, self.Sp[k], self.Sm[k]) / M.clamp(min=1).float()
                else:
                    val = torch.where(pos, self.Ep[k], self.Em[k])
                out[k] = torch_where(M >= self.q, val)
            else:
                agree = self.C[k].abs() == n  # all n signs equal and non-zero
                val = self.S[k] / n if self._ops is None else torch.where(self.C[k] > 0, self.Ep[k], self.Em[k])
                out[k] = torch_where(agree, val)
        return out


def _add(acc: dict, k: str, x: "torch.Tensor", first: bool) -> None:
    if first:
        acc[k] = x.clone()
    else:
        acc[k].add_(x)


def _extreme(acc: dict, k: str, v: "torch.Tensor", sel: "torch.Tensor", op: str, first: bool) -> None:
    """Running min/max of the entries where ``sel``; ±inf (the op's identity) where none yet."""
    import torch

    fill = torch.tensor(float("inf") if op == "min" else float("-inf"), dtype=v.dtype)
    x = torch.where(sel, v, fill)
    if first:
        acc[k] = x
    else:
        acc[k] = (torch.minimum if op == "min" else torch.maximum)(acc[k], x)


def torch_where(mask, values):
    import torch

    return torch.where(mask, values, torch.zeros((), dtype=values.dtype))


def negmerge(taus, **options: Any) -> dict[str, "torch.Tensor"]:
    """τ_NM (or a §4.7 variant, by keyword options) of an iterable of task vectors (a list or a stream)."""
    red = NegMergeReducer(**options)
    for t in taus:
        red.update(t)
    return red.result()


class NegMerge(MergeMethod):
    name = "negmerge"
    title = "NegMerge"
    elementwise = True  # all §4.7 variants too: per-element state only
    description = "keep task-vector elements whose sign all pool members agree on, average, negate"
    reference_url = "https://arxiv.org/abs/2410.05583"
    Config: type = NegMergeConfig

    claim_role = "consensus"  # the paper's method (report/claims.py)

    def __init__(self, name: str | None = None, description: str | None = None, role: str = "",
                 suite: dict | None = None, title: str | None = None, **defaults: Any) -> None:
        """The family; with ``name`` and option defaults, a named preset of it (§4.7), whose part in the
        paper's claims is ``role`` ([P T3]: "merge_all", "merge_conflict"); ``suite``: the suite options
        it sets (``linear-negmerge``: the linear pool, §4.8)."""
        if name is not None:
            self.name = name
            self.claim_role = role
        if description is not None:
            self.description = description
        if suite is not None:
            self.suite_defaults = suite
        if title is not None:
            self.title = title
        if defaults:
            self.Config = _preset_config(defaults)

    def check_config(self, cfg: Any) -> None:
        check_options(str(cfg.value), str(cfg.by), str(cfg.mask), int(cfg.consensus_q))

    def reducer(self, cfg: Any) -> NegMergeReducer:
        if cfg is None:
            cfg = self.Config()
        self.check_config(cfg)  # `unlearnbench merge` builds its options without the resolver
        return NegMergeReducer(str(cfg.value), str(cfg.by), str(cfg.mask), int(cfg.consensus_q))

    def chunk_reducer(self, cfg: Any) -> Any:
        cfg = cfg if cfg is not None else self.Config()
        self.check_config(cfg)
        if int(cfg.consensus_q) == 0:
            return SignBoundsReducer(str(cfg.value), str(cfg.by), str(cfg.mask))
        return self.reducer(cfg)  # partial consensus needs the counts P, N: the per-file reducer


class SignBoundsReducer:
    """NegMerge with full consensus (q = 0, every ``value``/``by``/``mask``), for the chunked file
    engine (unlearnbench.merge.engine: a ``FusedReducer``).

    All n signs agree and are non-zero exactly when min_i v_ij > 0 or max_i v_ij < 0, so a
    running min and max replace the sign count, and they are also the agreeing entries' extremes:
    where all are positive, lo = min|v| and hi = max|v|; where all are negative, the reverse.
    S is summed in the same order and each kept value is the same float, so the result is
    bitwise NegMergeReducer's. ``fused_op`` names the same merge in the engine's C kernel
    (unlearnbench/merge/kernel.c, one pass); ``update``/``result`` are the torch path. Its state is 3 tensors
    of the input's size: fine for a chunk, not for a whole model."""

    def __init__(self, value: str = "avg", by: str = "magnitude", mask: str = "consensus") -> None:
        self.value, self.by, self.mask = check_options(value, by, mask, 0)
        self.needs = frozenset(  # the accumulators of the torch path
            {"sum"} if mask == "all" else {"min", "max"} | ({"sum"} if value == "avg" else set()))
        self.fused_op = ("sum_mean" if mask == "all" else "conflict_mean" if mask == "conflict" else
                         "consensus_mean" if value == "avg" else
                         f"consensus_{value}{'_mag' if by == 'magnitude' else ''}")
        self.n = 0
        self.acc: dict[str, dict[str, "torch.Tensor"]] = {}

    def update(self, tau: dict[str, "torch.Tensor"]) -> None:
        import torch

        for k, v in tau.items():
            v = v.float()
            if not self.n:
                self.acc[k] = {need: v.clone() for need in self.needs}
                continue
            a = self.acc[k]
            if "sum" in a:
                a["sum"].add_(v)
            if "min" in a:
                torch.minimum(a["min"], v, out=a["min"])
            if "max" in a:
                torch.maximum(a["max"], v, out=a["max"])
        self.n += 1

    def result(self) -> dict[str, "torch.Tensor"]:
        if not self.n:
            raise ValueError("NegMerge needs at least one task vector")
        return {k: self.finish(self.n, a) for k, a in self.acc.items()}

    def finish(self, n: int, a: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        """The merge of one tensor (or chunk) from its accumulators over n candidates."""
        import torch

        if self.mask == "all":
            return a["sum"] / n
        pos, neg = a["min"] > 0, a["max"] < 0
        agree = pos | neg
        if self.mask == "conflict":
            return torch_where(~agree, a["sum"] / n)
        if self.value == "avg":
            return torch_where(agree, a["sum"] / n)
        lo, hi = a["min"], a["max"]
        if self.by == "value":
            return torch_where(agree, lo if self.value == "min" else hi)
        small, large = torch.where(pos, lo, hi), torch.where(pos, hi, lo)  # by magnitude, sign kept
        return torch_where(agree, small if self.value == "min" else large)


def _preset_config(defaults: dict) -> type:
    """NegMergeConfig with other defaults: a variant is a named config, not a new class (DESIGN)."""
    hints = typing.get_type_hints(NegMergeConfig)
    fields = []
    for f in dataclasses.fields(NegMergeConfig):
        fields.append((f.name, hints[f.name],
                       dataclasses.field(default=defaults.pop(f.name, f.default), metadata=f.metadata)))
    if defaults:
        raise TypeError(f"unknown NegMerge options {sorted(defaults)}")
    return dataclasses.make_dataclass("NegMergePresetConfig", fields)


PRESETS = {  # PROTOCOL §4.7's table: name -> (option defaults, description)
    "negmerge-min": ({"value": Value.min}, "NegMerge mask, the smallest agreeing magnitude with the common sign "
                     "[P T C1]"),
    "negmerge-max": ({"value": Value.max}, "NegMerge mask, the largest agreeing magnitude with the common sign"),
    "conflict": ({"mask": Mask.conflict}, "average only where the pool's signs disagree [P T3, B6]"),
    "all": ({"mask": Mask.all}, "average everywhere (= Uniform), as the NegMerge family's 'All' [P T3]"),
}


@hookimpl
def register_methods(register):
    register(NegMerge())
    roles = {"all": "merge_all", "conflict": "merge_conflict"}  # consensus < all < conflict [P T3]
    for name, (defaults, description) in PRESETS.items():
        register(NegMerge(name, description, role=roles.get(name, ""), **defaults))
    # the paper's Linear block [P T1]: NegMerge over the linear pool, edits evaluated as f_lin (PROTOCOL §4.8);
    # `-o pool.linear=true` on any variant or merge computes the same way
    register(NegMerge("linear-negmerge", "NegMerge over the linear pool (fine-tuned in θ_0's tangent space), "
                      "evaluated as the linearised model", suite={"pool": {"linear": True}}, title="Linear NegMerge"))
