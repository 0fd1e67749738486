"""The merge operators the NegMerge paper compares against (PROTOCOL §4.2–§4.5).

- ``uniform``: Model-Soups uniform, τ_U = S/n (§4.2; "All" in [P T3]).
- ``greedy``: Model-Soups greedy over the pool, ranked and accepted by CE on D_val (§4.3;
  Wortsman et al. 2022, https://arxiv.org/abs/2203.05482). Classifier EXTENSION (G = D_val).
- ``ties``: TIES-Merging, trim / elect / disjoint mean (§4.4; Yadav et al. 2023,
  https://arxiv.org/abs/2306.01708, [TIES-ref] merge_utils).
- ``magmax``: the element of largest magnitude (§4.5; Marczak et al. 2024, https://arxiv.org/abs/2407.06322).

Every operator maps (τ_1 … τ_n) to one τ; negation and λ come from the harness (§5).
Notation: v_ij = τ_i[j], S_j = Σ_i v_ij, sign(0) = 0, n candidates in canonical pool order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from unlearnbench import Choice, ConfigError, MergeMethod, Result, StreamKeys, count_dtype, hookimpl, opt

if TYPE_CHECKING:
    import torch

Tau = dict[str, "torch.Tensor"]

# "global" is a Python keyword, so this Choice is made by Enum's functional API: TrimScope["global"]
TrimScope = Choice("TrimScope", [("global", "global"), ("per_tensor", "per_tensor")], module=__name__)


class Order(Choice):
    ascending_loss = "ascending_loss"
    descending_loss = "descending_loss"


@dataclass
class TiesConfig:
    density: float = opt(0.2, "k, the fraction of each candidate's elements kept by the trim (0 < k <= 1)",
                         "[TIES-ref] default; the paper does not state its k §4.4")
    trim_scope: TrimScope = opt(TrimScope["global"], "global: trim over all d elements of P at once | "
                                "per_tensor: per parameter", "global [TIES-ref]; per_tensor [OURS] EXTENSION §4.4")


@dataclass
class GreedyConfig:
    order: Order = opt(Order.ascending_loss, "candidate order by CE on D_val of θ_0 + τ_i: ascending_loss (best "
                       "first, Model Soups) | descending_loss (the [P T1] caption's wording)", "[OURS] §4.3")


# -- pure tensor code: streaming reducers (update(tau) ... result()) -------------------------------

class UniformReducer(StreamKeys):
    """τ_U[j] = S_j / n (§4.2). Keeps S (fp32): O(|θ|) whatever n."""

    def __init__(self) -> None:
        super().__init__()
        self.S: Tau = {}

    def update(self, tau: Tau) -> None:
        self.check(tau)
        for k in self.keys:
            v = tau[k].float()
            if self.n:
                self.S[k].add_(v)
            else:
                self.S[k] = v.clone()
        self.n += 1

    def result(self) -> Tau:
        self.result_check("Uniform")
        return {k: self.finish(self.n, {"sum": s}) for k, s in self.S.items()}

    fused_op = "sum_mean"  # a FusedReducer: the chunked engine's C kernel computes this merge (merge/kernel.c)

    @staticmethod
    def finish(n: int, acc: dict) -> "torch.Tensor":
        return acc["sum"] / n


def ties_trim(tau: Tau, density: float, scope: str = "global") -> Tau:
    """Step 1 of §4.4: v̂_ij = v_ij · 1[|v_ij| ≥ t_i], t_i the (d − ⌊k·d⌋)-th smallest |v_ij| (1-indexed),
    over all d elements of P (frozen zeros included), or over each tensor for ``scope=per_tensor``.
    Ties at t_i are kept, so ⌊k·d⌋ + 1 elements survive when magnitudes are distinct."""
    import torch

    def threshold(flat_abs: "torch.Tensor") -> "torch.Tensor | None":
        d = flat_abs.numel()
        rank = d - math.floor(density * d)  # ⌊k·d⌋ in double precision, as [TIES-ref] int(d·k)
        if rank < 1 or d == 0:  # k = 1 keeps every element
            return None
        return torch.kthvalue(flat_abs, rank).values

    v = {k: t.float() for k, t in tau.items()}
    zero = torch.zeros(())
    if scope == "global":
        t = threshold(torch.cat([x.abs().reshape(-1) for x in v.values()]))
        return {k: x if t is None else torch.where(x.abs() >= t, x, zero) for k, x in v.items()}
    out = {}
    for k, x in v.items():
        t = threshold(x.abs().reshape(-1))
        out[k] = x if t is None else torch.where(x.abs() >= t, x, zero)
    return out


class TiesReducer(StreamKeys):
    """TIES-Merging (§4.4) in one streaming pass.

    Trim needs only the candidate at hand. Elect and the disjoint mean would need all n trimmed
    vectors at once ([TIES-ref] stacks them, hence §8.6's "TIES: all n"), or two passes: γ_j
    first, then the entries agreeing with γ_j. Both are avoided, exactly, by keeping per element
    Σ v̂ (for the elect), Σ of the positive and of the negative v̂, and the counts P, N of positive
    and negative v̂: once γ_j is known the disjoint mean is S⁺/P or S⁻/N. Resident: one
    candidate plus 3 fp32 and 2 integer accumulators of |θ| elements, whatever n.
    """

    def __init__(self, density: float = 0.2, trim_scope: str = "global") -> None:
        super().__init__()
        check_density(density)
        self.density, self.scope = density, TrimScope.of(trim_scope, "method.trim_scope")
        self.S: Tau = {}  # Σ_i v̂_ij, summed in canonical order: the elect
        self.Sp: Tau = {}  # Σ_i v̂_ij·1[v̂_ij > 0]
        self.Sm: Tau = {}  # Σ_i v̂_ij·1[v̂_ij < 0]
        self.P: Tau = {}  # #{i : v̂_ij > 0}
        self.N: Tau = {}  # #{i : v̂_ij < 0}

    def update(self, tau: Tau) -> None:
        import torch

        self.check(tau)
        trimmed = ties_trim({k: tau[k] for k in self.keys}, self.density, self.scope)  # 1. trim
        dt = count_dtype(self.n + 1)
        if dt != count_dtype(self.n):  # widen once, before a count overflows
            self.P = {k: c.to(dt) for k, c in self.P.items()}
            self.N = {k: c.to(dt) for k, c in self.N.items()}
        zero = torch.zeros(())
        for k in self.keys:
            v = trimmed[k]
            pos, neg = v > 0, v < 0
            parts = ((self.S, v), (self.Sp, torch.where(pos, v, zero)), (self.Sm, torch.where(neg, v, zero)),
                     (self.P, pos.to(dt)), (self.N, neg.to(dt)))
            for acc, x in parts:
                if self.n:
                    acc[k].add_(x)
                else:
                    acc[k] = x.clone()
        self.n += 1

    def result(self) -> Tau:
        import torch

        self.result_check("TIES")
        gamma = {k: torch.sign(s) for k, s in self.S.items()}  # 2. elect: γ_j = sign(Σ_i v̂_ij)
        majority = torch.sign(sum(g.sum(dtype=torch.int64) for g in gamma.values()))  # sign(Σ_j′ γ_j′)
        out = {}
        for k, g in gamma.items():
            g = torch.where(g == 0, majority.to(g.dtype), g)  # γ_j = 0: the global majority sign
            pos = self.Sp[k] / self.P[k].clamp(min=1).float()  # 3. disjoint mean over entries with sign γ_j
            neg = self.Sm[k] / self.N[k].clamp(min=1).float()
            # γ_j = 0 even after the fallback (a global tie): only v̂_ij = 0 has sign γ_j, so 0 [OURS]
            out[k] = torch.where(g > 0, pos, torch.where(g < 0, neg, torch.zeros(())))
        return out


class MagMaxReducer(StreamKeys):
    """τ_M[j] = v_{i*(j), j}, i*(j) = argmax_i |v_ij| (§4.5). Streaming: a running value replaced only
    where a candidate's magnitude is strictly larger, so ties go to the first candidate. O(|θ|)."""

    def __init__(self) -> None:
        super().__init__()
        self.R: Tau = {}

    def update(self, tau: Tau) -> None:
        import torch

        self.check(tau)
        for k in self.keys:
            v = tau[k].float()
            self.R[k] = torch.where(v.abs() > self.R[k].abs(), v, self.R[k]) if self.n else v.clone()
        self.n += 1

    def result(self) -> Tau:
        self.result_check("MagMax")
        return {k: self.finish(self.n, {"absmax": r}) for k, r in self.R.items()}

    fused_op = "absmax"  # merge/kernel.c: the same strict |v| > |R| replacement, in file order

    @staticmethod
    def finish(n: int, acc: dict) -> "torch.Tensor":
        return acc["absmax"].clone()


class GreedySoup(StreamKeys):
    """Greedy soup (§4.3) over a loss function given by the caller: ``loss(tau)`` is the mean CE on
    the greedy split G of θ_0 + τ (not negated). Pure tensor code: the data live in ``loss``.

    Not a streaming reducer: candidates are accepted in loss order, not in the canonical order
    the pool streams in, so it holds all n task vectors (n models) plus the running sum of the
    accepted ones; re-reading the pool for each acceptance step would cost up to n passes.
    Costs 2n − 1 loss evaluations: n rankings ``update`` makes, and n − 1 soups ``result`` tries.
    """

    def __init__(self, loss: Callable[[Tau], float], order: str = "ascending_loss") -> None:
        super().__init__()
        self.loss, self.order = loss, Order.of(order, "method.order")
        self.taus: list[Tau] = []
        self.losses: list[float] = []  # ℓ_i, in canonical order
        self.accepted: list[int] = []  # canonical indices of A, in acceptance order
        self.tried: list[dict] = []  # every soup tried: {index, loss, accepted}
        self.evals = 0

    def update(self, tau: Tau) -> None:
        self.check(tau)
        t = {k: tau[k].float() for k in self.keys}
        self.losses.append(float(self.loss(t)))  # 1. ℓ_i on G
        self.evals += 1
        self.taus.append(t)
        self.n += 1

    def result(self) -> Tau:
        self.result_check("Greedy")
        ranked = sorted(range(self.n), key=lambda i: self.losses[i],  # 2. stable: ties keep canonical order
                        reverse=self.order == Order.descending_loss)
        first = ranked[0]
        total = {k: x.clone() for k, x in self.taus[first].items()}  # 3. A = {first}: L(A) = ℓ_first
        self.accepted, self.tried = [first], []
        best = self.losses[first]
        for i in ranked[1:]:
            m = len(self.accepted) + 1
            soup = {k: (total[k] + self.taus[i][k]) / m for k in self.keys}  # mean over A ∪ {i}
            L = float(self.loss(soup))
            self.evals += 1
            ok = L <= best  # accept if L(A ∪ {i}) ≤ L(A)
            self.tried.append({"index": i, "loss": L, "accepted": ok})
            if ok:
                for k in self.keys:
                    total[k].add_(self.taus[i][k])  # the same sum the accepted soup was evaluated at
                self.accepted.append(i)
                best = L
        self.best_loss = best
        return {k: s / len(self.accepted) for k, s in total.items()}  # 4. τ_G = mean over A


# -- option checks ------------------------------------------------------------------------------

def check_density(density: float) -> None:
    if not (0.0 < float(density) <= 1.0):
        raise ConfigError(f"method.density must be in (0, 1] (the fraction of elements kept; PROTOCOL §4.4), "
                          f"not {density!r}")


# -- the methods --------------------------------------------------------------------------------

class Uniform(MergeMethod):
    name = "uniform"
    elementwise = True
    description = "the mean of the pool's task vectors (Model Soups uniform; 'All' in the paper), negated"
    reference_url = "https://arxiv.org/abs/2203.05482"

    def reducer(self, cfg: Any) -> UniformReducer:
        return UniformReducer()


class Ties(MergeMethod):
    name = "ties"
    description = "TIES-Merging: trim to the top-k magnitudes, elect a sign per element, disjoint mean, negate"
    reference_url = "https://arxiv.org/abs/2306.01708"
    Config = TiesConfig

    def check_config(self, cfg: Any) -> None:
        check_density(cfg.density)

    def reducer(self, cfg: Any) -> TiesReducer:
        cfg = cfg if cfg is not None else TiesConfig()
        return TiesReducer(float(cfg.density), str(cfg.trim_scope))


class MagMax(MergeMethod):
    name = "magmax"
    elementwise = True
    description = "per element, the pool member's value of largest magnitude (first wins ties), negated"
    reference_url = "https://arxiv.org/abs/2407.06322"

    def reducer(self, cfg: Any) -> MagMaxReducer:
        return MagMaxReducer()


class Greedy(MergeMethod):
    """Greedy soup: rank candidates by CE on D_val of θ_0 + τ_i, add each in order while the soup's
    D_val loss does not rise, then negate the soup's mean with the selected λ (PROTOCOL §4.3).

    Classifier EXTENSION: G = D_val ([P] calls classifier Greedy infeasible with the forget set
    only); it is left out of the paper-comparison tables.

    Not a streaming reducer, so it overrides ``unlearn``: it reads D_val, and it holds all n task
    vectors (n models) plus the running sum of the accepted ones, because candidates are accepted
    in loss order while the pool streams in canonical order (re-streaming the pool per step would
    cost up to n passes over the store). 2n − 1 evaluations on D_val, counted in merge_wall_s and
    select_evals (§8.6).
    """

    name = "greedy"
    description = "greedy soup: add pool members best-first while the D_val loss does not rise, negate"
    reference_url = "https://arxiv.org/abs/2203.05482"
    uses = frozenset({"forget", "val"})
    Config = GreedyConfig

    def reducer(self, cfg: Any) -> Any:
        raise ConfigError("greedy ranks and accepts candidates by their loss on a scenario's D_val (PROTOCOL "
                          "§4.3), so it cannot merge bare checkpoints; run it with `unlearnbench run --method "
                          "greedy`, or merge with uniform, ties, magmax or negmerge")

    def unlearn(self, ctx: Any) -> Result:
        import time

        x, y = ctx.data("val")  # G = D_val (classifier EXTENSION)
        model = ctx.new_model(ctx.original())

        def loss(tau: Tau) -> float:
            model.load_state_dict(ctx.apply(tau, -1.0))  # θ_0 + τ: the fine-tuned direction, not negated
            return mean_ce(model, x, y, ctx.device)

        soup = GreedySoup(loss, str(ctx.cfg.order))
        t0, pool0 = time.perf_counter(), ctx.timings.get("pool_s", 0.0)
        for _, tau in ctx.pool():
            soup.update(tau)
        merged = soup.result()
        # §8.6: merge wall time includes Greedy's evaluations; its 2n − 1 evaluations count as selection's too
        ctx.timings["merge_wall_s"] = time.perf_counter() - t0 - (ctx.timings.get("pool_s", 0.0) - pool0)
        ctx.timings["select_evals"] = ctx.timings.get("select_evals", 0) + soup.evals
        sel = ctx.select(merged)
        info = {"greedy": {"order": str(soup.order), "losses": soup.losses, "accepted": soup.accepted,
                           "tried": soup.tried, "soup_loss": soup.best_loss, "evals": soup.evals}}
        return Result(ctx.apply(merged, sel.lam), lam=sel.lam, selection=sel, merged=merged, info=info)


# Fixed, unlike the evaluator's batch (metrics.eval_batch): the logits do not depend on it, but the
# per-batch float32 CE sums do, so another value would change recorded Greedy losses in the last bits.
EVAL_BATCH = 2048


def mean_ce(model: Any, x: "torch.Tensor", y: "torch.Tensor", device: str = "cpu") -> float:
    """Mean cross-entropy of ``model`` (eval mode) over all of (x, y), accumulated in float64."""
    import torch
    import torch.nn.functional as F

    model.eval()
    total = 0.0
    with torch.inference_mode():
        for i in range(0, len(x), EVAL_BATCH):
            out = model(x[i:i + EVAL_BATCH].to(device)).float()
            total += F.cross_entropy(out, y[i:i + EVAL_BATCH].to(device), reduction="sum").double().item()
    return total / max(len(y), 1)


@hookimpl
def register_methods(register):
    register(Uniform())
    register(Greedy())
    register(Ties())
    register(MagMax())
