"""The Method base class and the result a method returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from .context import Ctx

VALID_SPLITS = frozenset({"forget", "retain", "val"})


@dataclass
class Result:
    """What ``Method.unlearn`` returns."""

    state: dict[str, "torch.Tensor"]  # the unlearned model's full state dict (same keys as θ_0)
    lam: float | None = None  # λ*, for methods that scale a task vector
    selection: Any = None  # unlearnbench.selection.Selection, when a rule chose a hyperparameter
    # The task vector τ behind θ_0 − λτ: its sparsity is recorded, and with selection.diagnostic=true
    # the harness re-applies every λ of ``selection``'s curve to it after the method returned.
    merged: dict[str, "torch.Tensor"] | None = None
    info: dict = field(default_factory=dict)  # anything else worth recording in run.json
    # Pool members ({"key", "lambda", ...}) the harness evaluates after selection is frozen, for the
    # trade-off plot (each member at its own λ*); the method itself never sees these numbers.
    diagnostics: list = field(default_factory=list)
    # selection.also rule name -> that rule's own Result, for a method that composes several selections
    # (Task Arithmetic's best member: each rule picks its own). Other methods leave it empty: the harness
    # applies each rule's choice on ``selection``'s curve itself (PROTOCOL §5(d)).
    by_rule: dict = field(default_factory=dict)


class Method:
    """Base of every method plugin.

    Subclasses set ``name`` (what users type), ``uses`` (the data the method itself reads:
    a subset of forget / retain / val; the paper's "Used splits" column) and implement
    ``unlearn(ctx)``. ``ctx`` hands out only the declared splits and never test data.
    """

    name: str = ""
    title: str = ""  # the name papers print (plot titles); "" = ``name``
    description: str = ""
    reference_url: str = ""
    uses: frozenset[str] = frozenset()
    oracle: bool = False  # True for the exact-unlearning reference (Retrain): never a ranked row
    # the part this method plays in the paper's claims that claims.md checks (report/claims.py ROLES):
    # "consensus" (NegMerge), "single_best" (Task Arithmetic), "merge_all", "merge_conflict", "trained"
    # (a §7 training-based baseline), or "" (none)
    claim_role: str = ""
    selects: bool = True  # whether a selection rule chooses a hyperparameter (adds its splits)
    # whether unlearn() reads ctx.pool(): a sweep run by an executor then trains the pool's members as
    # jobs before the cells that read it start (a method that does not say so still works: its cell
    # trains the members it lacks itself, once the pool is not stored yet)
    uses_pool: bool = False
    Config: type | None = None
    suite_defaults: dict = {}

    def unlearn(self, ctx: "Ctx") -> Result:  # pragma: no cover
        raise NotImplementedError

    def replay_pool(self, record: dict) -> list[int] | None:
        """The pool members (canonical indices) an ensemble run replaying ``record`` streams (PROTOCOL
        §8.7.0: the record's recipe, frozen): None, the pool the record's config names. A method that
        chose one member (Task Arithmetic's single best) names it, so the run merges only that one."""
        return None

    def validate_definition(self) -> None:
        extra = set(self.uses) - VALID_SPLITS
        if extra:
            raise ValueError(f"declares unknown splits {sorted(extra)}; methods may use {sorted(VALID_SPLITS)}")
        if not callable(getattr(self, "unlearn", None)):
            raise ValueError("has no unlearn(ctx)")


class MergeMethod(Method):
    """A method that merges the shared fine-tune pool into one τ, then selects λ.

    Subclasses implement ``reducer(cfg)``, returning an object with ``update(tau)`` and
    ``result()`` (a streaming reducer: O(1) models in memory whatever the pool size).
    """

    uses_pool = True

    uses = frozenset({"forget"})
    # True when element j of the merge depends only on element j of the inputs: such merges
    # run chunk by chunk over files (unlearnbench.merge.engine), near the I/O floor.
    elementwise = False

    def reducer(self, cfg: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def chunk_reducer(self, cfg: Any) -> Any:
        """The reducer the chunked file engine uses on each chunk (``elementwise`` methods): a
        ``unlearnbench.merge.ChunkReducer``, or a ``FusedReducer`` the C kernel computes. It
        may trade memory for speed, since its state is one chunk; its result must be bitwise
        ``reducer``'s."""
        return self.reducer(cfg)

    def unlearn(self, ctx: "Ctx") -> Result:
        import time

        t0, pool0 = time.perf_counter(), ctx.timings.get("pool_s", 0.0)
        merged, op_s, red = self._stream(ctx)
        # merge wall time includes loading members, not training the ones missing from the store
        ctx.timings["merge_wall_s"] = time.perf_counter() - t0 - (ctx.timings.get("pool_s", 0.0) - pool0)
        ctx.info["merge_cost"] = merge_cost(self, ctx, red, merged, op_s)
        sel = ctx.select(merged)
        return Result(ctx.apply(merged, sel.lam), lam=sel.lam, selection=sel, merged=merged)

    def _stream(self, ctx: "Ctx") -> tuple[dict, float, Any]:
        """One pass over the pool; returns τ, the seconds spent in the operator alone, the reducer."""
        import time

        red = self.reducer(ctx.cfg)
        op = 0.0
        for _, tau in ctx.pool():
            t = time.perf_counter()
            red.update(tau)
            op += time.perf_counter() - t
        t = time.perf_counter()
        merged = red.result()
        return merged, op + time.perf_counter() - t, red


REPEAT_BUDGET_BYTES = 1 << 30  # two extra passes over the pool for the compute std, below 1 GiB of reads


def tensor_bytes(obj: Any) -> int:
    """Bytes of every tensor held in ``obj``'s attributes (dicts and lists of tensors included)."""
    import torch

    seen: set[int] = set()

    def walk(x: Any) -> int:
        if isinstance(x, torch.Tensor):
            if id(x) in seen:
                return 0
            seen.add(id(x))
            return x.numel() * x.element_size()
        if isinstance(x, dict):
            return sum(walk(v) for v in x.values())
        if isinstance(x, (list, tuple)):
            return sum(walk(v) for v in x)
        return 0

    return sum(walk(v) for v in vars(obj).values()) if hasattr(obj, "__dict__") else walk(obj)


def merge_cost(method: "MergeMethod", ctx: "Ctx", reducer: Any, merged: dict, op_s: float) -> dict:
    """PROTOCOL §8.6 cost figures of a streamed merge.

    ``state_bytes`` is what the reducer holds after the pass (its accumulators);
    ``resident_models`` counts, in model sizes, accumulators + θ_0 + the one candidate in
    flight. ``merge_compute_s`` is the operator alone (the time inside update/result, each
    candidate resident), mean ± std over 3 passes when the pool is small enough to re-read."""
    import statistics

    model_bytes = sum(v.numel() * 4 for v in merged.values())
    state = tensor_bytes(reducer)
    n = ctx.pool_size()
    times = [op_s]
    if n * model_bytes <= REPEAT_BUDGET_BYTES:
        times += [method._stream(ctx)[1] for _ in range(2)]
    return {"n": n, "state_bytes": state, "model_bytes": model_bytes,
            "resident_models": round((state + 2 * model_bytes) / model_bytes, 2),
            "merge_compute_s": statistics.mean(times),
            "merge_compute_std_s": statistics.stdev(times) if len(times) > 1 else None, "repeats": len(times)}
